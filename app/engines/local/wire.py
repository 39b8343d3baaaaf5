"""The messages between the local engine (the parent) and its worker process (the child): one JSON object a
line, commands on the child's stdin and events on its stdout. Both ends encode and decode with these classes.

Commands, tagged by "op":
    Generate   {"op": "generate", "id": 1, "messages": [...], "max_tokens": 64, "temperature": 0.8, ...}
    Cancel     {"op": "cancel", "id": 1}          cancels request 1 and every earlier one (ids only grow)
Events, tagged by "ev":
    Ready      once, after the model has loaded
    Fatal      instead of Ready: the model could not load, and the child exits
    Token      zero or more per request, then one of
    Done       the generation ended: why ("stop", "length", "cancelled") and its figures
    Failed     the request failed: an `ErrorKind` value and a message for operators
End of stdin ends the child: the parent owns its lifetime.

The worker imports this module at its start, before it loads the model: it stays on the standard library and
the engine contract.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from app.engines.contract import ChatMessage, ErrorKind

LINE_LIMIT = 1 << 20  # bytes per line; a token line is tiny, an error message is cut to `MESSAGE_LIMIT` chars
MESSAGE_LIMIT = 300

Finish = Literal["stop", "length", "cancelled"]


class WireError(ValueError):
    """A line that is not a message of this protocol."""


@dataclass(frozen=True, slots=True)
class Generate:
    TAG: ClassVar[str] = "generate"

    id: int
    messages: list[ChatMessage]
    max_tokens: int
    temperature: float
    repeat_penalty: float
    seed: int | None


@dataclass(frozen=True, slots=True)
class Cancel:
    TAG: ClassVar[str] = "cancel"

    id: int


@dataclass(frozen=True, slots=True)
class Ready:
    TAG: ClassVar[str] = "ready"

    pid: int
    load_s: float


@dataclass(frozen=True, slots=True)
class Fatal:
    TAG: ClassVar[str] = "fatal"

    message: str


@dataclass(frozen=True, slots=True)
class Token:
    TAG: ClassVar[str] = "token"

    id: int
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    TAG: ClassVar[str] = "done"

    id: int
    finish: Finish
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None
    tokens_per_s: float | None


@dataclass(frozen=True, slots=True)
class Failed:
    TAG: ClassVar[str] = "error"

    id: int
    kind: ErrorKind
    message: str

    def __post_init__(self) -> None:  # JSON carries the kind as its value
        try:
            object.__setattr__(self, "kind", ErrorKind(self.kind))
        except ValueError:
            raise WireError(f"unknown error kind {self.kind!r}") from None


Command = Generate | Cancel
Event = Ready | Fatal | Token | Done | Failed

_COMMANDS: dict[str, type[Command]] = {cls.TAG: cls for cls in (Generate, Cancel)}
_EVENTS: dict[str, type[Event]] = {cls.TAG: cls for cls in (Ready, Fatal, Token, Done, Failed)}


def encode(message: Command | Event) -> bytes:
    """One line. ASCII-only JSON: a lone surrogate in a user's text travels as an escape, it cannot fail."""
    tag_key = "op" if type(message) in _COMMANDS.values() else "ev"
    return json.dumps({tag_key: message.TAG, **asdict(message)}).encode() + b"\n"


def decode_command(line: bytes) -> Command:
    return _decode(line, "op", _COMMANDS)


def decode_event(line: bytes) -> Event:
    return _decode(line, "ev", _EVENTS)


def _decode(line: bytes, tag_key: str, classes: dict[str, type[Any]]) -> Any:
    try:
        fields = json.loads(line)
    except ValueError as error:
        raise WireError(f"not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise WireError(f"not an object but {type(fields).__name__}")
    tag = fields.pop(tag_key, None)
    message_class = classes.get(tag) if isinstance(tag, str) else None
    if message_class is None:
        raise WireError(f"unknown {tag_key} {tag!r}")
    try:
        return message_class(**fields)
    except TypeError as error:  # fields missing or unknown
        raise WireError(f"{tag_key} {tag!r}: {error}") from None
