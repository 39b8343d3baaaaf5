"""The plain values the stores take and hand out: a conversation's key, a stored message, the start of a turn, one
message a search found, and a conversation's summary."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ConversationKey:
    user_id: int
    scope: str  # "guild:<id>", "channel:<id>", "dm", "global", or a front end's own (e.g. "terminal")

    @property
    def log_id(self) -> str:
        """An opaque, stable name of the conversation for log lines: no user id or scope in clear."""
        return hashlib.blake2b(f"{self.user_id}:{self.scope}".encode(), digest_size=6).hexdigest()


def user_log_id(user_id: int) -> str:
    """An opaque, stable name of a user for log lines (of what concerns all their conversations)."""
    return "user " + hashlib.blake2b(str(user_id).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str
    content: str
    token_count: int
    engine: str | None = None
    # Which stored copy it is and when it was stored: set on what a store reads back (`turn` is the id of the
    # question the message belongs to, its own id for a question). Two messages compare by what they say.
    id: int | None = field(default=None, compare=False)
    turn: int | None = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What `start_turn` hands out: the newest history that fits the budget (oldest first, without the new message;
    each with its id and turn), the new message's id, and whether older messages are stored beyond that history
    (False: the whole conversation fits, and there is nothing to recall)."""

    history: list[StoredMessage]
    turn_id: int
    has_older: bool


@dataclass(frozen=True, slots=True)
class FoundMessage:
    """A stored message that a search found (with its id, turn and time). A found user message brings `answer`,
    the reply stored after it in the same turn (None if there is none, or only a never-sent one)."""

    message: StoredMessage
    answer: StoredMessage | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """A conversation's rolling summary: of every message up to `through_id` that fell out of the window."""

    content: str
    token_count: int
    through_id: int
    engine: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SummaryDraft:
    """Where a summary job starts: the summary as it is (None: none yet) and the version a save must still find
    (a reset, a /forget or another job's save changes it, and the job's result is then thrown away)."""

    version: int
    summary: Summary | None


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """What a conversation's memory holds, for /memory."""

    messages: int
    first_at: datetime | None
    summary: Summary | None
