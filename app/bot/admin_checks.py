"""Who may change Kor'tana's settings in a server, and whether what they name belongs to that server.

Discord shows /settings only to members with Manage Server (its default member permissions), but a server
can grant the command to others in its integration settings: the permission is checked again here, on every
command and on every submitted form. Each refusal raises `Refusal` with the sentence its caller sees.
"""

from __future__ import annotations

import discord

from app.bot.command_tree import Refusal
from app.bot.sentences import (
    CHANNEL_ELSEWHERE,
    CHANNEL_GONE,
    NEED_MANAGE_SERVER,
    ROLE_ELSEWHERE,
    ROLE_GONE,
    SERVERS_ONLY,
)


def require_manager(interaction: discord.Interaction) -> discord.Guild:
    """The interaction's server, if its caller has Manage Server there."""
    if interaction.guild is None:
        raise Refusal(SERVERS_ONLY)
    if not interaction.permissions.manage_guild:
        raise Refusal(NEED_MANAGE_SERVER)
    return interaction.guild


def own_channel(client: discord.Client, guild: discord.Guild, channel_id: int) -> discord.abc.GuildChannel:
    """The channel of `guild` with that id; a thread stands for its parent (threads follow their channel)."""
    found = guild.get_channel_or_thread(channel_id)
    if isinstance(found, discord.Thread):
        if found.parent is None:
            raise Refusal(CHANNEL_GONE)
        return found.parent
    if found is not None:
        return found
    raise Refusal(CHANNEL_ELSEWHERE if client.get_channel(channel_id) is not None else CHANNEL_GONE)


def own_role(client: discord.Client, guild: discord.Guild, role_id: int) -> discord.Role:
    if (role := guild.get_role(role_id)) is not None:
        return role
    elsewhere = any(other.get_role(role_id) is not None for other in client.guilds if other.id != guild.id)
    raise Refusal(ROLE_ELSEWHERE if elsewhere else ROLE_GONE)
