"""Group commit: one connection that commits the pending inserts of all conversations together.

Each caller still awaits its own durable commit before it goes on; under load many turns share one commit,
which is what lets SQLite take well over a thousand turns a second.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Insert
from sqlalchemy.ext.asyncio import AsyncEngine


class GroupCommitWriter:
    def __init__(self, engine: AsyncEngine, statement: Insert) -> None:
        self._engine = engine
        self._statement = statement  # an INSERT ... RETURNING id, sorted by parameter order
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
                    result = await connection.execute(self._statement, [row for row, _ in batch])
                    ids = result.scalars().all()
                    await connection.commit()
                except Exception as error:  # every waiter hears about the failure; the next write restarts us
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    await connection.rollback()
                    continue
                for (_, future), message_id in zip(batch, ids):
                    if not future.done():
                        future.set_result(message_id)
