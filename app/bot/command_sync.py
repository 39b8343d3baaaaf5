"""Slash commands are sent to Discord only when they changed, and by one process only.

Syncing PUTs the whole command set, and Discord rate-limits it hard. So each target (global, or each server
of DISCORD_GUILD_IDS, for this application) keeps the sha256 of the payload it last synced in the database,
and a start whose payload has that hash sends nothing. Only the process that runs shard 0 syncs (the bot
decides); several processes share one database, so the README's two-process deployment syncs once.

A failed sync records nothing (the next start tries again); a database that cannot say what was synced
does not stop the bot: it syncs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Protocol

import discord
from discord import app_commands

from app.storage import StorageUnavailable

log = logging.getLogger(__name__)


class KeptState(Protocol):
    """Where the hashes are kept (the conversation service, over the database's app_state)."""

    async def app_state(self, name: str) -> str | None: ...

    async def keep_app_state(self, name: str, value: str) -> None: ...


async def sync_commands(tree: app_commands.CommandTree, guild_ids: list[int], state: KeptState) -> None:
    """Sync the tree's commands globally, or (copied there) to each of `guild_ids`, where they changed."""
    targets: list[discord.Object | None] = [discord.Object(id=guild_id) for guild_id in guild_ids] or [None]
    for guild in targets:
        if guild is not None:
            tree.copy_global_to(guild=guild)
        where = "globally" if guild is None else f"to server {guild.id}"
        name = state_name(tree.client.application_id, guild)
        digest = payload_hash(tree, guild)
        try:
            if await state.app_state(name) == digest:
                log.info("Slash commands unchanged since they were synced %s: not syncing", where)
                continue
        except StorageUnavailable as error:
            log.warning("Cannot read which slash commands were synced (%s): syncing them %s", error.cause, where)
        try:
            await tree.sync(guild=guild)
        except discord.HTTPException as error:
            log.warning(
                "Could not sync slash commands (HTTP %s): invite the bot with the applications.commands scope",
                error.status,
            )
            return
        log.info("Slash commands synced %s", where)
        try:
            await state.keep_app_state(name, digest)
        except StorageUnavailable as error:
            log.warning(
                "Cannot record the slash commands synced %s (%s): the next start syncs again",
                where,
                error.cause,
            )


def payload_hash(tree: app_commands.CommandTree, guild: discord.abc.Snowflake | None) -> str:
    """The sha256 of what `tree.sync(guild=guild)` would send, in a canonical form (key and command order
    do not count)."""
    payload = sorted(
        (command.to_dict(tree) for command in tree.get_commands(guild=guild)),
        key=lambda command: (command.get("type", 1), command["name"]),
    )
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def state_name(application_id: int | None, guild: discord.abc.Snowflake | None) -> str:
    target = "global" if guild is None else f"guild:{guild.id}"
    return f"discord.commands:{application_id}:{target}"
