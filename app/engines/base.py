"""What every engine of the chain is: a name, a context window, and a streamed answer.

Engines never touch the database. A failing engine raises `EngineError` with a kind; the chain decides what
happens next (next engine, breaker, retry with a smaller window).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypedDict, runtime_checkable


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


class ErrorKind(str, enum.Enum):
    """Why an engine could not answer. What each kind does to the engine's breaker is `chain.BREAKER_RULES`."""

    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    CONTEXT_TOO_LONG = "context_too_long"
    BUSY = "busy"


class EngineError(Exception):
    """An engine could not answer. `message` is for operators (the chain logs it): it never carries a secret or
    text of the conversation, which a server's error body may quote."""

    def __init__(self, kind: ErrorKind, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.retry_after = retry_after


@runtime_checkable
class Engine(Protocol):
    name: str
    context_window: int  # tokens the engine accepts, prompt and answer together

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        """Yield the answer as text chunks; raise EngineError (never a raw library error) on failure."""
        ...

    async def aclose(self) -> None: ...
