"""The line of turns: each conversation's turns run one at a time, in the order their messages arrived, and
one user has at most a few turns accepted (running or waiting) at once.

A turn's place is taken (`join`, no await) in the order its user's messages arrived: the checks before it pass
in that order (the conversation cog's ArrivalOrder), so nothing that happens meanwhile or afterwards (a slow
settings read, a thread's start, a slow typing call, a rate limit) can let a later message overtake it.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from app.storage import ConversationKey

TURNS_PER_USER = 2  # one running, one waiting behind it


class Place:
    """A turn's place in its conversation's line: `async with place:` waits for every earlier turn to end."""

    def __init__(self, line: TurnLine, key: ConversationKey, previous: asyncio.Future[None] | None) -> None:
        self._line = line
        self._key = key
        self._previous = previous
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._left = False
        self.reached = False  # the turn's place came up: every earlier turn had ended

    @property
    def done(self) -> asyncio.Future[None]:
        return self._done

    async def __aenter__(self) -> Place:
        if self._previous is not None and not self._previous.done():
            try:
                await asyncio.wait([self._previous])  # never cancels the earlier turn's future
            except BaseException:  # cancelled while waiting: the place is given up, the line goes on
                self.leave()
                raise
        self.reached = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.leave()

    def leave(self) -> None:
        """Give up the place (idempotent). The next turn still waits for every turn before this one."""
        if self._left:
            return
        self._left = True
        self._line._release(self._key.user_id)
        if self._previous is None or self._previous.done():
            self._end()
        else:  # left while still waiting: whoever comes next still waits for the turns before this one
            self._previous.add_done_callback(lambda _: self._end())

    def _end(self) -> None:
        if not self._done.done():
            self._done.set_result(None)
        self._line._forget(self._key, self)


class TurnLine:
    def __init__(self, turns_per_user: int = TURNS_PER_USER) -> None:
        self._turns_per_user = turns_per_user
        self._last: dict[ConversationKey, Place] = {}
        self._accepted: Counter[int] = Counter()

    def has_room(self, user_id: int) -> bool:
        return self._accepted[user_id] < self._turns_per_user

    def join(self, key: ConversationKey) -> Place:
        """Take the next place in the conversation's line, now (no await). Check `has_room` first."""
        previous = self._last.get(key)
        place = Place(self, key, previous.done if previous is not None else None)
        self._last[key] = place
        self._accepted[key.user_id] += 1
        return place

    def _release(self, user_id: int) -> None:
        self._accepted[user_id] -= 1
        if self._accepted[user_id] <= 0:
            del self._accepted[user_id]

    def _forget(self, key: ConversationKey, place: Place) -> None:
        if self._last.get(key) is place:
            del self._last[key]  # idle conversations cost no memory

    def __len__(self) -> int:
        """Conversations with a turn in line."""
        return len(self._last)
