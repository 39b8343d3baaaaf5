"""Slash commands reach Discord only when they changed, from the process that runs shard 0: a restart with the
same commands sends no command request, a changed set is synced again, a failed sync is tried again at the
next start, and a database that cannot say what was synced does not keep the bot from starting."""

from __future__ import annotations

import logging
import re
from collections import defaultdict

import discord
from discord import app_commands

from app.bot.runner import build_bot
from app.conversation.setup import open_service
from app.storage import StorageUnavailable
from tests.helpers import World, interaction_text, start_shard

COMMAND_ROUTES = r"/applications/\d+(/guilds/\d+)?/commands(/.*)?"
GLOBAL_PUT = r"/applications/\d+/commands"
COMMANDS = {"ask", "reset", "ping", "memory", "export", "forget", "usage", "settings"}


def command_calls(world: World, since: int = 0) -> list[str]:
    """Every request to the application-command routes (reads included), from the `since`-th REST call on."""
    return [f"{c.method} {c.path}" for c in world.fake.calls[since:] if re.fullmatch(COMMAND_ROUTES, c.path)]


async def test_a_restart_with_unchanged_commands_sends_no_command_request(world: World) -> None:
    await world.start()
    assert command_calls(world) == [f"PUT /applications/{world.fake.application_id}/commands"]
    before = len(world.fake.calls)
    await world.restart()
    await world.restart()
    assert command_calls(world, since=before) == []
    interaction = await world.fake.slash_command("reset")  # the commands Discord has still work
    assert "forgot 0 messages" in await interaction_text(world, interaction)


async def test_a_changed_command_set_is_synced_again(world: World) -> None:
    await world.start()
    await world.stop()
    before = len(world.fake.calls)

    async def extra(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("extra", ephemeral=True)

    settings = world.settings()
    world.service = await open_service(settings)
    world.bot = build_bot(world.service, settings, "test", edit_interval=0.2)
    world.bot.tree.add_command(app_commands.Command(name="extra", description="A new command", callback=extra))
    world.runner = await world.fake.start_bot(world.bot)
    assert command_calls(world, since=before) == [f"PUT /applications/{world.fake.application_id}/commands"]
    assert {c["name"] for c in world.fake.commands[None]} == COMMANDS | {"extra"}


async def test_development_guilds_are_synced_each_once_and_apart_from_the_global_set(world: World) -> None:
    guild_id = world.fake.guild.id
    await world.start()
    before = len(world.fake.calls)
    await world.restart(discord_guild_ids=[guild_id])  # the global hash says nothing about the guild's set
    app = world.fake.application_id
    assert command_calls(world, since=before) == [f"PUT /applications/{app}/guilds/{guild_id}/commands"]
    assert {c["name"] for c in world.fake.commands[guild_id]} == COMMANDS
    before = len(world.fake.calls)
    await world.restart()
    await world.restart(discord_guild_ids=[guild_id])
    assert command_calls(world, since=before) == []


async def test_a_failed_sync_is_tried_again_at_the_next_start(world: World, caplog) -> None:
    world.fake.fail("PUT", GLOBAL_PUT, 403, code=50001, message="Missing Access")
    await world.start()
    assert world.fake.commands.get(None) is None
    assert any("Could not sync slash commands (HTTP 403)" in r.getMessage() for r in caplog.records)
    before = len(world.fake.calls)
    await world.restart()
    assert command_calls(world, since=before) == [f"PUT /applications/{world.fake.application_id}/commands"]
    assert {c["name"] for c in world.fake.commands[None]} == COMMANDS


async def test_a_database_that_cannot_say_what_was_synced_syncs_and_says_so(world: World, caplog) -> None:
    await world.start()
    await world.stop()
    before = len(world.fake.calls)

    async def unreadable(name: str) -> str | None:
        raise StorageUnavailable("database is locked")

    settings = world.settings()
    world.service = await open_service(settings)
    world.service.app_state = unreadable  # type: ignore[method-assign]
    world.bot = build_bot(world.service, settings, "test", edit_interval=0.2)
    with caplog.at_level(logging.WARNING):
        world.runner = await world.fake.start_bot(world.bot)
    assert command_calls(world, since=before) == [f"PUT /applications/{world.fake.application_id}/commands"]
    [line] = [r.getMessage() for r in caplog.records if "which slash commands were synced" in r.getMessage()]
    assert "database is locked" in line and "syncing" in line


async def test_two_shard_processes_sync_once_from_the_one_that_runs_shard_0(world: World) -> None:
    """The README's deployment: processes split the shards and share one database."""
    fake = world.fake
    fake.add_guild("Second server")
    received: dict[int, list] = defaultdict(list)
    shards = [await start_shard(world, 1, received)]  # shard 1 first: it must not sync
    try:
        assert command_calls(world) == []
        shards.append(await start_shard(world, 0, received))
        assert command_calls(world) == [f"PUT /applications/{fake.application_id}/commands"]
        for bot, runner in reversed(shards):  # both restart: nothing changed
            await runner.stop()
            await bot.service.close()
        shards = []
        before = len(fake.calls)
        shards = [await start_shard(world, shard_id, received) for shard_id in (0, 1)]
        assert command_calls(world, since=before) == []
    finally:
        for bot, runner in shards:
            await runner.stop()
            await bot.service.close()
