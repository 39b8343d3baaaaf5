"""How often one user may start a turn, and how often the bot may tell them it won't.

USER_COOLDOWN_SECONDS is a token bucket (discord.py's own `commands.CooldownMapping`): one turn per period
per user, the token taken when a turn is accepted. Notices ("too fast", "mention me with a message", "I
can't see your text", "still answering") share a second bucket per user: at most one notice per
`notice_interval_s`; the others are dropped silently, so a burst of messages costs the channel's shared
send bucket one message, not one per message.
"""

from __future__ import annotations

from discord.ext import commands

NOTICE_INTERVAL_MIN_S = 10.0


def _by_user(user_id: int) -> int:
    return user_id


class TurnCooldown:
    def __init__(self, seconds: float) -> None:
        self._buckets = commands.CooldownMapping.from_cooldown(1, seconds, _by_user) if seconds > 0 else None

    def try_take(self, user_id: int) -> float:
        """0 if the user may start a turn now (the token is taken); otherwise the seconds left to wait."""
        if self._buckets is None:
            return 0.0
        return self._buckets.update_rate_limit(user_id) or 0.0


class NoticeLimit:
    def __init__(self, cooldown_seconds: float) -> None:
        self.interval_s = max(cooldown_seconds, NOTICE_INTERVAL_MIN_S)
        self._buckets = commands.CooldownMapping.from_cooldown(1, self.interval_s, _by_user)

    def allow(self, user_id: int) -> bool:
        """True if this user may get a notice now (and counts it)."""
        return self._buckets.update_rate_limit(user_id) is None
