"""The engines' face: the contract every engine implements and the chain relies on (see `contract`).

Other layers import the contract from here; the chain, the factory and the engines themselves are modules of
this package.
"""

from app.engines.contract import (
    BRAIN,
    ECHO,
    HUGGINGFACE,
    ChatMessage,
    CountsTokens,
    Engine,
    EngineError,
    EngineStarted,
    ErrorKind,
    Reasoned,
    ReportsStatus,
    Reserving,
    ServesModels,
    TokenUsage,
    WarmStart,
)
from app.engines.observer import NO_OBSERVER, ChainObserver

__all__ = [
    "BRAIN",
    "ECHO",
    "HUGGINGFACE",
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
    "ServesModels",
    "TokenUsage",
    "WarmStart",
]
