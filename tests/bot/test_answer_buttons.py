"""The buttons under an answer, end to end through the fake Discord and the real discord.py, with the fake chat
servers as the engines and the bot's real database: Stop while it streams, Regenerate and Another engine once it
is complete; only the asker may press them, they work after a restart, and only the newest answer has them."""

from __future__ import annotations

import copy

from app.bot.sentences import ONLY_THE_ASKER, files_unreadable
from app.conversation.events import NOT_NEWEST, STOPPED_BEFORE_ANSWER, TURN_GONE
from app.conversation.turn_display import STOPPED_NOTE, show_turn
from app.storage import ConversationKey
from tests.fakes.openai_server import Reply
from tests.helpers import World, answer_to, mention, user_contents

LONG_STORY = "once upon a time there was a bot that talked far too much and never stopped " * 3
SLOW = Reply(LONG_STORY, chunks=40, chunk_delay_s=0.1)  # four seconds of streaming
BUTTONS_AFTER = ["Regenerate", "Another engine"]


def labels(message) -> list[str]:
    return [c["label"] for row in message.data.get("components") or [] for c in row.get("components", [])]


def key_of_alice(world: World) -> ConversationKey:
    return world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)


async def reply_to(world: World, asked: dict, **wait):
    fake = world.fake
    return await fake.wait_for(
        lambda: next((m for m in fake.bot_messages(fake.channel) if int(m.id) > int(asked["id"])), None),
        what="the reply",
        **wait,
    )


async def answered(world: World, text: str):
    """Ask `text`, wait for the whole answer, and return its (only) message."""
    asked = await mention(world, text)
    await answer_to(world, asked)
    return await reply_to(world, asked)


async def ephemeral_text(world: World, press) -> str:
    """What the presser alone was told: the press's own response, or its first followup."""

    def told() -> str | None:
        shown = [m for m in press.followups if m.ephemeral]
        if press.original is not None and press.original.ephemeral:
            shown.insert(0, press.original)
        return shown[0].content if shown else None

    return await world.fake.wait_for(told, what="an ephemeral answer")


async def test_stop_mid_stream_keeps_the_text_shown_stores_it_as_stopped_and_cuts_the_engine_off(
    world: World,
) -> None:
    world.brain.script = [SLOW]
    await world.start()
    fake = world.fake
    asked = await mention(world, "tell me a long story")
    reply = await reply_to(world, asked)
    await fake.wait_for(lambda: labels(reply) == ["Stop"], what="the Stop button")
    await fake.wait_for(lambda: world.brain.in_flight == 1, what="the engine answering")

    await fake.click(reply, "Stop")

    # The server sees its client go away long before its four seconds of answer would end.
    await fake.wait_for(lambda: world.brain.in_flight == 0, timeout=2, what="the engine call closed")
    await fake.wait_for(lambda: world.bot.active_turns == 0, timeout=2, what="the turn ended")
    [question, answer] = await world.service.export(key_of_alice(world))
    assert question.content == "tell me a long story"
    assert answer.stopped
    assert answer.content and LONG_STORY.startswith(answer.content) and len(answer.content) < len(LONG_STORY)
    assert reply.content == f"{answer.content}\n-# {STOPPED_NOTE}"
    assert labels(reply) == BUTTONS_AFTER
    [brain] = [engine for engine in (await world.service.status()).engines if engine.name == "brain"]
    assert (brain.breaker, brain.failures) == ("closed", 0), "a stop is not the engine's fault"


async def test_stop_before_any_text_stores_no_answer_and_says_so(world: World) -> None:
    world.brain.script = [Reply("late", chunks=1, chunk_delay_s=3)]
    await world.start()
    fake = world.fake
    archive = {"filename": "photos.zip", "content": b"PK\x03\x04\x00\x00", "content_type": "application/zip"}
    asked = await mention(world, "are you there?", attachments=[archive])
    await fake.wait_for(lambda: world.brain.in_flight == 1, what="the engine answering")
    [question] = await world.service.export(key_of_alice(world))

    # What Stop does (it is shown with the first text); nobody but the asker can.
    assert not world.bot.stop_turn(question.id, int(world.fake.bob["id"]))
    assert world.bot.stop_turn(question.id, int(world.fake.alice["id"]))

    await fake.wait_for(lambda: world.bot.active_turns == 0, timeout=2, what="the turn ended")
    # What was said of the message's files still holds when no answer comes.
    assert await answer_to(world, asked) == [f"{STOPPED_BEFORE_ANSWER}\n-# {files_unreadable(['photos.zip'])}"]
    assert [m.role for m in await world.service.export(key_of_alice(world))] == ["user"]


