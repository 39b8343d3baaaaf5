"""How often one user may start a turn, and how often the bot may tell them it won't.

The turn cooldown is a token bucket (discord.py's own `commands.DynamicCooldownMapping`): one turn per period
per user and server, the token taken when a turn is accepted. The period is the server's (`/settings limits`)
or USER_COOLDOWN_SECONDS; it is part of the bucket's key, so a changed period applies to the next message.
Notices ("too fast", "mention me with a message", "I can't see your text", "still answering") share a second
bucket per user: at most one notice per NOTICE_INTERVAL_MIN_S or per cooldown, whichever is longer; the
others are dropped silently, so a burst of messages costs the channel's shared send bucket one message, not
one per message.
"""

from __future__ import annotations

from dataclasses import dataclass

from discord.ext import commands

NOTICE_INTERVAL_MIN_S = 10.0


@dataclass(frozen=True, slots=True)
class CooldownKey:
    user_id: int
    guild_id: int  # 0: DMs
    period_s: float


def per_user(period_s: float) -> commands.CooldownMapping[int]:
    """One token per `period_s` for each user id: `update_rate_limit(user_id)` takes it, or returns the seconds
    until the next one (None when taken; a period of 0 never refuses)."""
    return commands.CooldownMapping.from_cooldown(1, period_s, _by_user)


def per_user_and_server() -> commands.DynamicCooldownMapping[CooldownKey]:
    """One token per key's period for each user in each server: `update_rate_limit(key)` takes it, or returns
    the seconds until the next one (None when taken; a period of 0 never refuses)."""
    return commands.DynamicCooldownMapping(_bucket, _by_key)


def _bucket(key: CooldownKey) -> commands.Cooldown | None:
    return commands.Cooldown(1, key.period_s) if key.period_s > 0 else None


def _by_key(key: CooldownKey) -> CooldownKey:
    return key


def _by_user(user_id: int) -> int:
    return user_id
