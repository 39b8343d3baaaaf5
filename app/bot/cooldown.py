"""How often one user may start a turn, and how often the bot may tell them it won't.

USER_COOLDOWN_SECONDS is a token bucket (discord.py's own `commands.CooldownMapping`): one turn per period
per user, the token taken when a turn is accepted. Notices ("too fast", "mention me with a message", "I
can't see your text", "still answering") share a second bucket per user: at most one notice per
NOTICE_INTERVAL_MIN_S or per cooldown, whichever is longer; the others are dropped silently, so a burst of
messages costs the channel's shared send bucket one message, not one per message.
"""

from __future__ import annotations

from discord.ext import commands

NOTICE_INTERVAL_MIN_S = 10.0


def per_user(period_s: float) -> commands.CooldownMapping[int]:
    """One token per `period_s` for each user id: `update_rate_limit(user_id)` takes it, or returns the seconds
    until the next one (None when taken; a period of 0 never refuses)."""
    return commands.CooldownMapping.from_cooldown(1, period_s, _by_user)


def _by_user(user_id: int) -> int:
    return user_id
