"""History on SQLite, owned by one process: each step of a turn is one job of the writer thread.

The last window of recently active conversations stays in memory. A job checks it against the newest
stored id before use (so another process's writes or resets send it back to the database), reads the window
only when it is stale, and inserts in the same transaction: a turn costs two hops to the database thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.database import sqlite_pragmas
from app.storage.history import (
    DELETE_CONVERSATION,
    INSERT_MESSAGE,
    NEWEST_ID,
    RECENT,
    HistoryStore,
    message_row,
    recent_parameters,
)
from app.storage.messages import StorageUnavailable, StoredMessage
from app.storage.sqlite_writer import SqliteWriter, SqlStatement
from app.storage.window_cache import CachedWindow, WindowCache

_RECENT = SqlStatement(RECENT)
_NEWEST_ID = SqlStatement(NEWEST_ID)
_INSERT = SqlStatement(INSERT_MESSAGE)
_DELETE = SqlStatement(DELETE_CONVERSATION)
T = TypeVar("T")
_STALE = object()  # no usable cached window: always read from the database


class SqliteHistoryStore(HistoryStore):
    def __init__(self, engine: AsyncEngine, window_budget: int) -> None:
        super().__init__(engine)
        self._window_budget = window_budget
        self._windows = WindowCache()
        self._writer = SqliteWriter(make_url(str(engine.url)).database or "", sqlite_pragmas)

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """A job of the writer thread; a database SQLite cannot use (locked too long, disk) is StorageUnavailable."""
        try:
            return await self._writer.run(job)
        except sqlite3.OperationalError as error:
            raise StorageUnavailable(f"SQLite: {error}") from error

    async def start_turn(
        self, conversation_id: int, user_message: StoredMessage, token_budget: int, overhead_per_message: int = 0
    ) -> tuple[list[StoredMessage], int]:
        row = message_row(conversation_id, user_message, None, None)
        window, cached_newest_id = self._cached(conversation_id, token_budget, overhead_per_message)
        budget = max(token_budget, self._window_budget)

        def job(connection: sqlite3.Connection) -> tuple[int | None, list[Any] | None, int]:
            newest_id, rows = _window_if_stale(connection, conversation_id, budget, overhead_per_message, cached_newest_id)
            return newest_id, rows, _insert(connection, row)

        newest_id, rows, message_id = await self._run(job)
        window = self._refreshed(conversation_id, window, newest_id, rows, budget, overhead_per_message)
        history = window.newest_within(token_budget)
        window.add(message_id, user_message)
        return history, message_id

    async def append(
        self, conversation_id: int, message: StoredMessage, *, turn_id: int | None = None, latency_ms: int | None = None
    ) -> int:
        row = message_row(conversation_id, message, turn_id, latency_ms)
        message_id = await self._run(lambda connection: _insert(connection, row))
        if (window := self._windows.get(conversation_id)) is not None:
            window.add(message_id, message)
        return message_id

    async def recent(self, conversation_id: int, token_budget: int, overhead_per_message: int = 0) -> list[StoredMessage]:
        window, cached_newest_id = self._cached(conversation_id, token_budget, overhead_per_message)
        budget = max(token_budget, self._window_budget)
        newest_id, rows = await self._run(
            lambda connection: _window_if_stale(connection, conversation_id, budget, overhead_per_message, cached_newest_id)
        )
        window = self._refreshed(conversation_id, window, newest_id, rows, budget, overhead_per_message)
        return window.newest_within(token_budget)

    async def reset(self, conversation_id: int) -> int:
        forgotten = await self._run(
            lambda connection: _DELETE.run(connection, conversation_id=conversation_id).rowcount
        )
        self._windows.forget(conversation_id)
        return forgotten

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._run(lambda connection: connection.execute("SELECT 1").fetchone())
        return time.perf_counter() - started

    async def close(self) -> None:
        await self._writer.close()
        await super().close()

    def _cached(self, conversation_id: int, budget: int, overhead: int) -> tuple[CachedWindow | None, object]:
        """The cached window, and the newest id it reflects if it can serve this budget (else _STALE)."""
        window = self._windows.get(conversation_id)
        if window is None or window.overhead != overhead or window.budget < budget:
            return None, _STALE
        return window, window.newest_id

    def _refreshed(
        self,
        conversation_id: int,
        window: CachedWindow | None,
        newest_id: int | None,
        rows: list[Any] | None,
        budget: int,
        overhead: int,
    ) -> CachedWindow:
        if rows is None and window is not None:
            return window
        window = CachedWindow.of(newest_id, budget, overhead, [StoredMessage(*row) for row in rows or []])
        self._windows.put(conversation_id, window)
        return window


def _window_if_stale(
    connection: sqlite3.Connection, conversation_id: int, budget: int, overhead: int, cached_newest_id: object
) -> tuple[int | None, list[Any] | None]:
    """The newest stored id, and the window's rows unless the cached window already reflects that id."""
    newest_id = _NEWEST_ID.run(connection, conversation_id=conversation_id).fetchone()[0]
    if cached_newest_id is not _STALE and newest_id == cached_newest_id:
        return newest_id, None
    return newest_id, _RECENT.run(connection, **recent_parameters(conversation_id, budget, overhead)).fetchall()


def _insert(connection: sqlite3.Connection, row: dict) -> int:
    return int(_INSERT.run(connection, **row).fetchone()[0])
