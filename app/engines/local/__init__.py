"""The local GGUF model, one job a module: `finder` (where the model is), `wire` (the messages between engine
and worker), `worker` (the child process that runs llama.cpp), `process` (the parent's handle on it),
`turn_queue` (one turn at a time), `tokenizer` (exact counts in this process) and `engine` (LocalModelEngine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.engines.local.finder import default_model_path, local_extra_installed

if TYPE_CHECKING:
    from app.engines.local.engine import REPEAT_PENALTY, LocalModelEngine

__all__ = ["REPEAT_PENALTY", "LocalModelEngine", "default_model_path", "local_extra_installed"]

_FROM_ENGINE = frozenset({"REPEAT_PENALTY", "LocalModelEngine"})


def __getattr__(name: str) -> Any:
    # The worker process imports this package for `wire` before it loads the model: the engine's half (asyncio,
    # subprocesses) is imported on first use instead, so the worker's start does not pay for it.
    if name in _FROM_ENGINE:
        from app.engines.local import engine

        return vars(engine)[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
