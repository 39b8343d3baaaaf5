"""Kor'tana on Discord, end to end: real discord.py ↔ fake Discord API, real huggingface_hub ↔ local servers."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from app.bot.sentences import (
    ATTACHMENTS_ONLY,
    CANNOT_SEE_MESSAGE,
    CANNOT_SEE_REPLY,
    EMPTY_MENTION,
    files_unreadable,
)
from app.conversation.events import NO_MEMORY
from app.storage import StorageUnavailable
from tests.fakes.openai_server import HttpError, Reply, refused_base_url
from tests.helpers import HF_SECRET, World, answer_to, interaction_text, mention, user_contents

MESSAGE_CONTENT_INTENT = 1 << 15


async def test_a_mention_is_answered_by_the_brain_with_the_history_in_order(world: World) -> None:
    await world.start()
    first = await mention(world, "my name is Alice")
    assert await answer_to(world, first) == ["Hello from the brain!"]
    second = await world.fake.user_message(world.fake.channel, f"<@!{world.fake.bot_id}> what is my name?")
    assert await answer_to(world, second) == ["Hello from the brain!"]

    sent = world.brain.requests[-1].messages
    assert sent[0]["role"] == "system" and "alice" in sent[0]["content"].lower()
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "my name is Alice"),
        ("assistant", "Hello from the brain!"),
        ("user", "what is my name?"),
    ]
    reply = world.fake.bot_messages(world.fake.channel)[0]
    assert reply.data.get("message_reference", {}).get("message_id") == first["id"]
    await world.fake.wait_for(lambda: world.fake.typing, what="the bot shows it is typing")


async def test_dms_and_replies_to_the_bot_are_answered_other_bots_and_webhooks_are_not(world: World) -> None:
    await world.start()
    dm = await world.fake.dm_message(world.fake.alice, "hello in private")
    assert await answer_to(world, dm) == ["Hello from the brain!"]

    first = await mention(world, "start")
    await answer_to(world, first)
    bot_reply = world.fake.bot_messages(world.fake.channel)[-1]
    follow_up = await world.fake.user_message(world.fake.channel, "and a reply to you", reply_to=bot_reply.id)
    assert await answer_to(world, follow_up) == ["Hello from the brain!"]

    requests_before = len(world.brain.requests)
    other_bot = world.fake.add_user("otherbot", bot=True)
    await world.fake.user_message(world.fake.channel, f"<@{world.fake.bot_id}> I am a bot", author=other_bot)
    await world.fake.user_message(world.fake.channel, f"<@{world.fake.bot_id}> hook", webhook_id=987654321)
    await world.fake.user_message(world.fake.channel, "nobody mentioned you")
    await asyncio.sleep(0.3)
    assert len(world.brain.requests) == requests_before


async def test_history_survives_a_restart_and_reset_starts_fresh(world: World) -> None:
    await world.start()
    await answer_to(world, await mention(world, "remember the blue door"))
    await world.restart()
    await answer_to(world, await mention(world, "what did I ask you to remember?"))
    assert "remember the blue door" in user_contents(world.brain.requests[-1])

    interaction = await world.fake.slash_command("reset")
    assert "forgot 4 messages" in await interaction_text(world, interaction)
    assert interaction.ephemeral

    await answer_to(world, await mention(world, "hello again"))
    assert user_contents(world.brain.requests[-1]) == ["hello again"]


async def test_brain_down_hf_answers_both_down_echo_answers(world: World) -> None:
    with refused_base_url() as refused:
        await world.start(brain_url=refused)
        message = await mention(world, "are you there?")
        texts = await answer_to(world, message)
        assert texts[0].startswith("Hello from Hugging Face!") and "answered by huggingface" in texts[0]

        world.hf.script = lambda body: HttpError(503, headers={"Retry-After": "30"})
        message = await mention(world, "still there?")
        texts = await answer_to(world, message)
        assert "still there?" in texts[0] and "answered by echo" in texts[0]


async def test_ask_defers_prefers_hf_streams_and_extends_the_history(world: World) -> None:
    world.hf.default = Reply("A considered answer from HF.", chunks=6, chunk_delay_s=0.05)
    await world.start()
    await answer_to(world, await mention(world, "context first"))
    interaction = await world.fake.slash_command("ask", {"question": "what is the meaning of life?"})
    await world.fake.wait_for(
        lambda: interaction.original and interaction.original.content.startswith("A considered answer from HF."),
        what="ask answer",
    )
    assert interaction.deferred and interaction.ack_latency < 1.0
    await world.fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended (its answer stored)")
    assert not interaction.ephemeral
    expected = ["context first", "Hello from the brain!", "what is the meaning of life?"]
    assert user_contents(world.hf.requests[-1]) == expected
    history = await world.service.export(world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0))
    assert [m.content for m in history][-2:] == ["what is the meaning of life?", "A considered answer from HF."]


async def test_a_4500_character_answer_is_split_into_whole_messages(world: World) -> None:
    paragraphs = [f"Part {i}. " + " ".join(["The quick brown fox jumps over the lazy dog."] * 6) for i in range(16)]
    long_answer = "\n\n".join(paragraphs)
    assert 4400 < len(long_answer) < 4700
    world.brain.default = Reply(long_answer, chunks=20)
    await world.start()
    texts = await answer_to(world, await mention(world, "tell me a long story"), count=3)
    assert len(texts) == 3 and all(len(t) <= 2000 for t in texts)
    assert all(t.startswith("Part") for t in texts)
    assert "\n\n".join(texts) == long_answer


async def test_everyone_in_model_output_pings_nobody(world: World) -> None:
    world.brain.default = Reply(f"Hey @everyone and @here, look at <@{world.fake.alice['id']}>!", chunks=2)
    await world.start()
    await answer_to(world, await mention(world, "say something loud"))
    for message in world.fake.bot_messages(world.fake.channel):
        assert message.pings == set()
        assert all(allowed is not None and allowed.get("parse") == [] for allowed in message.allowed_mentions)


async def test_a_429_on_an_edit_is_survived(world: World) -> None:
    world.brain.default = Reply("one two three four five six seven eight", chunks=8, chunk_delay_s=0.1)
    await world.start()
    world.fake.rate_limit("PATCH", r"/channels/\d+/messages/\d+", times=2, retry_after=0.2)
    texts = await answer_to(world, await mention(world, "count for me"))
    await world.fake.wait_for(
        lambda: world.fake.bot_messages(world.fake.channel)[0].content == "one two three four five six seven eight",
        what="final text after the 429",
    )
    assert any(call.status == 429 for call in world.fake.calls_matching("PATCH"))
    assert texts


async def test_ping_reports_health_without_secrets(world: World) -> None:
    await world.start()
    interaction = await world.fake.slash_command("ping")
    text = await interaction_text(world, interaction)
    for expected in ("Pong", "Gateway latency", "Database", "brain", "huggingface", "echo", "Uptime", "breaker"):
        assert expected in text
    assert HF_SECRET not in text and "fake-token" not in text
    assert "/" not in text.split("Database:")[1].split("\n")[0], (
        "Discord users see the kind of database, not its path or URL"
    )


async def test_a_too_fast_user_gets_a_notice_instead_of_a_model_call(world: World) -> None:
    await world.start(user_cooldown_seconds=30)
    first = await mention(world, "one")
    await answer_to(world, first)
    second = await mention(world, "two, right away")
    texts = await answer_to(world, second)
    assert "Easy there" in texts[0]
    assert len(world.brain.requests) == 1


@pytest.mark.parametrize(
    ("content", "attachments", "expected"),
    [
        ("", None, EMPTY_MENTION),
        ("\u200b\u200b", None, EMPTY_MENTION),
        ("", [{"filename": "cat.psd", "size": 1234}], files_unreadable(["cat.psd"])),
    ],
)
async def test_empty_mentions_and_attachments_only_get_a_short_answer(
    world: World, content, attachments, expected
) -> None:
    await world.start()
    message = await mention(world, content, attachments=attachments)
    assert await answer_to(world, message) == [expected]
    assert world.brain.requests == []
    after = await mention(world, "now a real question")
    assert await answer_to(world, after) == ["Hello from the brain!"]


async def test_a_10000_character_message_is_answered_and_stored_whole(world: World) -> None:
    await world.start()
    huge = "lorem ipsum " * 833
    message = await mention(world, huge)
    texts = await answer_to(world, message)
    assert texts[0].startswith("Hello from the brain!") and "only read the first part" in texts[0]
    key = world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)
    assert (await world.service.export(key))[0].content == huge.strip()


async def test_the_users_message_edited_then_deleted_while_streaming_stops_the_answer_not_the_bot(
    world: World,
) -> None:
    world.brain.default = Reply("slow and steady wins the race", chunks=5, chunk_delay_s=0.1)
    await world.start()
    message = await mention(world, "tell me slowly")
    await world.fake.wait_for(lambda: world.brain.requests)
    await world.fake.edit_user_message(int(message["id"]), "edited meanwhile")
    await world.fake.delete_message(int(message["id"]))
    await world.fake.wait_for(lambda: world.bot.active_turns == 0, what="the deleted message's turn ended")
    assert world.fake.bot_messages(world.fake.channel) == []  # its reply went with it (see test_edits)
    assert await answer_to(world, await mention(world, "next turn")) == ["slow and steady wins the race"]


async def test_a_channel_the_bot_cannot_write_to_neither_crashes_nor_blocks(world: World, caplog) -> None:
    await world.start()
    await world.fake.user_message(world.fake.readonly_channel, f"<@{world.fake.bot_id}> hello?")
    await world.fake.wait_for(lambda: world.brain.requests, what="the turn ran")
    await asyncio.sleep(0.2)
    assert world.fake.bot_messages(world.fake.readonly_channel) == []
    key = world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)
    assert any("No permission" in r.getMessage() and key.log_id in r.getMessage() for r in caplog.records)
    assert await answer_to(world, await mention(world, "and here?")) == ["Hello from the brain!"]


async def test_open_channels_answer_every_message(world: World) -> None:
    await world.start(chat_channel_ids=[world.fake.channel])
    message = await world.fake.user_message(world.fake.channel, "no mention needed here")
    assert await answer_to(world, message) == ["Hello from the brain!"]


async def test_open_channels_answer_what_people_write_not_joins_pins_or_stickers(world: World) -> None:
    await world.start(chat_channel_ids=[world.fake.channel])
    fake = world.fake
    await fake.user_message(fake.channel, "", type=7)  # a member joined
    await fake.user_message(fake.channel, "", type=6)  # a message was pinned
    sticker = await fake.user_message(
        fake.channel, "", sticker_items=[{"id": "749054660769218631", "name": "Wave", "format_type": 1}]
    )
    assert await answer_to(world, sticker) == [ATTACHMENTS_ONLY]
    await asyncio.sleep(0.3)
    assert fake.texts(fake.channel) == [ATTACHMENTS_ONLY], "joins and pins get no answer"
    assert world.brain.requests == []


async def test_message_content_is_asked_for_by_default_and_never_when_off(world: World) -> None:
    await world.start()
    assert world.fake.identifies[-1]["intents"] & MESSAGE_CONTENT_INTENT
    await world.restart(message_content_intent="off")
    assert not world.fake.identifies[-1]["intents"] & MESSAGE_CONTENT_INTENT


async def bot_message_to_reply_to(world: World):
    await answer_to(world, await mention(world, "start"))
    return world.fake.bot_messages(world.fake.channel)[-1]


async def test_a_reply_with_the_ping_off_is_answered_from_its_text(world: World) -> None:
    await world.start()
    own = await bot_message_to_reply_to(world)
    reply = await world.fake.user_message(world.fake.channel, "a quiet reply", reply_to=own.id, reply_ping=False)
    assert await answer_to(world, reply) == ["Hello from the brain!"]
    assert user_contents(world.brain.requests[-1])[-1] == "a quiet reply"


async def test_without_the_intent_a_reply_it_cannot_read_is_told_so_once(world: World) -> None:
    await world.start(message_content_intent="off")
    own = await bot_message_to_reply_to(world)
    requests = len(world.brain.requests)
    first = await world.fake.user_message(world.fake.channel, "a quiet reply", reply_to=own.id, reply_ping=False)
    await world.fake.user_message(world.fake.channel, "another one", reply_to=own.id, reply_ping=False)
    texts = await answer_to(world, first)
    await asyncio.sleep(0.3)
    assert texts == [CANNOT_SEE_REPLY] and len(world.fake.bot_messages(world.fake.channel)) == 2, "one notice"
    assert "Mention me with a message" not in CANNOT_SEE_REPLY and "can't see" in CANNOT_SEE_REPLY
    assert len(world.brain.requests) == requests
    pinged = await world.fake.user_message(world.fake.channel, "with the ping on", reply_to=own.id)
    assert await answer_to(world, pinged) == ["Hello from the brain!"]


async def test_without_the_intent_open_channels_say_what_they_cannot_see(world: World) -> None:
    await world.start(message_content_intent="off", chat_channel_ids=[world.fake.channel])
    message = await world.fake.user_message(world.fake.channel, "no mention needed here?")
    assert await answer_to(world, message) == [CANNOT_SEE_MESSAGE]
    assert world.brain.requests == []


async def test_an_answer_already_shown_is_never_replaced_by_an_error(world: World) -> None:
    await world.start()
    respond = world.service.respond

    async def respond_then_fail(*args, **kwargs):
        async for event in respond(*args, **kwargs):
            yield event
        raise StorageUnavailable("database or disk is full")

    world.service.respond = respond_then_fail
    message = await mention(world, "answer me")
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert NO_MEMORY not in [version for m in world.fake.bot_messages(world.fake.channel) for version in m.versions]


async def test_a_failed_turn_logs_its_conversation_and_cause_never_the_text(world: World, caplog) -> None:
    await world.start()

    async def respond_failing(*args, **kwargs):
        raise StorageUnavailable("database or disk is full")
        yield  # an async generator, like the real one

    world.service.respond = respond_failing
    message = await mention(world, "my secret question")
    assert await answer_to(world, message) == [NO_MEMORY]
    key = world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)
    [line] = [record.getMessage() for record in caplog.records if "Turn failed" in record.getMessage()]
    assert key.log_id in line and "database or disk is full" in line
    assert "my secret question" not in caplog.text and str(key.user_id) not in line


async def test_slash_commands_sync_at_once_to_development_guilds(world: World) -> None:
    guild_id = world.fake.guild.id
    await world.start(discord_guild_ids=[guild_id])
    commands = {command["name"] for command in world.fake.commands[guild_id]}
    assert commands == {"ask", "reset", "ping", "memory", "export", "forget", "usage", "settings"}
    interaction = await world.fake.slash_command("reset")
    assert "forgot 0 messages" in await interaction_text(world, interaction)


async def test_reset_during_a_slow_answer_still_replies_in_time(world: World) -> None:
    world.brain.default = Reply("a slow and thoughtful answer", chunks=4, chunk_delay_s=0.5)
    await world.start()
    message = await mention(world, "think slowly")
    await world.fake.wait_for(lambda: world.brain.requests, what="the slow turn started")
    interaction = await world.fake.slash_command("reset")
    assert "forgot 2 messages" in await interaction_text(world, interaction)
    assert interaction.ack_latency < 1.0, "deferred within Discord's 3 seconds, not after the answer"
    assert await answer_to(world, message) == ["a slow and thoughtful answer"]


async def test_ask_errors_are_shown_only_to_the_caller(world: World) -> None:
    await world.start()
    interaction = await world.fake.slash_command("ask", {"question": "\u200b\u200b"})
    text = await world.fake.wait_for(
        lambda: interaction.followups and interaction.followups[0].content, what="the private apology"
    )
    assert "Ask me something" in text and interaction.followups[0].ephemeral
    assert interaction.original is None or interaction.original.deleted or not interaction.original.content


async def test_a_reset_while_the_database_is_locked_says_memory_privately_and_logs_one_line(
    world: World, caplog
) -> None:
    if not world.database_url.startswith("sqlite"):
        pytest.skip("a write lock held by another program is SQLite's case")
    await world.start(database_timeout_seconds=0.3)
    await answer_to(world, await mention(world, "something to forget"))
    holder = sqlite3.connect(world.database_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a backup, or the sqlite3 shell
    try:
        interaction = await world.fake.slash_command("reset")
        assert await interaction_text(world, interaction) == NO_MEMORY
        assert interaction.ephemeral
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [line] = [record for record in caplog.records if "/reset failed" in record.getMessage()]
    assert "database is locked" in line.getMessage() and line.exc_info is None


async def test_a_mention_that_looks_like_a_command_is_a_question_not_a_prefix_command(world: World, caplog) -> None:
    await world.start()
    message = await world.fake.user_message(world.fake.channel, f"<@{world.fake.bot_id}> help")
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert user_contents(world.brain.requests[-1]) == ["help"]
    assert not any("CommandNotFound" in r.getMessage() or "is not found" in r.getMessage() for r in caplog.records)
    assert world.bot.help_command is None and world.bot.commands == set()
