"""SQLite's side of a turn: one thread, one connection, one commit for the writes of many conversations.

Each hop between the event loop and a database thread costs more than the SQL itself (about 0.15 ms on an
idle VM, against 0.01-0.05 ms for the statements), so a turn's steps are jobs that run whole in this
thread: "check the cached window, read it if stale, insert the user's message" is one hop, and so is
"insert the answer". Jobs that arrive while a batch runs wait for the next one and share its commit (group
commit); every caller still awaits its own durable commit before it goes on.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import ClauseElement
from sqlalchemy.dialects import sqlite

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

_NAMED = sqlite.dialect(paramstyle="named")


class SqlStatement:
    """A Core statement compiled once to SQLite's SQL, run with plain sqlite3 inside a job."""

    def __init__(self, statement: ClauseElement) -> None:
        self._compiled = statement.compile(dialect=_NAMED)
        self.sql = str(self._compiled)

    def parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        return self._compiled.construct_params(values)

    def run(self, connection: sqlite3.Connection, **values: Any) -> sqlite3.Cursor:
        return connection.execute(self.sql, self.parameters(values))


class SqliteWriter:
    def __init__(self, path: str, prepare: Callable[[sqlite3.Connection], None]) -> None:
        self._path = path
        self._prepare = prepare  # the pragmas every connection gets
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kortana-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._batch: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run the job in the next batch; returns its result once the batch is committed."""
        if self._closed:
            raise ConnectionError("the history store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._batch is None or self._batch.done():
            # Its batches commit many turns' jobs: started outside the turn that happened to wake it.
            self._batch = asyncio.create_task(
                self._run_batches(), name="kortana-sqlite-batches", context=contextvars.Context()
            )
        return await future

    async def close(self) -> None:
        """Finish the jobs already submitted, then close the connection (a second close does nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._batch is not None:
            await asyncio.gather(self._batch, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_connection)
        self._thread.shutdown(wait=True)

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await loop.run_in_executor(self._thread, self._commit, [job for job, _ in batch])
            except BaseException as error:  # the commit failed (or we were cancelled): nobody's write is durable
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else ConnectionError("closed"))
                if not isinstance(error, Exception):
                    raise
                continue
            for (_, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        """In the thread: each job in its own savepoint (one failing job spoils no other), then one commit."""
        connection = self._open()
        results: list[tuple[bool, Any]] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                connection.execute("SAVEPOINT job")
                try:
                    results.append((True, job(connection)))
                    connection.execute("RELEASE job")
                except Exception as error:
                    if not connection.in_transaction:
                        # SQLite rolled the whole transaction back itself (it does on a full disk or an I/O
                        # error): the jobs before this one are undone too, and this error is why.
                        raise
                    connection.execute("ROLLBACK TO job")
                    connection.execute("RELEASE job")
                    results.append((False, error))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return results

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            # isolation_level=None: transactions are ours (BEGIN/COMMIT above), not the module's.
            self._connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._prepare(self._connection)
        return self._connection

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
