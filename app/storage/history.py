"""HistoryStore: a turn's reads and writes of a conversation's history, and forgetting it.

A turn is `start_turn` (read the newest history that fits the budget, commit the user's message) and, once
the answer is complete, `finish_turn` (commit the answer). Messages are ordered by turn — an answer sorts
right after the user message it answers — so two processes answering one conversation at once still store
each answer next to its question. The window query walks an index newest first and stops at the budget, so
a turn does not get slower as the stored history grows.

`open_history_store` picks the implementation: SQLite (one process owns the file: group commit in one
thread, windows cached in memory) or PostgreSQL (several processes: short transactions under a
per-conversation advisory lock).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import bindparam, delete, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.messages import (
    ECHO_ENGINE,
    ConversationKey,
    StorageUnavailable,
    StoredMessage,
)
from app.storage.models import conversations, messages

__all__ = ["ConversationKey", "HistoryStore", "StorageUnavailable", "StoredMessage", "open_history_store"]

log = logging.getLogger(__name__)
MAX_REMEMBERED_CONVERSATIONS = 100_000  # ids of recently active conversations kept in memory
T = TypeVar("T")

TURN_ORDER = func.coalesce(messages.c.turn_id, messages.c.id)


def _recent_statement():  # type: ignore[no-untyped-def]
    """Newest-first running total of token costs over at most `most_rows` rows, cut where it passes the budget.

    Every message costs at least one token plus the overhead, so `most_rows` bounds the scan of the index
    whatever the length of the stored history. Built once, so each turn reuses the compiled SQL.
    """
    newest = (
        select(
            messages.c.id,
            TURN_ORDER.label("turn"),
            messages.c.role,
            messages.c.content,
            messages.c.token_count,
            messages.c.engine,
            func.sum(messages.c.token_count + bindparam("overhead"))
            .over(order_by=(TURN_ORDER.desc(), messages.c.id.desc()), rows=(None, 0))
            .label("spent"),
        )
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            or_(messages.c.engine.is_(None), messages.c.engine != ECHO_ENGINE),
        )
        .order_by(TURN_ORDER.desc(), messages.c.id.desc())
        .limit(bindparam("most_rows"))
        .subquery()
    )
    return (
        select(newest.c.role, newest.c.content, newest.c.token_count, newest.c.engine)
        .where(newest.c.spent <= bindparam("budget"))
        .order_by(newest.c.turn, newest.c.id)
    )


RECENT = _recent_statement()
NEWEST_ID = select(func.max(messages.c.id)).where(messages.c.conversation_id == bindparam("conversation_id"))
MESSAGE_COLUMNS = ("conversation_id", "turn_id", "role", "content", "token_count", "engine", "latency_ms")
INSERT_MESSAGE = insert(messages).values({name: bindparam(name) for name in MESSAGE_COLUMNS}).returning(messages.c.id)
DELETE_CONVERSATION = delete(messages).where(messages.c.conversation_id == bindparam("conversation_id"))


def open_history_store(engine: AsyncEngine, window_budget: int = 4096) -> HistoryStore:
    """The store for the engine's database; `window_budget` is the largest history budget a turn asks for."""
    if engine.dialect.name == "sqlite":
        from app.storage.sqlite_history import SqliteHistoryStore

        return SqliteHistoryStore(engine, window_budget)
    from app.storage.postgres_history import PostgresHistoryStore

    return PostgresHistoryStore(engine)


