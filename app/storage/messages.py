"""The plain values the store hands out: a conversation's key and a stored message."""

from __future__ import annotations

from dataclasses import dataclass

ECHO_ENGINE = "echo"  # the echo engine's name: its replies are stored but never sent to a model


@dataclass(frozen=True, slots=True)
class ConversationKey:
    user_id: int
    scope: str  # "guild:<id>", "channel:<id>", "dm", "global", or a front end's own (e.g. "terminal")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str
    content: str
    token_count: int
    engine: str | None = None


class StorageUnavailable(Exception):
    """The database could not be reached, even after one retry."""
