"""What the conversation cog waits for before a turn's place is taken is bounded: /ask answers within Discord's
3 s even when its checks wait, and a slow thread start does not hold the user's later messages for long;
neither lets a later message of the user overtake an earlier one."""

from __future__ import annotations

import asyncio

import pytest

from app.bot.cogs import conversation
from app.bot.sentences import SLOW_RIGHT_NOW
from tests.bot.settings_kit import command
from tests.helpers import World, answer_to, interaction_text

HELLO = ["Hello from the brain!"]
THREAD_STARTS = r"/channels/\d+/messages/\d+/threads"


async def test_ask_answers_in_time_while_its_checks_wait_and_the_users_later_messages_keep_their_order(
    world: World,
) -> None:
    fake = world.fake
    await world.start()
    await command(world, "settings channel open", {"threads": True})
    fake.delay("POST", THREAD_STARTS, 4.0)  # the first message's checks hold the user's next ones that long
    first = await fake.user_message(fake.channel, "a first question")
    await fake.wait_for(lambda: fake.calls_matching("POST", THREAD_STARTS), what="the first thread's start")

    asked = await fake.slash_command("ask", {"question": "and this one?"})
    assert await interaction_text(world, asked) == SLOW_RIGHT_NOW and asked.ephemeral
    assert asked.ack_latency is not None and asked.ack_latency < 3.0, "acknowledged within Discord's 3 s"

    third = await fake.user_message(fake.channel, "a third question")
    await asyncio.sleep(0.3)
    assert len(fake.calls_matching("POST", THREAD_STARTS)) == 1, "the third still waits for the first"
    await fake.wait_for(
        lambda: fake.texts(int(first["id"])) == HELLO and fake.texts(int(third["id"])) == HELLO,
        timeout=8,
        what="both answers, each in its thread",
    )
    started = [call.path for call in fake.calls_matching("POST", THREAD_STARTS)]
    assert started == [f"/channels/{fake.channel}/messages/{m['id']}/threads" for m in (first, third)]
    assert len(world.brain.requests) == 2, "the refused question reached no model"


async def test_a_thread_slow_to_start_gives_way_to_an_answer_in_the_channel(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = world.fake
    monkeypatch.setattr(conversation, "THREAD_START_BOUND_S", 0.3)  # the same bound, shorter for the test
    await world.start()
    await command(world, "settings channel open", {"threads": True})
    fake.delay("POST", THREAD_STARTS, 2.0)
    message = await fake.user_message(fake.channel, "is anyone there?")
    assert await answer_to(world, message, timeout=1.5) == HELLO, "answered in the channel, within the bound"
    assert fake.bot_messages(fake.channel)[-1].data["message_reference"]["message_id"] == message["id"]

    second = await fake.user_message(fake.channel, "a new conversation")
    second_thread = int(second["id"])
    await fake.wait_for(lambda: fake.texts(second_thread) == HELLO, what="the next one, in its thread")
