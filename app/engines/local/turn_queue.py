"""One turn at a time on the local model, with a bounded queue in front: a turn past the queue is BUSY at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.engines.contract import EngineError, ErrorKind


class TurnQueue:
    """The model's single turn: `enter` waits for it (at most `size` turns wait), `leave` passes it on.

    `reserved()` waits for the turn ahead of the answer (the chain starts the answer's deadline only once the
    model is free); a `take_turn` in the same task then takes that reservation over instead of queueing again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._reserved_for: asyncio.Task[object] | None = None

    @property
    def waiting(self) -> int:
        return self._waiting

    async def enter(self) -> None:
        # Waiters count even while the lock passes from one turn to the next.
        if self._waiting >= self.size and (self._lock.locked() or self._waiting):
            raise EngineError(ErrorKind.BUSY, f"the local model is busy ({self._waiting} turns waiting)")
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1

    def leave(self) -> None:
        self._lock.release()

    async def take_turn(self) -> None:
        """The turn this task reserved, or else a place in the queue."""
        task = asyncio.current_task()
        if task is not None and self._reserved_for is task:
            self._reserved_for = None  # the caller owns the reserved turn now, and leaves it as usual
            return
        await self.enter()

    @contextlib.asynccontextmanager
    async def reserved(self) -> AsyncIterator[None]:
        """Hold the turn for this task; it is passed on at the end unless a `take_turn` took it over."""
        await self.enter()
        task = asyncio.current_task()
        self._reserved_for = task
        try:
            yield
        finally:
            if self._reserved_for is task:
                self._reserved_for = None
                self.leave()
