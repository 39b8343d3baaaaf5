"""The engines' face: the contract every engine implements and the chain relies on (see `contract`).

Other layers import the contract from here (and how an image reads to an engine that cannot see it); the chain,
the factory and the engines themselves are modules of this package.
"""

from app.engines.contract import (
    BRAIN,
    ECHO,
    HUGGINGFACE,
    ChatImage,
    ChatMessage,
    CountsTokens,
    Engine,
    EngineError,
    EngineStarted,
    ErrorKind,
    Reasoned,
    ReportsStatus,
    Reserving,
    SeesImages,
    ServesModels,
    TokenUsage,
    WarmStart,
)
from app.engines.images import image_note, with_notes
from app.engines.observer import NO_OBSERVER, ChainObserver

__all__ = [
    "BRAIN",
    "ECHO",
    "HUGGINGFACE",
    "ChatImage",
    "NO_OBSERVER",
    "ChainObserver",
    "ChatMessage",
    "CountsTokens",
    "Engine",
    "EngineError",
    "EngineStarted",
    "ErrorKind",
    "Reasoned",
    "ReportsStatus",
    "Reserving",
    "SeesImages",
    "ServesModels",
    "TokenUsage",
    "WarmStart",
    "image_note",
    "with_notes",
]
