"""A message edited or deleted while Kor'tana answers it, end to end through the fake Discord and the real
discord.py: an edit before the turn started is what the engine is asked, an edit mid-answer is what is stored
(and sent with the next turn), and a deletion mid-answer stops the answer, deletes the reply and stores nothing
of the turn."""

from __future__ import annotations

import asyncio

from tests.fakes.openai_server import Reply
from tests.helpers import World, answer_to, mention, user_contents

SLOW = Reply("one two three four five six seven eight nine ten " * 4, chunks=40, chunk_delay_s=0.1)


def key_of_alice(world: World):
    return world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)


async def streaming_reply(world: World, asked: dict):
    """The bot's reply to `asked`, once its first text is shown (the engine started answering)."""
    fake = world.fake
    return await fake.wait_for(
        lambda: next((m for m in fake.bot_messages(fake.channel) if int(m.id) > int(asked["id"])), None),
        what="the streaming reply",
    )


async def test_an_edit_while_the_turn_waits_behind_an_earlier_one_is_what_the_engine_is_asked(world: World) -> None:
    world.brain.script = [Reply("First answer.", chunks=10, chunk_delay_s=0.1), Reply("Second answer.")]
    await world.start()

    first = await mention(world, "first question")
    await streaming_reply(world, first)
    second = await mention(world, "second question")  # waits for the first turn
    await world.fake.edit_user_message(second["id"], f"<@{world.fake.bot_id}> second question, edited")

    assert await answer_to(world, second) == ["Second answer."]
    assert user_contents(world.brain.requests[1])[-1] == "second question, edited"
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history if m.role == "user"] == ["first question", "second question, edited"]


async def test_an_edit_mid_answer_is_stored_and_sent_with_the_next_turn(world: World) -> None:
    world.brain.script = [Reply("An answer to the old text.", chunks=10, chunk_delay_s=0.1), Reply("Next answer.")]
    await world.start()

    asked = await mention(world, "the old text")
    await streaming_reply(world, asked)
    await world.fake.edit_user_message(asked["id"], f"<@{world.fake.bot_id}> the edited text")

    assert await answer_to(world, asked) == ["An answer to the old text."]  # the answer started: it stands
    assert user_contents(world.brain.requests[0])[-1] == "the old text"
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history] == ["the edited text", "An answer to the old text."]

    following = await mention(world, "and then?")
    await answer_to(world, following)
    assert user_contents(world.brain.requests[1]) == ["the edited text", "An answer to the old text.", "and then?"]


async def test_a_delete_mid_answer_stops_it_deletes_the_reply_and_stores_nothing_of_the_turn(world: World) -> None:
    world.brain.script = [Reply("Before.", chunks=2), SLOW, Reply("After.")]
    await world.start()
    fake = world.fake
    earlier = await mention(world, "an earlier question")
    await answer_to(world, earlier)

    asked = await mention(world, "a question I regret")
    reply = await streaming_reply(world, asked)
    await fake.wait_for(lambda: world.brain.in_flight == 1, what="the engine answering")
    await fake.delete_message(asked["id"])

    # The engine call is cancelled: the server sees its connection close long before its 4 s answer would end.
    await fake.wait_for(lambda: world.brain.in_flight == 0, timeout=2, what="the engine call closed")
    await fake.wait_for(lambda: world.bot.active_turns == 0, timeout=2, what="the turn ended")
    assert reply.deleted
    assert [m.content for m in fake.bot_messages(fake.channel)] == ["Before."]  # no apology, no notice
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history] == ["an earlier question", "Before."]

    following = await mention(world, "a new question")
    assert await answer_to(world, following) == ["After."]
    assert user_contents(world.brain.requests[-1]) == ["an earlier question", "Before.", "a new question"]
    await asyncio.sleep(0.3)  # nothing of the cut turn arrives late
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history] == ["an earlier question", "Before.", "a new question", "After."]


async def test_a_delete_while_the_turn_waits_means_it_never_runs(world: World) -> None:
    world.brain.script = [Reply("First answer.", chunks=10, chunk_delay_s=0.1), Reply("Never asked.")]
    await world.start()
    fake = world.fake

    first = await mention(world, "first question")
    await streaming_reply(world, first)
    second = await mention(world, "second question")
    await fake.delete_message(second["id"])

    assert await answer_to(world, first) == ["First answer."]
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="every turn ended")
    assert len(world.brain.requests) == 1
    assert [m.content for m in fake.bot_messages(fake.channel)] == ["First answer."]
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history] == ["first question", "First answer."]
