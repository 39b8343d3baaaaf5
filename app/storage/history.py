"""HistoryStore: append messages, read the newest that fit a budget, forget a conversation.

Speed comes from the database's own techniques, not from caching history in memory:
- writes go through one writer connection that gathers the rows of many conversations into one transaction
  (group commit); every caller still awaits its own durable commit before it goes on;
- reads use one long-lived autocommit connection, so a read is one round trip with no BEGIN/ROLLBACK;
- the window query walks the (conversation_id, id) index newest first and stops at the budget, so its cost
  does not grow with the length of the stored history.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.storage.models import conversations, messages

ECHO_ENGINE = "echo"
WINDOW_PAGE_ROWS = 64


@dataclass(frozen=True, slots=True)
class ConversationKey:
    user_id: int
    scope: str  # a guild id, "dm", a channel id, or "global"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str
    content: str
    token_count: int
    engine: str | None = None


class HistoryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conversation_ids: dict[ConversationKey, int] = {}
        self._reader: AsyncConnection | None = None
        self._reader_lock = asyncio.Lock()
        self._writer = _GroupCommitWriter(engine)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def conversation_id(self, key: ConversationKey) -> int:
        """The id of the key's conversation, created on first use (remembered: keys never change ids)."""
        cached = self._conversation_ids.get(key)
        if cached is not None:
            return cached
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
        self._conversation_ids[key] = found
        return found

    async def append(
        self,
        conversation_id: int,
        message: StoredMessage,
        latency_ms: int | None = None,
    ) -> None:
        """Store one message; returns once it is committed."""
        await self._writer.write(
            {
                "conversation_id": conversation_id,
                "role": message.role,
                "content": message.content,
                "token_count": message.token_count,
                "engine": message.engine,
                "latency_ms": latency_ms,
            }
        )

    async def recent(self, conversation_id: int, token_budget: int, overhead_per_message: int = 0) -> list[StoredMessage]:
        """The newest messages whose stored token counts (plus an overhead each) fit the budget, oldest first.

        Echo replies are left out: they were never a model's words.
        """
        chosen: list[StoredMessage] = []
        spent = 0
        before_id: int | None = None
        while True:
            query = (
                select(messages.c.id, messages.c.role, messages.c.content, messages.c.token_count, messages.c.engine)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.id.desc())
                .limit(WINDOW_PAGE_ROWS)
            )
            if before_id is not None:
                query = query.where(messages.c.id < before_id)
            rows = (await self._read(query)).all()
            for row_id, role, content, token_count, engine in rows:
                before_id = row_id
                if engine == ECHO_ENGINE:
                    continue
                cost = token_count + overhead_per_message
                if spent + cost > token_budget:
                    chosen.reverse()
                    return chosen
                spent += cost
                chosen.append(StoredMessage(role, content, token_count, engine))
            if len(rows) < WINDOW_PAGE_ROWS:
                chosen.reverse()
                return chosen

    async def count(self, conversation_id: int) -> int:
        result = await self._read(
            select(func.count()).select_from(messages).where(messages.c.conversation_id == conversation_id)
        )
        return int(result.scalar_one())

    async def all_messages(self, conversation_id: int) -> list[StoredMessage]:
        """Every stored message of a conversation, oldest first (for tests and tools, not the hot path)."""
        result = await self._read(
            select(messages.c.role, messages.c.content, messages.c.token_count, messages.c.engine)
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.id)
        )
        return [StoredMessage(*row) for row in result.all()]

    async def reset(self, conversation_id: int) -> int:
        """Forget every message of the conversation; returns how many were forgotten."""
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(messages).where(messages.c.conversation_id == conversation_id))
        return result.rowcount or 0

    async def ping(self) -> float:
        """Round trip to the database in seconds."""
        started = time.perf_counter()
        await self._read(select(1))
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._writer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self._engine.dispose()

    async def _read(self, statement):  # type: ignore[no-untyped-def]
        async with self._reader_lock:
            if self._reader is None:
                self._reader = await self._engine.execution_options(isolation_level="AUTOCOMMIT").connect()
            return await self._reader.execute(statement)


class _GroupCommitWriter:
    """One connection that commits the pending rows of all conversations together."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pending: list[tuple[dict, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def write(self, row: dict) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="kortana-group-commit")
        await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        try:
            await self._commit_batches()
        finally:  # a writer that stops (closed, or its connection lost) must not leave anyone waiting
            batch, self._pending = self._pending, []
            for _, future in batch:
                if not future.done():
                    future.set_exception(ConnectionError("the history writer stopped"))

    async def _commit_batches(self) -> None:
        async with self._engine.connect() as connection:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                batch, self._pending = self._pending, []
                if not batch:
                    continue
                try:
                    await connection.execute(insert(messages), [row for row, _ in batch])
                    await connection.commit()
                except Exception as error:  # every waiter hears about the failure, the writer lives on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    await connection.rollback()
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
