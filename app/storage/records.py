"""The plain values the stores take and hand out: a conversation's key and a stored message."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


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
