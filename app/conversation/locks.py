"""One lock per conversation: its turns run one at a time, in the order they arrived; and per user, a gate that an
erase of all their conversations closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:  # asyncio.Lock wakes waiters first come, first served
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]  # idle conversations cost no memory
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class UserGates:
    """Per user: any number of turns pass at once; erasing all of a user's conversations (/forget) waits for the
    user's running turns to end and holds new ones back until the erase is done, so no turn that read the history
    before the erase can send it to an engine after it. A turn waits at most for one erase (a database write); the
    erase, at most for the user's running turns (each bounded by the chain's answer bound)."""

    def __init__(self) -> None:
        self._running: dict[int, int] = {}
        self._drained: dict[int, asyncio.Event] = {}  # an erase waiting for the user's turns to end
        self._erasing: dict[int, asyncio.Event] = {}  # set when the user's erase is done

    @asynccontextmanager
    async def turn(self, user_id: int) -> AsyncIterator[None]:
        while (erasing := self._erasing.get(user_id)) is not None:
            await erasing.wait()
        self._running[user_id] = self._running.get(user_id, 0) + 1
        try:
            yield
        finally:
            self._running[user_id] -= 1
            if not self._running[user_id]:
                del self._running[user_id]
                if (drained := self._drained.pop(user_id, None)) is not None:
                    drained.set()

    @asynccontextmanager
    async def erase(self, user_id: int) -> AsyncIterator[None]:
        while (erasing := self._erasing.get(user_id)) is not None:
            await erasing.wait()
        done = self._erasing[user_id] = asyncio.Event()
        try:
            if self._running.get(user_id):
                await self._drained.setdefault(user_id, asyncio.Event()).wait()
            yield
        finally:
            del self._erasing[user_id]
            done.set()
