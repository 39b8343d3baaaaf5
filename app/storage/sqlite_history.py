"""History on SQLite: each step of a turn is one job of the writer thread.

The last window of recently active conversations stays in memory. A job that uses one first reads `PRAGMA
data_version` (see `window_cache`): if another connection committed since, every cached window is from an
older epoch and is read again. A turn's first job checks its window, reads it if stale and inserts the user's
message in one transaction: a turn costs two hops to the database thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage._statements import (
    ANSWERS_OF_TURN,
    DELETE_CONVERSATION,
    DELETE_MESSAGES_OF_USER,
    DELETE_TURN,
    EDIT_USER_MESSAGE,
    ERASE_SUMMARIES_OF_USER,
    ERASE_SUMMARY,
    FIND_ANSWER,
    FIND_BY_TURN_KEY,
    FIND_CONVERSATION,
    RECENT,
    SAVE_SUMMARY,
    SUMMARY,
    USER_CONVERSATIONS,
    recent_parameters,
    summary_of,
    window_of,
    writes_for,
)
from app.storage.database import sqlite_busy_timeout_s, sqlite_pragmas
from app.storage.failures import StorageUnavailable, unavailable_cause
from app.storage.history import HistoryStore
from app.storage.records import ConversationKey, FoundMessage, StoredMessage, SummaryDraft, TurnStart
from app.storage.search import (
    CANDIDATES_PER_TERM,
    ROWS_PER_TURN,
    SQLITE_CHOSEN,
    found_messages,
    fts5_queries,
    rank_candidates,
    search_parameters,
    sqlite_candidates,
)
from app.storage.sqlite_writer import SqliteWriter, SqlStatement
from app.storage.window_cache import CachedWindow, WindowCache

_RECENT = SqlStatement(RECENT)
_DELETE = SqlStatement(DELETE_CONVERSATION)
_FIND_BY_TURN_KEY = SqlStatement(FIND_BY_TURN_KEY)
_FIND_ANSWER = SqlStatement(FIND_ANSWER)
_FIND_CONVERSATION = SqlStatement(FIND_CONVERSATION)
_INSERT_MESSAGE = SqlStatement(writes_for("sqlite").insert_message)
_INSERT_ANSWER = SqlStatement(writes_for("sqlite").insert_answer)
_CREATE_CONVERSATION = SqlStatement(writes_for("sqlite").create_conversation)
_CREATE_SUMMARY = SqlStatement(writes_for("sqlite").create_summary)
_CHARGE_USAGE = SqlStatement(writes_for("sqlite").charge_usage)
_PROBE_WRITE = SqlStatement(writes_for("sqlite").probe_write)
_SUMMARY = SqlStatement(SUMMARY)
_SAVE_SUMMARY = SqlStatement(SAVE_SUMMARY)
_ERASE_SUMMARY = SqlStatement(ERASE_SUMMARY)
_USER_CONVERSATIONS = SqlStatement(USER_CONVERSATIONS)
_DELETE_MESSAGES_OF_USER = SqlStatement(DELETE_MESSAGES_OF_USER)
_ERASE_SUMMARIES_OF_USER = SqlStatement(ERASE_SUMMARIES_OF_USER)
_EDIT_USER_MESSAGE = SqlStatement(EDIT_USER_MESSAGE)
_DELETE_TURN = SqlStatement(DELETE_TURN)
_ANSWERS_OF_TURN = SqlStatement(ANSWERS_OF_TURN)
T = TypeVar("T")
_STALE = -1  # an epoch no job reports: no usable cached window, read from the database


class SqliteHistoryStore(HistoryStore):
    def __init__(self, engine: AsyncEngine, window_budget: int, *, never_sent_engine: str | None) -> None:
        super().__init__(engine, never_sent_engine=never_sent_engine)
        self._window_budget = window_budget
        self._windows = WindowCache()
        self._writer = SqliteWriter(
            make_url(str(engine.url)).database or "", sqlite_pragmas(sqlite_busy_timeout_s(engine))
        )
        # Both are only touched in the writer thread, one job at a time.
        self._data_version: int | None = None
        self._epoch = 0

    async def recent(
        self, conversation_id: int, token_budget: int, overhead_per_message: int = 0
    ) -> list[StoredMessage]:
        conversation_id = self._current(conversation_id)
        window, cached_epoch = self._cached(conversation_id, token_budget, overhead_per_message)
        budget = max(token_budget, self._window_budget)
        epoch, rows = await self._run(
            lambda connection: self._window_if_stale(
                connection, conversation_id, budget, overhead_per_message, cached_epoch
            )
        )
        window = self._refreshed(conversation_id, window, epoch, rows, budget, overhead_per_message)
        return window.newest_within(token_budget)[0]

    async def search(
        self, conversation_id: int, terms: Sequence[str], *, before_turn: int, limit: int
    ) -> list[FoundMessage]:
        """On a connection of the engine's pool, not the writer's: the writer runs its jobs inside its write
        transaction, so a search there would hold every conversation's commit back for its length. Under WAL a
        reader neither waits for the writer nor makes it wait, and sees every committed message."""
        conversation_id = self._current(conversation_id)
        queries = fts5_queries(conversation_id, terms)
        if not queries or limit <= 0:
            return []
        candidates_of = {f"q{i}": query for i, query in enumerate(queries)}
        candidates_of.update(before_turn=before_turn, per_term=CANDIDATES_PER_TERM)

        async def read() -> list[FoundMessage]:
            async with self._engine.connect() as connection:
                candidates = (await connection.execute(sqlite_candidates(len(queries)), candidates_of)).all()
                # Twice what is needed: some may be the never-sent engine's, or newer than the turn.
                ids = rank_candidates(candidates, 2 * limit * ROWS_PER_TURN)
                if not ids:
                    return []
                parameters = search_parameters(conversation_id, before_turn, limit, self._never_sent)
                parameters.update(ids=ids, most_rows=len(ids))
                rows = (await connection.execute(SQLITE_CHOSEN, parameters)).all()
            rank = {message_id: place for place, message_id in enumerate(ids)}
            return found_messages(sorted(rows, key=lambda row: rank[row.id]), limit)

        return await self._retrying(read, self._log_id(conversation_id))

    async def ping(self) -> float:
        """A read on the engine's own connection: under WAL it never waits for a writer, so /ping answers at
        once while another program holds the write lock (`write_failure` tells whether writes fail)."""
        started = time.perf_counter()
        async with self._engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
        return time.perf_counter() - started

    async def _probe_write(self, written_at: str) -> None:
        """A job of the writer like any turn's: it waits for the write lock (BEGIN IMMEDIATE) as long as they do,
        and shares their commit when one is on its way."""
        await self._run(lambda connection: _PROBE_WRITE.run(connection, value=written_at))

    async def close(self) -> None:
        await self._writer.close()
        await super().close()

    async def _find_or_create(self, key: ConversationKey) -> int:
        def job(connection: sqlite3.Connection) -> int:
            _CREATE_CONVERSATION.run(connection, user_id=key.user_id, scope=key.scope)
            return int(_FIND_CONVERSATION.run(connection, user_id=key.user_id, scope=key.scope).fetchone()[0])

        return await self._run(job)

    async def _start_turn(
        self, conversation_id: int, user_message: StoredMessage, row: dict, budget: int, overhead: int
    ) -> TurnStart:
        window, cached_epoch = self._cached(conversation_id, budget, overhead)
        read_budget = max(budget, self._window_budget)

        def job(connection: sqlite3.Connection) -> tuple[int, list[Any] | None, int]:
            epoch, rows = self._window_if_stale(connection, conversation_id, read_budget, overhead, cached_epoch)
            return epoch, rows, _insert_once(connection, row)

        epoch, rows, message_id = await self._run_in(conversation_id, job)
        window = self._refreshed(conversation_id, window, epoch, rows, read_budget, overhead)
        history, has_older = window.newest_within(budget)
        window.add(replace(user_message, id=message_id, turn=message_id))
        return TurnStart(history, message_id, has_older)

    async def _finish_turn(self, conversation_id: int, answer: StoredMessage, row: dict, charged: bool) -> bool:
        def job(connection: sqlite3.Connection) -> tuple[bool, int | None]:
            if (inserted := _INSERT_ANSWER.run(connection, **row).fetchone()) is not None:
                if charged:  # plain sqlite3 has no adapter for dates (deprecated): the ISO text SQLAlchemy stores
                    _CHARGE_USAGE.run(connection, **(row | {"day": row["day"].isoformat()}))
                return True, int(inserted[0])
            already = _FIND_ANSWER.run(connection, **row).fetchone() is not None
            return already, None

        stored, answer_id = await self._run_in(conversation_id, job)
        if answer_id is not None and (window := self._windows.get(conversation_id)) is not None:
            window.add(replace(answer, id=answer_id, turn=row["turn_id"]))
        return stored

    async def _replace_answer(self, conversation_id: int, answer: StoredMessage, row: dict, charged: bool) -> bool:
        def job(connection: sqlite3.Connection) -> bool:
            _ANSWERS_OF_TURN.run(connection, conversation_id=conversation_id, turn_id=row["turn_id"])
            self._epoch += 1  # as in _reset: every window read before this (or queued behind it) is stale
            if _INSERT_ANSWER.run(connection, **row).fetchone() is None:
                return False  # the question is gone
            if charged:
                _CHARGE_USAGE.run(connection, **(row | {"day": row["day"].isoformat()}))
            return True

        stored = await self._run_in(conversation_id, job)
        self._windows.forget(conversation_id)
        return stored

    async def _append(self, conversation_id: int, message: StoredMessage, row: dict) -> int:
        message_id = await self._run_in(conversation_id, lambda connection: _insert_once(connection, row))
        if (window := self._windows.get(conversation_id)) is not None:
            window.add(replace(message, id=message_id, turn=row["turn_id"] or message_id))
        return message_id

    async def _start_summary(self, conversation_id: int) -> SummaryDraft:
        def job(connection: sqlite3.Connection) -> SummaryDraft:
            _CREATE_SUMMARY.run(connection, conversation_id=conversation_id)
            row = _SUMMARY.run(connection, conversation_id=conversation_id).fetchone()
            return SummaryDraft(row[-1], summary_of(row))

        return await self._run(job)

    async def _save_summary(self, conversation_id: int, values: dict) -> bool:
        return await self._run(
            lambda connection: _SAVE_SUMMARY.run(connection, **values).rowcount == 1
        )

    async def _forget_user(self, user_id: int) -> tuple[int, list[int]]:
        def job(connection: sqlite3.Connection) -> tuple[int, list[int]]:
            conversation_ids = [row[0] for row in _USER_CONVERSATIONS.run(connection, user_id=user_id)]
            forgotten = _DELETE_MESSAGES_OF_USER.run(connection, user_id=user_id).rowcount
            _ERASE_SUMMARIES_OF_USER.run(connection, user_id=user_id)
            self._epoch += 1  # as in _reset
            return forgotten, conversation_ids

        return await self._run(job)

    async def _reset(self, conversation_id: int) -> int:
        def job(connection: sqlite3.Connection) -> int:
            forgotten = _DELETE.run(connection, conversation_id=conversation_id).rowcount
            _ERASE_SUMMARY.run(connection, of_conversation=conversation_id)
            # Our own commits leave data_version as it is: a new epoch makes every window read before this
            # delete stale, including one a turn queued behind this job is about to use.
            self._epoch += 1
            return forgotten

        forgotten = await self._run(job)
        self._windows.forget(conversation_id)
        return forgotten

    async def _edit_message(self, conversation_id: int, values: dict) -> bool:
        def job(connection: sqlite3.Connection) -> bool:
            edited = _EDIT_USER_MESSAGE.run(connection, **values).rowcount == 1
            self._epoch += 1  # as in _reset: every window read before this edit (or queued behind it) is stale
            return edited

        return await self._run_in(conversation_id, job)

    async def _delete_turn(self, conversation_id: int, turn_id: int) -> int:
        def job(connection: sqlite3.Connection) -> int:
            erased = _DELETE_TURN.run(connection, conversation_id=conversation_id, turn_id=turn_id).rowcount
            self._epoch += 1  # as in _reset
            return erased

        return await self._run_in(conversation_id, job)

    def _forget_conversation(self, conversation_id: int) -> None:
        self._windows.forget(conversation_id)

    async def _run_in(self, conversation_id: int, job: Callable[[sqlite3.Connection], T]) -> T:
        """A job that writes to the conversation. A caller cancelled meanwhile never learns whether the job
        committed, so the cached window can no longer be kept in step: the next turn reads it again."""
        try:
            return await self._run(job)
        except asyncio.CancelledError:
            self._windows.forget(conversation_id)
            raise

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """A job of the writer thread; a database SQLite cannot use now (locked too long, full, read-only, an
        I/O error) is StorageUnavailable with SQLite's short cause; other errors are raised as they are."""
        try:
            return await self._writer.run(job)
        except sqlite3.Error as error:
            cause = unavailable_cause(error)
            if cause is None:
                raise
            raise StorageUnavailable(cause) from error

    def _epoch_now(self, connection: sqlite3.Connection) -> int:
        """In the writer thread: the current epoch, a new one if another connection committed since last time."""
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._epoch += 1
        return self._epoch

    def _window_if_stale(
        self, connection: sqlite3.Connection, conversation_id: int, budget: int, overhead: int, cached_epoch: int
    ) -> tuple[int, list[Any] | None]:
        """The epoch, and the window's rows unless the cached window is of this epoch."""
        epoch = self._epoch_now(connection)
        if cached_epoch == epoch:
            return epoch, None
        parameters = recent_parameters(conversation_id, budget, overhead, self._never_sent)
        return epoch, _RECENT.run(connection, **parameters).fetchall()

    def _cached(self, conversation_id: int, budget: int, overhead: int) -> tuple[CachedWindow | None, int]:
        """The cached window, and its epoch if it can serve this budget (else _STALE)."""
        window = self._windows.get(conversation_id)
        if window is None or window.overhead != overhead or window.budget < budget:
            return None, _STALE
        return window, window.epoch

    def _refreshed(
        self,
        conversation_id: int,
        window: CachedWindow | None,
        epoch: int,
        rows: list[Any] | None,
        budget: int,
        overhead: int,
    ) -> CachedWindow:
        if rows is None and window is not None:
            return window
        window = CachedWindow.of(epoch, budget, overhead, *window_of(rows or [], budget), self._never_sent)
        self._windows.put(conversation_id, window)
        return window


def _insert_once(connection: sqlite3.Connection, row: dict) -> int:
    inserted = _INSERT_MESSAGE.run(connection, **row).fetchone()
    if inserted is None:  # this turn's message is already stored
        inserted = _FIND_BY_TURN_KEY.run(connection, turn_key=row["turn_key"], role=row["role"]).fetchone()
    return int(inserted[0])
