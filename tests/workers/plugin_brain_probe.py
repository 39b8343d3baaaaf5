"""`python -P tests/workers/plugin_brain_probe.py`, run in a directory holding `my_brain.py`
(tests/test_plugin_brain.py).

It loads BRAIN=my_brain:brain as the `kortana` script would, prints the brain's answer to "hi", imports a
standard module the directory tries to shadow, and prints whether the working directory is on the import
path. Run by its file's path, not with -m: -m would need the repository on the path, and the test is about
what is on the path.
"""

from __future__ import annotations

import asyncio
import os
import sys

from app.engines.plugin import load_plugin_brain

engine = load_plugin_brain("my_brain:brain", context_window=4096)
print(asyncio.run(anext(engine.stream([{"role": "user", "content": "hi"}], 16))))
import stringprep  # noqa: E402, F401 - the idna codec imports it on the first HTTPS call (Hugging Face)

print(os.getcwd() in sys.path)
