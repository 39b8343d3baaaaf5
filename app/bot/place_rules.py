"""What applies to one message or /ask where it was written: may this user talk to Kor'tana here, is the
channel open, and the turn's persona, model, daily limit and cooldown.

A thread follows its parent channel (open, blocked, persona), also one discord.py has not cached (an old,
archived thread arrives as a `PartialMessageable`): it is looked up, and a place that cannot be known is not
talked in. The environment's CHAT_CHANNEL_IDS open a channel unless the server decided for that channel
(`/settings channel close` wins: ServerSettings applies both). DMs have the operator's switch (DM_ENABLED)
and the environment's settings.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import discord

from app.conversation.server_settings import Access, ServerSettings

log = logging.getLogger(__name__)

DM_GUILD_ID = 0  # where DMs' tokens are charged
CHANNEL_LOOKUP_BOUND_S = 1.5  # asking Discord what an uncached channel is (within /ask's bound for its checks)
UNKNOWN_PLACE = Access(False, "channel not allowed")  # its parent, and so its rules, cannot be known


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
    defaults = settings.defaults
    if guild is None:
        access = await settings.access(None, getattr(channel, "id", 0), None, user.id, ())
        return Here(DM_GUILD_ID, access, True, False, None, None, defaults.daily_tokens, defaults.cooldown_s)
    known = await known_channel(guild, channel)
    if known is None:  # fail closed: a thread under a blocked channel must not be answered as a channel of its own
        return Here(guild.id, UNKNOWN_PLACE, False, False, None, None, defaults.daily_tokens, defaults.cooldown_s)
    channel_id, parent_id = channel_and_parent(known)
    roles = [role.id for role in getattr(user, "roles", ())]
    access, effective = await settings.here(guild.id, channel_id, parent_id, user.id, roles)
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


async def known_channel(guild: discord.Guild, channel: object) -> object | None:
    """The channel as a `discord.Thread` or one of the guild's channels: from discord.py's cache, else asked of
    Discord (bounded); None when it cannot be known."""
    channel_id = getattr(channel, "id", 0)
    if isinstance(channel, discord.Thread) or guild.get_channel(channel_id) is not None:
        return channel
    if (cached := guild.get_channel_or_thread(channel_id)) is not None:
        return cached
    try:
        async with asyncio.timeout(CHANNEL_LOOKUP_BOUND_S):
            return await guild.fetch_channel(channel_id)
    except TimeoutError:
        log.warning("Looking up an uncached channel took over %g s: not answering there", CHANNEL_LOOKUP_BOUND_S)
    except (discord.HTTPException, discord.InvalidData) as error:
        log.warning("Could not look up an uncached channel (%s): not answering there", type(error).__name__)
    return None
