"""The engine contract: what every engine of the chain is, what some engines can do besides, and what the chain
says about them. A plugin brain (`BRAIN=package.module:attribute`) implements `Engine`; nothing else is needed.

Required, `Engine`: a name, a context window, a streamed answer, and `aclose`. The answer is text chunks; an
engine that knows what the answer cost may yield one `TokenUsage` after its text (an engine that yields only
text is just as valid: the conversation layer then counts the tokens itself). A reasoning model's thoughts are
never text of the answer: the chain drops `<think>` blocks from every engine's text, and an engine that gets
the reasoning apart (a `reasoning_content` field) yields only a `Reasoned`, how long it thought, after its text.
Optional capabilities are small protocols of their own; the chain checks them once, when it takes an engine in:

- `WarmStart`: `start()` loads the engine ahead of the first turn (the local model).
- `Reserving`: `reserved()` waits until the engine is free for one answer (an engine that serves one at a time);
  the chain starts the answer's deadline only then.
- `ReportsStatus`: `status_details()` adds what the engine tells of itself to the status report.
- `CountsTokens`: `count_tokens(text)` counts exactly as the engine's model does; the window is then measured
  with it.
- `ServesModels`: `with_model(model)` is the same engine asking for another model of its server (a server's
  choice among the models the operator allows); `model` is the one it asks for by default.
- `SeesImages`: `sees_images` True: the engine's model takes OpenAI-style `image_url` content parts (the
  operator says so: BRAIN_VISION, HF_VISION). The chain then sends the turn's images as parts; to any other
  engine (one that says nothing, or False) as a short text note (`images.image_note`).

Engines never touch the database. A failing engine raises `EngineError` with a kind; the chain decides what
happens next (next engine, breaker, retry with a smaller window).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

# The names of engines that other layers rely on: a front end asks for Hugging Face by name, and what echo
# answered is never sent back to a model as history.
BRAIN = "brain"
HUGGINGFACE = "huggingface"
ECHO = "echo"


class ChatImage(TypedDict):
    """An image of the turn, for the engine: the URL to send (Discord's CDN, or a `data:` URL of its bytes), and
    its file name and size for an engine that cannot see it."""

    url: str
    name: str
    size: int


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str
    # The newest user message's images, as the conversation hands them to the chain. The chain renders them for
    # each engine before the call (`images.for_engine`): an engine never receives this key.
    images: NotRequired[list[ChatImage]]


class ErrorKind(enum.StrEnum):
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


@dataclass(frozen=True, slots=True)
class EngineStarted:
    """An engine started answering; its text follows. If `replaces_partial`, throw away the text shown so far
    this turn: the engine before it failed mid-way."""

    engine: str
    replaces_partial: bool


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What one answer cost, as the engine (its server, or its model) counted it."""

    prompt_tokens: int
    completion_tokens: int

    def __post_init__(self) -> None:
        for count in (self.prompt_tokens, self.completion_tokens):
            if type(count) is not int or count < 0:  # bool is not a count either
                raise ValueError(f"token counts are whole numbers from 0, not {count!r}")

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Reasoned:
    """The model reasoned before or while answering, for `seconds` of the answer's time; its thoughts are not
    part of the answer and are never shown or stored."""

    seconds: float


@runtime_checkable
class Engine(Protocol):
    name: str
    context_window: int  # tokens the engine accepts, prompt and answer together

    def stream(
        self, messages: Sequence[ChatMessage], max_tokens: int
    ) -> AsyncIterator[str | Reasoned | TokenUsage]:
        """Yield the answer as text chunks, and optionally then one `Reasoned` and one `TokenUsage`; raise
        EngineError (never a raw library error) on failure."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class WarmStart(Protocol):
    async def start(self) -> None:
        """Load now what the first turn would otherwise wait for. A failure is logged; turns still try."""
        ...


@runtime_checkable
class Reserving(Protocol):
    def reserved(self) -> AbstractAsyncContextManager[None]:
        """Wait until the engine is free for one answer; a `stream` in the same task then starts at once.
        Raises EngineError(BUSY) when too many turns already wait."""
        ...


@runtime_checkable
class ReportsStatus(Protocol):
    def status_details(self) -> dict[str, Any]:
        """Figures for the status report (model, state, speed, ...); `None` values are left out."""
        ...


@runtime_checkable
class CountsTokens(Protocol):
    def count_tokens(self, text: str) -> int:
        """The tokens of `text` as the engine's model reads it inside a prompt."""
        ...


@runtime_checkable
class SeesImages(Protocol):
    sees_images: bool  # its model takes image_url content parts


@runtime_checkable
class ServesModels(Protocol):
    model: str  # the model it asks for unless told otherwise

    def with_model(self, model: str) -> Engine:
        """This engine (same name, context window, server, secrets and timeouts) asking for `model` instead."""
        ...
