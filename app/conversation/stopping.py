"""A turn's stop: its asker pressed Stop while the answer streamed. The answer ends where it is; what was shown
stays and is stored as stopped.

`request()` cancels only the turn's wait for the engines' next item (`next_item`), never the turn around it:
the chain then closes the engine's stream (its request is cut off, within the chain's STREAM_CLOSE_GRACE_S) and
leaves the engine's breaker as it was (not its fault), and the turn goes on to show and store what it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final, TypeVar

T = TypeVar("T")


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


ENDED: Final = _Marker("ENDED")  # the items ended on their own
STOPPED: Final = _Marker("STOPPED")  # the stop was requested: no more items are read


class StopSignal:
    def __init__(self) -> None:
        self._requested = False
        self._waiting: asyncio.Task[object] | None = None  # the turn, while it waits for an item

    def request(self) -> None:
        """Stop the answer (from any task; idempotent): the wait for the next item ends at once."""
        if self._requested:
            return
        self._requested = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def next_item(self, items: AsyncIterator[T]) -> T | _Marker:
        """The next of `items`, ENDED after the last, or STOPPED once a stop was requested (the items were then
        cancelled mid-step, as a timeout cancels: they are not to be read again)."""
        if self._requested:
            return STOPPED
        task = asyncio.current_task()
        assert task is not None
        self._waiting = task
        try:
            return await anext(items, ENDED)
        except asyncio.CancelledError:
            # Ours, and no one else's: then the turn goes on. A cancel from outside (a shutdown) stays a cancel.
            if self._requested and task.uncancel() == 0:
                return STOPPED
            raise
        finally:
            self._waiting = None
