"""HistoryStore: a turn's reads and writes of a conversation's history, and forgetting it.

A turn is `start_turn` (read the newest history that fits the budget, commit the user's message) and, once
the answer is complete, `finish_turn` (commit the answer). Messages are ordered by turn — an answer sorts
right after the user message it answers — so two processes answering one conversation at once still store
each answer next to its question.

Where the speed comes from:
- SQLite: writes go through one writer connection that commits the rows of many conversations together
  (group commit); reads use one long-lived autocommit connection; the last window of active conversations
  is kept in memory and checked against the newest stored id before use;
- PostgreSQL (several processes): one short transaction per step, serialised per conversation by an
  advisory lock that is held while history is read or written, never during the model call;
- the window query walks an index newest first and stops at the budget, so a turn does not get slower as
  the stored history grows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import bindparam, delete, func, insert, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.storage.group_commit import GroupCommitWriter
from app.storage.messages import ECHO_ENGINE, ConversationKey, StoredMessage, StorageUnavailable
from app.storage.models import conversations, messages
from app.storage.window_cache import CachedWindow, WindowCache

__all__ = ["ConversationKey", "HistoryStore", "StorageUnavailable", "StoredMessage"]

log = logging.getLogger(__name__)
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


_RECENT = _recent_statement()
_NEWEST_ID = select(func.max(messages.c.id)).where(messages.c.conversation_id == bindparam("conversation_id"))
_INSERT = insert(messages).returning(messages.c.id, sort_by_parameter_order=True)
_ADVISORY_LOCK = select(func.pg_advisory_xact_lock(bindparam("conversation_id")))


class HistoryStore:
    def __init__(self, engine: AsyncEngine, window_budget: int = 4096) -> None:
        self._engine = engine
        self._window_budget = window_budget
        self._shared = self.dialect != "sqlite"  # other processes write too: no cache, database locks
        self._windows = WindowCache()
        self._conversation_ids: dict[ConversationKey, int] = {}
        self._reader: AsyncConnection | None = None
        self._reader_lock = asyncio.Lock()
        self._writer = GroupCommitWriter(engine, _INSERT)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def conversation_id(self, key: ConversationKey) -> int:
        """The id of the key's conversation, created on first use (remembered: keys never change ids)."""
        cached = self._conversation_ids.get(key)
        if cached is None:
            cached = await self._retrying(lambda: self._find_or_create(key))
            self._conversation_ids[key] = cached
        return cached

    async def start_turn(
        self, conversation_id: int, user_message: StoredMessage, token_budget: int, overhead_per_message: int = 0
    ) -> tuple[list[StoredMessage], int]:
        """Read the newest history that fits the budget, then commit the user's message.

        Returns that history (oldest first, without the new message) and the new message's id, which
        `finish_turn` takes so the answer sorts right after it.
        """
        if not self._shared:
            history = await self.recent(conversation_id, token_budget, overhead_per_message)
            return history, await self.append(conversation_id, user_message)

        async def locked() -> tuple[list[StoredMessage], int]:
            async with self._engine.begin() as connection:
                await connection.execute(_ADVISORY_LOCK, {"conversation_id": conversation_id})
                history = await self._load_window(connection, conversation_id, token_budget, overhead_per_message)
                message_id = await self._insert(connection, conversation_id, user_message, None, None)
            return history, message_id

        return await self._retrying(locked)

    async def finish_turn(
        self, conversation_id: int, answer: StoredMessage, turn_id: int, latency_ms: int | None = None
    ) -> None:
        """Commit the complete answer of the turn that `start_turn` opened."""
        if not self._shared:
            await self.append(conversation_id, answer, turn_id=turn_id, latency_ms=latency_ms)
            return

        async def insert_answer() -> None:
            # One autocommitted INSERT: the answer's place comes from turn_id, so it needs no lock.
            async with self._engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await self._insert(autocommit, conversation_id, answer, turn_id, latency_ms)

        await self._retrying(insert_answer)

    async def append(
        self,
        conversation_id: int,
        message: StoredMessage,
        *,
        turn_id: int | None = None,
        latency_ms: int | None = None,
    ) -> int:
        """Store one message; returns its id once it is committed."""
        if self._shared:

            async def insert_one() -> int:
                async with self._engine.begin() as connection:
                    return await self._insert(connection, conversation_id, message, turn_id, latency_ms)

            return await self._retrying(insert_one)
        row = _row(conversation_id, message, turn_id, latency_ms)
        message_id = await self._retrying(lambda: self._writer.write(row))
        if (window := self._windows.get(conversation_id)) is not None:
            window.add(message_id, message)
        return message_id

    async def recent(self, conversation_id: int, token_budget: int, overhead_per_message: int = 0) -> list[StoredMessage]:
        """The newest messages whose stored token counts (plus an overhead each) fit the budget, oldest first.

        Echo replies are left out: they were never a model's words.
        """
        if self._shared:
            async with self._engine.connect() as connection:
                return await self._load_window(connection, conversation_id, token_budget, overhead_per_message)
        [(newest_id,)] = await self._read(_NEWEST_ID, {"conversation_id": conversation_id})
        window = self._windows.get(conversation_id)
        if window is None or not window.fits(newest_id, token_budget, overhead_per_message):
            budget = max(token_budget, self._window_budget)
            loaded = await self._read(_RECENT, _recent_parameters(conversation_id, budget, overhead_per_message))
            window = CachedWindow.of(newest_id, budget, overhead_per_message, [StoredMessage(*r) for r in loaded])
            self._windows.put(conversation_id, window)
        return window.newest_within(token_budget)

    async def all_messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every stored message of a conversation, in turn order (for tests and tools, not the hot path)."""
        async with self._engine.connect() as connection:
            result = await connection.execute(
                select(messages.c.role, messages.c.content, messages.c.token_count, messages.c.engine)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(TURN_ORDER, messages.c.id)
            )
            return [StoredMessage(*row) for row in result.all()]

    async def reset(self, conversation_id: int) -> int:
        """Forget every message of the conversation; returns how many were forgotten."""

        async def delete_all() -> int:
            async with self._engine.begin() as connection:
                if self._shared:
                    await connection.execute(_ADVISORY_LOCK, {"conversation_id": conversation_id})
                result = await connection.execute(delete(messages).where(messages.c.conversation_id == conversation_id))
            return result.rowcount or 0

        forgotten = await self._retrying(delete_all)
        self._windows.forget(conversation_id)
        return forgotten

    async def ping(self) -> float:
        """Round trip to the database in seconds."""
        started = time.perf_counter()
        if self._shared:
            async with self._engine.connect() as connection:
                await connection.execute(select(literal_column("1")))
        else:
            await self._read(select(literal_column("1")))
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._writer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
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

    async def _load_window(
        self, connection: AsyncConnection, conversation_id: int, token_budget: int, overhead: int
    ) -> list[StoredMessage]:
        result = await connection.execute(_RECENT, _recent_parameters(conversation_id, token_budget, overhead))
        return [StoredMessage(*row) for row in result.all()]

    async def _insert(
        self,
        connection: AsyncConnection,
        conversation_id: int,
        message: StoredMessage,
        turn_id: int | None,
        latency_ms: int | None,
    ) -> int:
        result = await connection.execute(_INSERT, [_row(conversation_id, message, turn_id, latency_ms)])
        return int(result.scalar_one())

    async def _read(self, statement, parameters: dict | None = None):  # type: ignore[no-untyped-def]
        async with self._reader_lock:
            if self._reader is None:
                self._reader = await self._engine.execution_options(isolation_level="AUTOCOMMIT").connect()
            try:
                return (await self._reader.execute(statement, parameters)).all()
            except DBAPIError:
                await self._reader.close()  # a broken connection is replaced on the next read
                self._reader = None
                raise

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


def _recent_parameters(conversation_id: int, token_budget: int, overhead: int) -> dict[str, int]:
    return {
        "conversation_id": conversation_id,
        "overhead": overhead,
        "budget": token_budget,
        "most_rows": token_budget // (overhead + 1) + 1,
    }


def _row(conversation_id: int, message: StoredMessage, turn_id: int | None, latency_ms: int | None) -> dict:
    return {
        "conversation_id": conversation_id,
        "turn_id": turn_id,
        "role": message.role,
        "content": message.content,
        "token_count": message.token_count,
        "engine": message.engine,
        "latency_ms": latency_ms,
    }
