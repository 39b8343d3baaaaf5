"""Per-user cooldown: a user who writes faster than USER_COOLDOWN_SECONDS gets a notice, not a model call."""

from __future__ import annotations

import time
from collections.abc import Callable


class Cooldown:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last_turn: dict[int, float] = {}

    def try_start(self, user_id: int) -> float:
        """0 if the user may start a turn now (and records it); otherwise the seconds left to wait."""
        now = self._clock()
        last = self._last_turn.get(user_id)
        if last is not None and now - last < self._seconds:
            return self._seconds - (now - last)
        self._last_turn[user_id] = now
        if len(self._last_turn) > 10_000:  # forget users whose cooldown is long over
            self._last_turn = {u: t for u, t in self._last_turn.items() if now - t < self._seconds}
        return 0.0
