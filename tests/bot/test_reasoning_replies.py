"""A reasoning model on Discord, end to end: its thoughts are never shown (in no version of the streamed reply)
and never stored, an answer that is only thoughts goes to the next engine, and with SHOW_THINKING_TIME a line
says how long the model thought, shown under the answer and never stored or sent back to a model."""

from __future__ import annotations

from tests.fakes.openai_server import Reply
from tests.helpers import World, answer_to, mention

THOUGHTS = "The user asks about the weather. I cannot see outside, so I should say so kindly."
ANSWER = "I can't look outside, but I hope it's sunny where you are!"


def key_of_alice(world: World):
    return world.bot.key_for(int(world.fake.alice["id"]), world.bot.guilds[0], 0)


async def test_think_blocks_are_never_shown_while_streaming_nor_stored_nor_sent_back(world: World) -> None:
    world.brain.script = [
        Reply(f"<think>\n{THOUGHTS}\n</think>\n\n{ANSWER}", chunks=30, chunk_delay_s=0.03),
        Reply("Noted."),
    ]
    await world.start()

    asked = await mention(world, "how is the weather?")
    assert await answer_to(world, asked) == [ANSWER]

    [reply] = world.fake.bot_messages(world.fake.channel)
    assert reply.edits >= 1  # it streamed, and no version of it ever showed a thought
    assert not [version for version in reply.versions if "think" in version or "weather." in version]
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history] == ["how is the weather?", ANSWER]

    again = await mention(world, "thanks")
    await answer_to(world, again)
    assert world.brain.requests[-1].messages[2] == {"role": "assistant", "content": ANSWER}


async def test_thoughts_whose_opening_tag_was_in_the_prompt_are_taken_back_and_never_stored(world: World) -> None:
    # DeepSeek-R1's and Qwen3's thinking templates open the block in the prompt: the model streams its thoughts,
    # then `</think>`, then the answer.
    world.brain.script = [Reply(f"{THOUGHTS}\n</think>\n\n{ANSWER}", chunks=30, chunk_delay_s=0.03)]
    await world.start()

    asked = await mention(world, "how is the weather?")
    assert await answer_to(world, asked) == [ANSWER]
    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history] == ["how is the weather?", ANSWER]


async def test_an_answer_of_thoughts_alone_goes_to_the_next_engine(world: World) -> None:
    world.brain.script = [Reply("", reasoning=THOUGHTS, reasoning_chunks=4)]
    await world.start()

    asked = await mention(world, "how is the weather?")

    assert await answer_to(world, asked) == ["Hello from Hugging Face!\n-# answered by huggingface"]
    history = await world.service.export(key_of_alice(world))
    assert [(m.content, m.engine) for m in history][-1] == ("Hello from Hugging Face!", "huggingface")


async def test_with_show_thinking_time_a_line_says_how_long_and_it_is_never_stored(world: World) -> None:
    world.brain.script = [
        Reply(ANSWER, chunks=2, reasoning=THOUGHTS, reasoning_chunks=3, chunk_delay_s=0.05),
        Reply(f"<think>{THOUGHTS}</think>Noted.", chunks=5),
        Reply("Plain answer."),
    ]
    await world.start(show_thinking_time=True)

    asked = await mention(world, "how is the weather?")
    assert await answer_to(world, asked) == [f"{ANSWER}\n-# 💭 thought for under 1 s"]
    again = await mention(world, "thanks")
    assert (await answer_to(world, again))[-1] == "Noted.\n-# 💭 thought for under 1 s"
    plain = await mention(world, "and now?")
    assert (await answer_to(world, plain))[-1] == "Plain answer."  # a model that did not think: no line

    history = await world.service.export(key_of_alice(world))
    assert [m.content for m in history if m.role == "assistant"] == [ANSWER, "Noted.", "Plain answer."]
    sent = [m["content"] for m in world.brain.requests[-1].messages if m["role"] == "assistant"]
    assert sent == [ANSWER, "Noted."]


async def test_without_the_setting_a_model_that_thought_shows_no_line(world: World) -> None:
    world.brain.script = [Reply(ANSWER, reasoning=THOUGHTS)]
    await world.start()

    asked = await mention(world, "how is the weather?")

    assert await answer_to(world, asked) == [ANSWER]
