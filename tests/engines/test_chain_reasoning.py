"""Reasoning models: their thoughts (`<think>` blocks in the text, `reasoning_content` deltas) never reach the
answer, an answer that is only thoughts is empty and the next engine answers, and how long the answering engine
thought closes the stream. The real huggingface_hub client against the fake OpenAI-compatible servers."""

from __future__ import annotations

import time

import pytest

from app.engines import ChatMessage, EngineStarted, Reasoned, TokenUsage
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import MakeApiEngine, shown_text, status_of

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are Kor'tana."},
    {"role": "user", "content": "Hello there!"},
]
DEADLINE_S = 3.0
THINKING = "<think>\nThe user says hello. I will greet them back, warmly.\n</think>\n\n"


def window(budget: int) -> list[ChatMessage]:
    return MESSAGES


def chain_of(*engines: object) -> EngineChain:
    return EngineChain([Tier(engine, DEADLINE_S) for engine in engines], EchoEngine(), max_tokens=100)  # type: ignore[arg-type]


async def turn_of(chain: EngineChain) -> list[object]:
    return [item async for item in chain.stream(window, 3000)]


@pytest.mark.parametrize("chunks", [1, 3, 7, 40, 200])
async def test_think_blocks_split_across_chunks_are_never_shown(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine, chunks: int
) -> None:
    brain_server.script = [Reply(THINKING + "Hello! <think>short</think> How are you?", chunks=chunks)]

    items = await turn_of(chain_of(make_api_engine(brain_server.base_url)))

    assert shown_text(items) == "Hello! How are you?"
    assert [item for item in items if isinstance(item, EngineStarted)] == [EngineStarted("brain", False)]
    reasoned, usage = items[-2:]
    assert isinstance(reasoned, Reasoned) and 0 <= reasoned.seconds < DEADLINE_S
    assert isinstance(usage, TokenUsage) and usage.completion_tokens > 3  # the thoughts cost tokens too


async def test_an_answer_that_is_only_thinking_is_empty_and_the_next_engine_answers(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply(THINKING + " \n", chunks=5)]
    hf_server.script = [Reply("Hi from the second tier!", chunks=2)]
    chain = chain_of(make_api_engine(brain_server.base_url), make_api_engine(hf_server.base_url, "huggingface"))

    items = await turn_of(chain)

    assert items[0] == EngineStarted("huggingface", replaces_partial=False)
    assert shown_text(items) == "Hi from the second tier!"
    assert not [item for item in items if isinstance(item, Reasoned)]  # the answer shown did not think
    brain = status_of(chain, "brain")
    # Out of tokens while thinking is this request's, not a sick engine: the breaker does not count it.
    assert (brain.failures, brain.last_error_kind, brain.breaker) == (1, "bad_request", "closed")
    for _ in range(5):
        brain_server.script = [Reply(THINKING, chunks=2)]
        await turn_of(chain)
    assert status_of(chain, "brain").breaker == "closed"


async def test_an_unclosed_think_block_hides_the_rest_of_the_answer(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("Let me see. <think>Hmm, the user might mean", chunks=4)]

    assert shown_text(await turn_of(chain_of(make_api_engine(brain_server.base_url)))) == "Let me see. "


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_deltas_are_never_text_and_say_how_long_the_model_thought(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine, field: str
) -> None:
    brain_server.script = [
        Reply("Hello!", chunks=2, reasoning="The user greets me; greet back.", reasoning_chunks=4,
              reasoning_field=field, chunk_delay_s=0.05)
    ]
    engine = make_api_engine(brain_server.base_url)

    began = time.monotonic()
    items = [item async for item in engine.stream(MESSAGES, 50)]
    took = time.monotonic() - began

    assert items[:2] == ["Hel", "lo!"]
    reasoned, usage = items[2:]
    assert isinstance(reasoned, Reasoned)
    assert 0.2 <= reasoned.seconds <= took - 0.09  # four thoughts 50 ms apart, then two chunks of text as slow
    assert isinstance(usage, TokenUsage)


async def test_an_answer_of_reasoning_deltas_alone_is_empty_and_the_next_engine_answers(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("", reasoning="I think, therefore I do not answer.", reasoning_chunks=3)]
    hf_server.script = [Reply("An answer.")]
    chain = chain_of(make_api_engine(brain_server.base_url), make_api_engine(hf_server.base_url, "huggingface"))

    items = await turn_of(chain)

    assert shown_text(items) == "An answer." and items[0] == EngineStarted("huggingface", False)
    assert "think" not in "".join(item for item in items if isinstance(item, str))
    assert status_of(chain, "brain").failures == 1


async def test_how_long_the_model_thought_in_its_text_is_measured_to_its_last_thought(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    # Ten chunks of 7 characters, 50 ms apart: the think block ends in the third, the answer takes seven more.
    answer = "Hello, friend. The thinking is over and this is the answer."
    brain_server.script = [Reply("<think>ab</think>" + answer, chunks=10, chunk_delay_s=0.05)]

    began = time.monotonic()
    items = await turn_of(chain_of(make_api_engine(brain_server.base_url)))
    took = time.monotonic() - began

    [reasoned] = [item for item in items if isinstance(item, Reasoned)]
    assert 0.15 <= reasoned.seconds <= took - 0.3
    assert shown_text(items) == answer


async def test_when_every_engine_only_thought_echo_answers_as_when_they_failed(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("<think>Nothing to say.</think>")]

    items = await turn_of(chain_of(make_api_engine(brain_server.base_url)))

    assert items[0] == EngineStarted("echo", replaces_partial=False)
    assert "Hello there!" in shown_text(items) and "think" not in shown_text(items)
    assert not [item for item in items if isinstance(item, Reasoned | TokenUsage)]


async def test_echo_quotes_what_the_user_wrote_tags_and_all() -> None:
    chain = chain_of()
    said: list[ChatMessage] = [{"role": "user", "content": "What does <think> mean?"}]

    items = [item async for item in chain.stream(lambda budget: said, 3000)]

    assert "What does <think> mean?" in shown_text(items)


async def test_a_background_answer_never_holds_the_thoughts(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply(THINKING + "The summary.", chunks=6, reasoning="More thoughts.")]
    chain = chain_of(make_api_engine(brain_server.base_url))

    completion = await chain.complete(window, engines=["brain"], max_tokens=50)

    assert completion.text == "The summary."