class HistoryStore:
    """What both stores share: conversations, reading a whole history, closing, retrying a lost connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conversation_ids: OrderedDict[ConversationKey, int] = OrderedDict()  # most recently used last
        self._write_failure: str | None = None

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def write_failure(self) -> str | None:
        """Why the last write failed, until a write succeeds again (None: the last write worked)."""
        return self._write_failure

    async def conversation_id(self, key: ConversationKey) -> int:
        """The id of the key's conversation, created on first use (remembered: keys never change ids)."""
        cached = self._conversation_ids.get(key)
        if cached is None:
            cached = await self._retrying(lambda: self._find_or_create(key))
            self._conversation_ids[key] = cached
            if len(self._conversation_ids) > MAX_REMEMBERED_CONVERSATIONS:
                self._conversation_ids.popitem(last=False)
        else:
            self._conversation_ids.move_to_end(key)
        return cached

    async def start_turn(
        self, conversation_id: int, user_message: StoredMessage, token_budget: int, overhead_per_message: int = 0
    ) -> tuple[list[StoredMessage], int]:
        """Read the newest history that fits the budget, then commit the user's message.

        Returns that history (oldest first, without the new message) and the new message's id, which
        `finish_turn` takes so the answer sorts right after it.
        """
        raise NotImplementedError

    async def finish_turn(
        self, conversation_id: int, answer: StoredMessage, turn_id: int, latency_ms: int | None = None
    ) -> None:
        """Commit the complete answer of the turn that `start_turn` opened."""
        await self.append(conversation_id, answer, turn_id=turn_id, latency_ms=latency_ms)

    async def append(
        self, conversation_id: int, message: StoredMessage, *, turn_id: int | None = None, latency_ms: int | None = None
    ) -> int:
        """Store one message; returns its id once it is committed."""
        raise NotImplementedError

    async def recent(self, conversation_id: int, token_budget: int, overhead_per_message: int = 0) -> list[StoredMessage]:
        """The newest messages whose stored token counts (plus an overhead each) fit the budget, oldest first.

        Echo replies are left out: they were never a model's words.
        """
        raise NotImplementedError

    async def reset(self, conversation_id: int) -> int:
        """Forget every message of the conversation; returns how many were forgotten."""
        raise NotImplementedError

    async def ping(self) -> float:
        """Round trip to the database in seconds."""
        raise NotImplementedError

    async def all_messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every stored message of a conversation, in turn order (for tests and tools, not the hot path)."""
        async with self._engine.connect() as connection:
            result = await connection.execute(
                select(messages.c.role, messages.c.content, messages.c.token_count, messages.c.engine)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(TURN_ORDER, messages.c.id)
            )
            return [StoredMessage(*row) for row in result.all()]

    async def close(self) -> None:
        await self._engine.dispose()

    async def _find_or_create(self, key: ConversationKey) -> int:
        insert_ = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        async with self._engine.begin() as connection:
            await connection.execute(
                insert_(conversations)
                .values(user_id=key.user_id, scope=key.scope)
                .on_conflict_do_nothing(index_elements=["user_id", "scope"])
            )
            found = await connection.scalar(
                select(conversations.c.id).where(
                    conversations.c.user_id == key.user_id, conversations.c.scope == key.scope
                )
            )
        assert found is not None
        return found

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run a database step; a lost connection is retried once, then reported as StorageUnavailable."""
        for attempt in (1, 2):
            try:
                return await step()
            except (DBAPIError, OSError, ConnectionError) as error:
                if isinstance(error, DBAPIError) and not _is_disconnect(error):
                    raise
                if attempt == 2:
                    raise StorageUnavailable(f"database unreachable ({type(error).__name__})") from error
                log.warning("Lost the database connection (%s); retrying once", type(error).__name__)
        raise AssertionError("unreachable")


def _is_disconnect(error: DBAPIError) -> bool:
    return error.connection_invalidated or "connect" in str(error.orig).lower() or "closed" in str(error.orig).lower()


def recent_parameters(conversation_id: int, token_budget: int, overhead: int) -> dict[str, int]:
    return {
        "conversation_id": conversation_id,
        "overhead": overhead,
        "budget": token_budget,
        "most_rows": token_budget // (overhead + 1) + 1,
    }


def message_row(conversation_id: int, message: StoredMessage, turn_id: int | None, latency_ms: int | None) -> dict:
    return {
        "conversation_id": conversation_id,
        "turn_id": turn_id,
        "role": message.role,
        "content": message.content,
        "token_count": message.token_count,
        "engine": message.engine,
        "latency_ms": latency_ms,
    }
