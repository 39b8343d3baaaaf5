"""Exact token counts for a GGUF model, from the vocabulary in the file itself.

Counting runs in this process, not in the worker: it is synchronous, it must not queue behind a generation,
and it survives worker restarts. Only the vocabulary is loaded (no weights, no compute), through llama.cpp's
C API because the high-level `Llama(vocab_only=True)` also builds a context and prints a warning doing so.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any

from app.engines.contract import EngineError, ErrorKind

log = logging.getLogger(__name__)
_llama_log = logging.getLogger(__name__ + ".llama_cpp")
_log_callback: Any = None  # kept alive for as long as llama.cpp may call it


def _route_llama_logs(llama_cpp: Any) -> None:
    """Send llama.cpp's messages in this process to our log at DEBUG instead of straight to stderr."""
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if _llama_log.isEnabledFor(logging.DEBUG):
            _llama_log.debug("%s", text.decode("utf-8", "replace").rstrip())

    _log_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


class GgufTokenizer:
    """Loaded on first use (~60 ms for SmolLM2); thread-safe."""

    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._lock = threading.Lock()
        self._llama_cpp: Any = None
        self._model: Any = None
        self._vocab: Any = None

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def count(self, text: str) -> int:
        """Tokens of `text` as the model sees it inside a prompt (special tokens such as <|im_end|> parsed)."""
        data = text.encode("utf-8")
        capacity = len(data) + 8  # never more tokens than bytes
        with self._lock:
            self._load_locked()
            lib = self._llama_cpp
            while True:
                buffer = (lib.llama_token * capacity)()
                count = lib.llama_tokenize(self._vocab, data, len(data), buffer, capacity, False, True)
                if count >= 0:
                    return int(count)
                capacity = -count

    def context_length(self) -> int | None:
        """The context the model was trained for, from the GGUF metadata (`<architecture>.context_length`)."""
        with self._lock:
            self._load_locked()
            architecture = self._metadata_locked("general.architecture")
            value = self._metadata_locked(f"{architecture}.context_length") if architecture else None
        return int(value) if value and value.isdigit() else None

    def _metadata_locked(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(256)
        length = self._llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        return buffer.value.decode("utf-8", "replace") if length >= 0 else None

    def close(self) -> None:
        with self._lock:
            if self._model is not None:
                self._llama_cpp.llama_model_free(self._model)
            self._model = self._vocab = None

    def _load_locked(self) -> None:
        if self._vocab is not None:
            return
        try:
            import llama_cpp
        except ImportError as exc:
            raise EngineError(ErrorKind.UNAVAILABLE, "llama-cpp-python is not installed") from exc
        _route_llama_logs(llama_cpp)
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(self.model_path.encode(), params)
        if not model:
            raise EngineError(ErrorKind.UNAVAILABLE, f"cannot read the vocabulary of {Path(self.model_path).name}")
        self._llama_cpp = llama_cpp
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        log.debug("tokenizer of %s loaded", Path(self.model_path).name)
