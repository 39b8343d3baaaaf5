"""Turns on Discord under pressure: order fixed at arrival, typing that never delays an answer, a bounded
queue per user, and notices that cannot flood a channel."""

from __future__ import annotations

import asyncio

from app.bot.sentences import RESTARTING, STILL_ANSWERING
from app.bot.turns import TurnLine
from app.storage import ConversationKey
from tests.fakes.openai_server import Reply
from tests.helpers import World, answer_to, mention, user_contents

TYPING = r"/channels/\d+/typing"


def answer_naming_the_question(body: dict) -> Reply:
    return Reply(f"answer to {body['messages'][-1]['content']}", chunks=2)


async def settled(world: World, bot_messages: int, timeout: float = 30) -> list[str]:
    """The bot's final texts in the channel once it has posted `bot_messages` and no turn is left."""
    fake = world.fake
    await fake.wait_for(
        lambda: len(fake.bot_messages(fake.channel)) >= bot_messages and world.bot.active_turns == 0,
        timeout=timeout,
        what=f"{bot_messages} bot messages and no turn left",
    )
    await asyncio.sleep(0.3)  # nothing more arrives
    return fake.texts(fake.channel)


async def test_a_slow_typing_call_never_lets_a_later_message_overtake_an_earlier_one(world: World) -> None:
    world.brain.script = answer_naming_the_question
    fake = world.fake
    other_channel = fake.add_channel(fake.guild.id, "random")  # same server: the same conversation
    await world.start()
    fake.delay("POST", rf"/channels/{fake.channel}/typing", 1.0)
    first = await mention(world, "first")
    second = await fake.user_message(other_channel, f"<@{fake.bot_id}> second")
    assert await answer_to(world, first) == ["answer to first"]
    assert await answer_to(world, second) == ["answer to second"]
    assert [user_contents(request)[-1] for request in world.brain.requests] == ["first", "second"]
    history = await world.service.export(world.bot.key_for(int(fake.alice["id"]), world.bot.guilds[0], 0))
    assert [m.content for m in history] == ["first", "answer to first", "second", "answer to second"]


async def test_a_rate_limited_typing_call_does_not_hold_the_answer(world: World) -> None:
    await world.start()
    world.fake.rate_limit("POST", TYPING, retry_after=60.0)  # far longer than any answer takes
    message = await mention(world, "hello")
    assert await answer_to(world, message) == ["Hello from the brain!"]
    assert not [call for call in world.fake.calls_matching("POST", TYPING) if call.status == 204], (
        "the answer was shown before typing got through"
    )


async def test_one_user_has_at_most_one_turn_running_and_one_waiting(world: World) -> None:
    # Slow enough that every message arrives while the first turns still run, even on a loaded machine.
    world.brain.script = lambda body: Reply(
        f"slow answer to {body['messages'][-1]['content']}", chunks=2, chunk_delay_s=2.0
    )
    await world.start(brain_timeout_seconds=30)
    for index in range(5):
        await mention(world, f"message {index}")
    await world.fake.user_message(world.fake.channel, f"<@{world.fake.bot_id}> bob here", author=world.fake.bob)
    texts = await settled(world, bot_messages=4)
    asked = sorted(user_contents(request)[-1] for request in world.brain.requests)
    assert asked == ["bob here", "message 0", "message 1"]
    answers = [text for text in texts if text.startswith("slow answer")]
    notices = [text for text in texts if not text.startswith("slow answer")]
    assert sorted(answers) == ["slow answer to bob here", "slow answer to message 0", "slow answer to message 1"]
    assert len(notices) == 1 and "still answering" in notices[0], "three refused messages, one notice"


