"""Two bot "processes" (each its own ConversationService and database pool) run shard 0 and shard 1 of one
bot over one PostgreSQL; with HISTORY_SCOPE=global a user's conversation follows them across servers."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.fakes.openai_server import Reply
from tests.helpers import World, start_shard


def noted(body: dict) -> Reply:
    return Reply(f"noted: {body['messages'][-1]['content']}", chunks=2)


async def test_two_shard_processes_share_one_global_history_in_order(world: World) -> None:
    if world.database_url.startswith("sqlite"):
        pytest.skip("SQLite is one process per file: sharded processes need PostgreSQL")
    fake = world.fake
    guild_a = fake.guild  # guild 0 -> shard 0
    guild_b = fake.add_guild("Second server")  # guild 1 -> shard 1
    assert (fake.shard_for(guild_a.id, 2), fake.shard_for(guild_b.id, 2)) == (0, 1)
    channel_a, channel_b = guild_a.channels["general"], guild_b.channels["general"]
    world.brain.script = noted
    world.overrides["history_scope"] = "global"
    received: dict[int, list] = defaultdict(list)
    shards = [await start_shard(world, shard_id, received) for shard_id in (0, 1)]
    try:
        assert [{g.id for g in bot.guilds} for bot, _ in shards] == [{guild_a.id}, {guild_b.id}]

        conversation = [
            (channel_a, "my name is Alice"),
            (channel_b, "I live in Lisbon"),
            (channel_a, "where do I live, and what is my name?"),
        ]
        for number, (channel, text) in enumerate(conversation, start=1):
            await fake.user_message(channel, f"<@{fake.bot_id}> {text}")
            await fake.wait_for(
                lambda number=number: len(world.brain.requests) == number, what=f"brain request {number}"
            )
            await fake.wait_for(
                lambda text=text, channel=channel: any(
                    m.content == f"noted: {text}" for m in fake.bot_messages(channel)
                )
                and all(bot.active_turns == 0 for bot, _ in shards),
                what=f"answer {number} shown and stored",
            )

        last = world.brain.requests[-1].messages
        assert [(m["role"], m["content"]) for m in last[1:]] == [
            ("user", "my name is Alice"),
            ("assistant", "noted: my name is Alice"),
            ("user", "I live in Lisbon"),
            ("assistant", "noted: I live in Lisbon"),
            ("user", "where do I live, and what is my name?"),
        ]
        assert set(received[0]) == {guild_a.id} and set(received[1]) == {guild_b.id}
        assert [c.shard_id for c in fake.connections if c.session] == [0, 1]
    finally:
        for bot, runner in shards:
            await runner.stop()
            await bot.service.close()
