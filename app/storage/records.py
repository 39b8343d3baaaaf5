"""The plain values the stores take and hand out: a conversation's key, a stored message, and one a search found."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ConversationKey:
    user_id: int
    scope: str  # "guild:<id>", "channel:<id>", "dm", "global", or a front end's own (e.g. "terminal")

    @property
    def log_id(self) -> str:
        """An opaque, stable name of the conversation for log lines: no user id or scope in clear."""
        return hashlib.blake2b(f"{self.user_id}:{self.scope}".encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str
    content: str
    token_count: int
    engine: str | None = None


@dataclass(frozen=True, slots=True)
class FoundMessage:
    """A stored message that a search found. `turn_id` is its turn (the id of the user message it belongs to,
    its own id for a user message); `created_at` is when it was stored, in UTC. A found user message brings
    `answer`, the reply stored after it in the same turn (None if there is none, or only a never-sent one)."""

    message_id: int
    turn_id: int
    message: StoredMessage
    created_at: datetime
    answer: StoredMessage | None = None
