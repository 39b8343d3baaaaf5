"""HistoryStore: append messages, read the newest that fit a budget, forget a conversation.

Where the speed comes from:
- writes go through one writer connection that gathers the rows of many conversations into one transaction
  (group commit); every caller still awaits its own durable commit before it goes on;
- reads use one long-lived autocommit connection, so a read is one round trip with no BEGIN/ROLLBACK;
- the window query walks the (conversation_id, id) index newest first and stops at the budget, so its cost
  does not grow with the length of the stored history;
- on SQLite (one process owns the file) the last window of recently active conversations is kept in memory
  and checked against the newest stored id before use, so a turn reads one index entry, not the whole window.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.storage.models import conversations, messages

ECHO_ENGINE = "echo"


def _recent_statement():  # type: ignore[no-untyped-def]
    """Newest-first running total of token costs over at most `most_rows` rows, cut where it passes the budget.

    Every message costs at least one token plus the overhead, so `most_rows` bounds the scan of the index
    whatever the length of the stored history; built once, so each turn reuses the compiled SQL.
    """
    newest = (
        select(
            messages.c.id,
            messages.c.role,
            messages.c.content,
            messages.c.token_count,
            messages.c.engine,
            func.sum(messages.c.token_count + bindparam("overhead"))
            .over(order_by=messages.c.id.desc(), rows=(None, 0))
            .label("spent"),
        )
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            or_(messages.c.engine.is_(None), messages.c.engine != ECHO_ENGINE),
        )
        .order_by(messages.c.id.desc())
        .limit(bindparam("most_rows"))
        .subquery()
    )
    return (
        select(newest.c.role, newest.c.content, newest.c.token_count, newest.c.engine)
        .where(newest.c.spent <= bindparam("budget"))
        .order_by(newest.c.id)
    )


_RECENT = _recent_statement()
_NEWEST_ID = select(func.max(messages.c.id)).where(messages.c.conversation_id == bindparam("conversation_id"))
_INSERT_RETURNING_ID = insert(messages).returning(messages.c.id, sort_by_parameter_order=True)
MAX_CACHED_WINDOWS = 2000


@dataclass(slots=True)
class _CachedWindow:
    newest_id: int | None  # the newest stored id (echo replies included) this window reflects
    budget: int
    overhead: int
    messages: list[StoredMessage]  # oldest first, within `budget`
    spent: int

    def add(self, message_id: int, message: StoredMessage) -> None:
        self.newest_id = message_id
        if message.engine == ECHO_ENGINE:
            return
        self.messages.append(message)
        self.spent += message.token_count + self.overhead
        while self.spent > self.budget:
            dropped = self.messages.pop(0)
            self.spent -= dropped.token_count + self.overhead

    def newest_within(self, budget: int) -> list[StoredMessage]:
        spent, start = 0, len(self.messages)
        while start > 0 and spent + self.messages[start - 1].token_count + self.overhead <= budget:
            start -= 1
            spent += self.messages[start].token_count + self.overhead
        return self.messages[start:]


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
    def __init__(self, engine: AsyncEngine, window_budget: int = 4096) -> None:
        self._engine = engine
        self._window_budget = window_budget
        self._windows: OrderedDict[int, _CachedWindow] | None = OrderedDict() if self.dialect == "sqlite" else None
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
        message_id = await self._writer.write(
            {
                "conversation_id": conversation_id,
                "role": message.role,
                "content": message.content,
                "token_count": message.token_count,
                "engine": message.engine,
                "latency_ms": latency_ms,
            }
        )
        if self._windows is not None and (window := self._windows.get(conversation_id)) is not None:
            window.add(message_id, message)

    async def recent(self, conversation_id: int, token_budget: int, overhead_per_message: int = 0) -> list[StoredMessage]:
        """The newest messages whose stored token counts (plus an overhead each) fit the budget, oldest first.

        Echo replies are left out: they were never a model's words.
        """
        if self._windows is None:
            return await self._load_window(conversation_id, token_budget, overhead_per_message)
        newest_id = (await self._read(_NEWEST_ID, {"conversation_id": conversation_id})).scalar()
        window = self._windows.get(conversation_id)
        if (
            window is None
            or window.newest_id != newest_id
            or window.overhead != overhead_per_message
            or window.budget < token_budget
        ):
            budget = max(token_budget, self._window_budget)
            loaded = await self._load_window(conversation_id, budget, overhead_per_message)
            spent = sum(m.token_count + overhead_per_message for m in loaded)
            window = _CachedWindow(newest_id, budget, overhead_per_message, loaded, spent)
            self._windows[conversation_id] = window
            if len(self._windows) > MAX_CACHED_WINDOWS:
                self._windows.popitem(last=False)
        self._windows.move_to_end(conversation_id)
        return window.newest_within(token_budget)

    async def _load_window(self, conversation_id: int, token_budget: int, overhead_per_message: int) -> list[StoredMessage]:
        result = await self._read(
            _RECENT,
            {
                "conversation_id": conversation_id,
                "overhead": overhead_per_message,
                "budget": token_budget,
                "most_rows": token_budget // (overhead_per_message + 1) + 1,
            },
        )
        return [StoredMessage(*row) for row in result.all()]

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
        if self._windows is not None:
            self._windows.pop(conversation_id, None)
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

    async def _read(self, statement, parameters: dict | None = None):  # type: ignore[no-untyped-def]
        async with self._reader_lock:
            if self._reader is None:
                self._reader = await self._engine.execution_options(isolation_level="AUTOCOMMIT").connect()
            return await self._reader.execute(statement, parameters)


class _GroupCommitWriter:
    """One connection that commits the pending rows of all conversations together."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pending: list[tuple[dict, asyncio.Future[int]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def write(self, row: dict) -> int:
        """Insert the row; returns its id once it is committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="kortana-group-commit")
        return await future

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
                    result = await connection.execute(_INSERT_RETURNING_ID, [row for row, _ in batch])
                    ids = result.scalars().all()
                    await connection.commit()
                except Exception as error:  # every waiter hears about the failure, the writer lives on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    await connection.rollback()
                    continue
                for (_, future), message_id in zip(batch, ids):
                    if not future.done():
                        future.set_result(message_id)
