"""Per user, the checks before a turn's place is taken pass in the order the messages arrived.

Those checks read the server's settings and the user's usage, which may wait on the database; two messages
of one user could otherwise finish them in the other order and overtake each other. Each message queues at
arrival (synchronously, before any await) and takes its place only after the user's earlier messages did.
"""

from __future__ import annotations

import asyncio


class ArrivalOrder:
    def __init__(self) -> None:
        self._last: dict[int, asyncio.Future[None]] = {}

    def enter(self, user_id: int) -> InOrder:
        """Queue now (no await); `async with` the result waits for the user's earlier messages to pass."""
        previous = self._last.get(user_id)
        passed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[user_id] = passed
        return InOrder(self, user_id, previous, passed)

    def _leave(self, user_id: int, passed: asyncio.Future[None]) -> None:
        passed.set_result(None)
        if self._last.get(user_id) is passed:
            del self._last[user_id]  # idle users cost no memory

    def __len__(self) -> int:
        """Users with a message still in its checks."""
        return len(self._last)


class InOrder:
    def __init__(
        self,
        order: ArrivalOrder,
        user_id: int,
        previous: asyncio.Future[None] | None,
        passed: asyncio.Future[None],
    ) -> None:
        self._order = order
        self._user_id = user_id
        self._previous = previous
        self._passed = passed

    async def __aenter__(self) -> None:
        if self._previous is not None and not self._previous.done():
            try:
                await asyncio.wait([self._previous])  # never cancels the earlier message's future
            except BaseException:
                self._leave_after_previous()
                raise

    async def __aexit__(self, *exc_info: object) -> None:
        # No await here: whatever follows the checks (taking the turn's place) happens in the same step.
        self._leave_after_previous()

    def _leave_after_previous(self) -> None:
        if self._previous is None or self._previous.done():
            self._order._leave(self._user_id, self._passed)
        else:  # cancelled while waiting: the next message still waits for the ones before this one
            self._previous.add_done_callback(lambda _: self._order._leave(self._user_id, self._passed))