async def test_a_slash_question_beyond_the_users_queue_is_refused_privately(world: World) -> None:
    world.brain.default = Reply("slowly", chunks=2, chunk_delay_s=2.0)
    await world.start(brain_timeout_seconds=30)
    await mention(world, "one")
    await mention(world, "two")
    interaction = await world.fake.slash_command("ask", {"question": "three?"})
    await world.fake.wait_for(lambda: interaction.callbacks, what="the refusal")
    assert interaction.callbacks[0]["data"]["content"] == STILL_ANSWERING and interaction.ephemeral
    texts = await settled(world, bot_messages=2)
    assert texts == ["slowly", "slowly"] and len(world.brain.requests) == 2


async def test_a_burst_of_too_fast_messages_gets_one_notice(world: World) -> None:
    await world.start(user_cooldown_seconds=30)
    for index in range(8):
        await mention(world, f"burst {index}")
    texts = await settled(world, bot_messages=2)
    assert len(world.brain.requests) == 1
    assert texts[0] == "Hello from the brain!" or texts[1] == "Hello from the brain!"
    assert len(texts) == 2 and any("Easy there" in text for text in texts)


async def test_bare_mentions_share_the_notice_limit(world: World) -> None:
    await world.start()
    for _ in range(5):
        await mention(world, "")
    texts = await settled(world, bot_messages=1)
    assert len(texts) == 1 and "Mention me with a message" in texts[0]
    assert world.brain.requests == []


async def test_shutdown_ends_running_and_waiting_turns_visibly(world: World) -> None:
    world.brain.default = Reply("a very slow answer " * 10, chunks=10, chunk_delay_s=1.0)
    await world.start(shutdown_grace_seconds=0.5)
    first = await mention(world, "one")
    await mention(world, "two")
    await world.fake.wait_for(lambda: world.fake.bot_messages(world.fake.channel), what="the first chunk")
    await world.bot.shutdown()
    assert world.fake.texts(world.fake.channel) == [RESTARTING, RESTARTING]
    assert world.bot.active_turns == 0 and len(world.brain.requests) == 1
    history = await world.service.export(world.bot.key_for(int(first["author"]["id"]), world.bot.guilds[0], 0))
    assert [m.content for m in history] == ["one"], "no partial answer stored, the waiting turn never started"


async def test_a_turn_that_gives_up_its_place_keeps_the_order_behind_it() -> None:
    line = TurnLine(turns_per_user=3)
    key = ConversationKey(1, "dm")
    order: list[str] = []

    async def turn(name: str, place, hold: asyncio.Event | None = None) -> None:
        async with place:
            order.append(name)
            if hold is not None:
                await hold.wait()

    hold = asyncio.Event()
    first = asyncio.create_task(turn("first", line.join(key), hold))
    second = asyncio.create_task(turn("second", line.join(key)))
    third = asyncio.create_task(turn("third", line.join(key)))
    await asyncio.sleep(0.01)
    assert not line.has_room(1)
    second.cancel()  # gives up while waiting
    await asyncio.sleep(0.01)
    assert order == ["first"], "the third still waits for the first"
    hold.set()
    await asyncio.gather(first, third)
    assert order == ["first", "third"] and second.cancelled()
    assert len(line) == 0 and line.has_room(1), "an idle line keeps nothing"


async def test_a_message_during_the_shutdown_grace_is_told_to_come_back(world: World) -> None:
    world.brain.default = Reply("a slow but complete answer", chunks=2, chunk_delay_s=1.0)
    await world.start(shutdown_grace_seconds=30)
    await mention(world, "one")
    [answer] = await world.fake.wait_for(lambda: world.fake.bot_messages(world.fake.channel), what="a first chunk")
    shutdown = asyncio.create_task(world.bot.shutdown())
    late = await world.fake.user_message(world.fake.channel, f"<@{world.fake.bot_id}> two", author=world.fake.bob)
    assert await answer_to(world, late) == [RESTARTING], "not silence: it is told why"
    await shutdown
    assert world.fake.message(answer.id).content == "a slow but complete answer", "the running turn finished"
    assert len(world.brain.requests) == 1