async def test_regenerate_replaces_the_answer_in_the_same_message_and_in_the_database(world: World) -> None:
    world.brain.script = [Reply("First answer.", chunks=2), Reply("Second answer.", chunks=2)]
    await world.start()
    fake = world.fake
    reply = await answered(world, "say something")
    assert reply.content == "First answer." and labels(reply) == BUTTONS_AFTER

    await fake.click(reply, "Regenerate")

    await fake.wait_for(lambda: reply.content == "Second answer." and labels(reply) == BUTTONS_AFTER)
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    assert len(fake.bot_messages(fake.channel)) == 1, "the same message, edited"
    assert user_contents(world.brain.requests[1]) == ["say something"], "the same context, without the old answer"
    stored = await world.service.export(key_of_alice(world))
    assert [(m.role, m.content) for m in stored] == [("user", "say something"), ("assistant", "Second answer.")]

    following = await mention(world, "and then?")
    await answer_to(world, following)
    assert user_contents(world.brain.requests[-1]) == ["say something", "Second answer.", "and then?"]


async def test_a_shorter_regenerated_answer_deletes_the_pages_it_no_longer_needs(world: World) -> None:
    long_answer = "word " * 700  # 3,500 characters: two pages
    world.brain.script = [Reply(long_answer, chunks=4), Reply("Short now.", chunks=1)]
    await world.start()
    fake = world.fake
    asked = await mention(world, "tell me everything")
    await answer_to(world, asked)
    first, last = [m for m in fake.bot_messages(fake.channel) if int(m.id) > int(asked["id"])]
    assert labels(last) == BUTTONS_AFTER and labels(first) == []

    await fake.click(last, "Regenerate")

    # The answer starts where it started; the page after it goes.
    await fake.wait_for(lambda: world.bot.active_turns == 0 and last.deleted, what="the spare page deleted")
    [shown] = [m for m in fake.bot_messages(fake.channel) if int(m.id) > int(asked["id"]) and not m.deleted]
    assert (shown.id, shown.content, labels(shown)) == (first.id, "Short now.", BUTTONS_AFTER)


async def test_another_engine_skips_the_engine_that_answered(world: World) -> None:
    world.brain.script = [Reply("From the brain.", chunks=2)]
    await world.start()
    fake = world.fake
    reply = await answered(world, "who are you?")

    await fake.click(reply, "Another engine")

    await fake.wait_for(lambda: "Hello from Hugging Face!" in reply.content, what="Hugging Face's answer")
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    assert len(world.brain.requests) == 1 and len(world.hf.requests) == 1
    assert user_contents(world.hf.requests[0]) == ["who are you?"]
    [_, answer] = await world.service.export(key_of_alice(world))
    assert answer.content == "Hello from Hugging Face!" and answer.engine == "huggingface"


async def test_a_strangers_press_is_refused_privately_and_changes_nothing(world: World) -> None:
    await world.start()
    fake = world.fake
    reply = await answered(world, "my question")

    press = await fake.click(reply, "Regenerate", user=fake.bob)

    assert await ephemeral_text(world, press) == ONLY_THE_ASKER
    assert len(world.brain.requests) == 1
    assert reply.content == "Hello from the brain!" and labels(reply) == BUTTONS_AFTER
    assert len(await world.service.export(key_of_alice(world))) == 2


async def test_regenerate_works_after_a_restart(world: World) -> None:
    world.brain.script = [Reply("Before the restart.", chunks=2), Reply("After the restart.", chunks=2)]
    await world.start()
    fake = world.fake
    reply = await answered(world, "remember me?")

    await world.restart()
    await fake.click(reply, "Regenerate")

    await fake.wait_for(lambda: reply.content == "After the restart.", what="the regenerated answer")
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    stored = await world.service.export(key_of_alice(world))
    assert [m.content for m in stored] == ["remember me?", "After the restart."]
    assert labels(reply) == BUTTONS_AFTER


