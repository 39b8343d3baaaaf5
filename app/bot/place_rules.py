"""What applies to one message or /ask where it was written: may this user talk to Kor'tana here, is the
channel open, and the turn's persona, model, daily limit and cooldown.

A thread follows its parent channel (open, blocked, persona). The environment's CHAT_CHANNEL_IDS open a
channel unless the server decided for that channel (`/settings channel close` wins: ServerSettings applies
both). DMs have the operator's switch (DM_ENABLED) and the environment's settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord

from app.conversation.server_settings import Access, ServerSettings

DM_GUILD_ID = 0  # where DMs' tokens are charged


@dataclass(frozen=True, slots=True)
class Here:
    guild_id: int  # DM_GUILD_ID in a DM
    access: Access
    open: bool  # every message is answered, no mention needed
    threads: bool  # a new top-level message gets a thread of its own
    persona: str | None  # None: the operator's SYSTEM_PROMPT
    model: str | None  # an ALLOWED_MODELS string, None: the operator's models
    daily_tokens: int | None  # None: no limit
    cooldown_s: float


def channel_and_parent(channel: object) -> tuple[int, int | None]:
    """A thread is known by its own id and its parent's; any other channel by its id alone."""
    if isinstance(channel, discord.Thread):
        return channel.id, channel.parent_id
    return getattr(channel, "id", 0), None


async def rules_here(
    settings: ServerSettings,
    guild: discord.Guild | None,
    channel: object,
    user: discord.abc.User,
) -> Here:
    channel_id, parent_id = channel_and_parent(channel)
    if guild is None:
        access = await settings.access(None, channel_id, None, user.id, ())
        defaults = settings.defaults
        return Here(DM_GUILD_ID, access, True, False, None, None, defaults.daily_tokens, defaults.cooldown_s)
    roles = [role.id for role in getattr(user, "roles", ())]
    access = await settings.access(guild.id, channel_id, parent_id, user.id, roles)
    effective = await settings.effective(guild.id, channel_id, parent_id)
    return Here(
        guild.id,
        access,
        open=effective.open.value,
        threads=effective.threads.value,
        persona=None if effective.persona.source == "environment" else effective.persona.value,
        model=effective.model.value,
        daily_tokens=effective.daily_tokens.value,
        cooldown_s=effective.cooldown_s.value,
    )
