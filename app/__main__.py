import os
import sys

# `python -m` puts the working directory first on the import path: a file there named like a standard module
# (stringprep.py, say) would shadow it for the whole run. A plugin brain is looked up there on purpose, and
# only while it is imported (app.engines.plugin).
if sys.path and sys.path[0] in (os.getcwd(), ""):
    del sys.path[0]

from app.cli import main  # noqa: E402

sys.exit(main())
