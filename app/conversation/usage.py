"""UsageLedger: what each member's answers cost today, for their daily limit, and the operator's totals.

Days are UTC: a limit resets at 00:00 UTC. A member's use today is read from the database once per process and day,
then kept up to date by the answers this process charges: every message of a server arrives at the one process
that runs its shard (DMs at shard 0's), so no other process charges that member in that server meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from app.storage import UsageCharge, UsageStore, UsageTotal

MAX_KEPT_MEMBERS = 100_000  # members whose use today is kept in memory; beyond, the oldest is read again


def utc_now() -> datetime:
    return datetime.now(UTC)


class UsageLedger:
    def __init__(self, store: UsageStore, *, now: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._now = now
        self._day = now().date()
        self._used: dict[tuple[int, int], int] = {}  # (guild, user) -> tokens today

    async def used_today(self, guild_id: int, user_id: int) -> int:
        """The tokens the member's answers cost in the server (0: DMs and the terminal) since 00:00 UTC."""
        today = self._today()
        key = (guild_id, user_id)
        if key not in self._used:
            used = await self._store.used(today, guild_id, user_id)
            if today == self._day:  # not across midnight while reading
                if len(self._used) >= MAX_KEPT_MEMBERS:
                    del self._used[next(iter(self._used))]
                self._used.setdefault(key, used)
        return self._used.get(key, 0)

    def charge(self, guild_id: int, user_id: int, tokens: int) -> UsageCharge:
        """Today's charge of an answer to the member, counted here at once; the history store writes it with the
        answer."""
        today = self._today()
        key = (guild_id, user_id)
        if key in self._used:
            self._used[key] += tokens
        return UsageCharge(today, guild_id, user_id, tokens)

    def resets_at(self) -> datetime:
        """When today's limits reset: the next 00:00 UTC."""
        return datetime.combine(self._now().date() + timedelta(days=1), time(), UTC)

    async def totals(self, days: int = 1) -> list[UsageTotal]:
        """Per day (newest first), server and engine, the last `days` UTC days (today is one)."""
        return await self._store.totals(self._today() - timedelta(days=max(days, 1) - 1))

    async def today_total(self) -> int:
        return await self._store.day_total(self._today())

    def _today(self) -> date:
        today = self._now().date()
        if today != self._day:
            self._day = today
            self._used.clear()
        return today