async def test_an_ask_answer_carries_the_buttons_and_is_regenerated_in_place(world: World) -> None:
    world.hf.script = [Reply("An answer to /ask.", chunks=2)]
    world.brain.script = [Reply("Another answer to /ask.", chunks=2)]  # asked again, in the chain's own order
    await world.start()
    fake = world.fake
    ask = await fake.slash_command("ask", {"question": "what is up?"})
    await fake.wait_for(lambda: ask.original is not None and ask.original.content.startswith("An answer to /ask."))
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    assert labels(ask.original) == BUTTONS_AFTER

    await fake.click(ask.original, "Regenerate")

    await fake.wait_for(lambda: ask.original.content.startswith("Another answer to /ask."), what="the new answer")
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    assert labels(ask.original) == BUTTONS_AFTER
    stored = await world.service.export(key_of_alice(world))
    assert [m.content for m in stored] == ["what is up?", "Another answer to /ask."]

    # Its buttons go with the bot's own token (the command's expires after 15 minutes) when a newer one comes.
    await answered(world, "and now?")
    await fake.wait_for(lambda: labels(ask.original) == [], what="the /ask answer's buttons gone")
    by_bot_token = f"/channels/{ask.original.channel_id}/messages/{ask.original.id}"
    assert any(call.method == "PATCH" and call.path.endswith(by_bot_token) for call in fake.calls)


async def test_the_older_answer_loses_its_buttons_when_a_newer_one_comes(world: World) -> None:
    await world.start()
    first = await answered(world, "first")
    assert labels(first) == BUTTONS_AFTER

    second = await answered(world, "second")

    assert labels(first) == []
    assert labels(second) == BUTTONS_AFTER


async def test_a_press_on_the_older_answer_while_a_newer_one_streams_leaves_the_newer_ones_buttons(
    world: World,
) -> None:
    slowly = Reply("Second answer, slowly.", chunks=10, chunk_delay_s=0.1)
    world.brain.script = [Reply("First answer.", chunks=2), slowly]
    await world.start()
    fake = world.fake
    first = await answered(world, "first")
    stale = copy.deepcopy(first)  # as the user's client still shows it
    asked = await mention(world, "second")
    second = await reply_to(world, asked)
    await fake.wait_for(lambda: labels(first) == [], what="the older answer's buttons gone once the newer is asked")

    press = await fake.click(stale, "Regenerate")  # it waits behind the second turn, then finds it newer

    assert await ephemeral_text(world, press) == NOT_NEWEST
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turns ended")
    assert second.content == "Second answer, slowly." and labels(second) == BUTTONS_AFTER
    assert len(world.brain.requests) == 2


async def test_regenerate_on_an_answer_that_is_no_longer_the_newest_is_refused(world: World) -> None:
    await world.start()
    fake = world.fake
    reply = await answered(world, "first")
    # Another front end (or process) answers in the same conversation: this bot does not know of it.
    elsewhere = world.service.respond(key_of_alice(world), "alice", "second")
    await show_turn(elsewhere, _Quiet(), log_id="elsewhere", brain_name=None)
    asked_before = len(world.brain.requests)

    press = await fake.click(reply, "Regenerate")

    assert await ephemeral_text(world, press) == NOT_NEWEST
    await fake.wait_for(lambda: labels(reply) == [], what="its buttons gone")
    assert len(world.brain.requests) == asked_before
    assert reply.content == "Hello from the brain!"
    assert [m.content for m in await world.service.export(key_of_alice(world))][-1] == "Hello from the brain!"


async def test_regenerate_after_a_reset_sends_nothing_erased(world: World) -> None:
    await world.start()
    fake = world.fake
    reply = await answered(world, "my secret is 1234")
    stale = copy.deepcopy(reply)  # as the user's client still shows it
    reset = await fake.slash_command("reset")
    await fake.wait_for(lambda: reset.original is not None and reset.original.content, what="the reset")
    await fake.wait_for(lambda: labels(reply) == [], what="the erased answer's buttons gone")

    press = await fake.click(stale, "Regenerate")

    assert await ephemeral_text(world, press) == TURN_GONE
    await fake.wait_for(lambda: world.bot.active_turns == 0, what="the turn ended")
    for request in [*world.brain.requests[1:], *world.hf.requests]:
        assert "1234" not in str(request.body)
    assert await world.service.export(key_of_alice(world)) == []


class _Quiet:
    """A display that shows nothing: the turn is another front end's."""

    def add(self, chunk: str) -> None: ...

    def restart(self, engine: str) -> None: ...

    def notice(self, text: str) -> None: ...

    async def show(self, text: str, answered_by: str | None) -> None: ...

    async def fail(self, sentence: str) -> None:
        raise AssertionError(sentence)

    async def nothing_to_answer(self) -> None:
        raise AssertionError("empty")

