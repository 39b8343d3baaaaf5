"""EngineChain.complete: one whole answer for background work (the rolling summary), through the same breakers and
call slots as turns, and never at a turn's expense. The real huggingface_hub client against fake servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from app.engines import ChatMessage, EngineError, EngineStarted, ErrorKind
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from tests.fakes.openai_server import FakeChatServer, Hang, HttpError, Reply
from tests.helpers import MakeApiEngine, status_of

PROMPT: list[ChatMessage] = [
    {"role": "system", "content": "You summarise."},
    {"role": "user", "content": "Summarise: I live in Lyon."},
]
TURN: list[ChatMessage] = [{"role": "system", "content": "You are Kor'tana."}, {"role": "user", "content": "Hi!"}]
SUMMARY_TOKENS = 77
DEADLINE_S = 2.0


def prompt(budget: int) -> list[ChatMessage]:
    return PROMPT


def turn_window(budget: int) -> list[ChatMessage]:
    return TURN


async def ask(chain: EngineChain) -> tuple[str, str]:
    """A turn: (the engine that answered last, the text it showed)."""
    engine, text = "", ""
    async for item in chain.stream(turn_window, 3000):
        if isinstance(item, EngineStarted):
            engine, text = item.engine, "" if item.replaces_partial else text
        elif isinstance(item, str):
            text += item
    return engine, text


@pytest.fixture
async def make_chain(make_api_engine: MakeApiEngine, brain_server: FakeChatServer, hf_server: FakeChatServer):
    chains: list[EngineChain] = []

    def make(**options: object) -> EngineChain:
        tiers = [
            Tier(make_api_engine(brain_server.base_url, "brain", context_window=1000), DEADLINE_S),
            Tier(make_api_engine(hf_server.base_url, "huggingface"), DEADLINE_S),
        ]
        chain = EngineChain(tiers, EchoEngine(), max_tokens=100, **options)  # type: ignore[arg-type]
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        await chain.aclose()


async def test_the_first_named_engine_writes_the_whole_answer_within_the_given_length(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_chain
) -> None:
    budgets: list[int] = []

    def recording_prompt(budget: int) -> list[ChatMessage]:
        budgets.append(budget)
        return PROMPT

    completion = await make_chain().complete(
        recording_prompt, engines=["brain", "huggingface"], max_tokens=SUMMARY_TOKENS, history_budget=3000
    )

    assert (completion.engine, completion.text) == ("brain", "Hello from the brain!")
    assert brain_server.requests[0].messages == PROMPT
    assert brain_server.requests[0].body["max_tokens"] == SUMMARY_TOKENS
    assert budgets == [1000 - SUMMARY_TOKENS]  # the brain's context window, less the answer's room
    assert hf_server.requests == []


async def test_the_order_is_the_callers(brain_server: FakeChatServer, make_chain) -> None:
    completion = await make_chain().complete(prompt, engines=["huggingface", "brain"], max_tokens=SUMMARY_TOKENS)

    assert completion.engine == "huggingface"
    assert brain_server.requests == []


async def test_a_failure_moves_on_and_counts_against_the_engine_like_a_turns(
    brain_server: FakeChatServer, make_chain
) -> None:
    brain_server.script = [HttpError.server_error()]
    chain = make_chain(failure_threshold=1)

    completion = await chain.complete(prompt, engines=["brain", "huggingface"], max_tokens=SUMMARY_TOKENS)

    assert completion.engine == "huggingface"
    assert status_of(chain, "brain").breaker == "open"
    assert (await ask(chain))[0] == "huggingface"  # turns skip the brain the summary found broken


async def test_echo_never_answers_and_no_answer_is_an_engine_error(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.default = HttpError.server_error()
    chain = make_chain()

    with pytest.raises(EngineError) as failed:
        await chain.complete(prompt, engines=["brain"], max_tokens=SUMMARY_TOKENS)
    assert failed.value.kind is ErrorKind.UNAVAILABLE
    with pytest.raises(EngineError, match="none of the engines"):
        await chain.complete(prompt, engines=["echo"], max_tokens=SUMMARY_TOKENS)


async def test_an_open_breaker_is_not_bypassed(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [HttpError.unavailable(retry_after=60)]
    chain = make_chain()
    assert (await ask(chain))[0] == "huggingface"

    with pytest.raises(EngineError, match="breaker is open"):
        await chain.complete(prompt, engines=["brain"], max_tokens=SUMMARY_TOKENS)
    assert len(brain_server.requests) == 1


async def test_a_full_tier_is_skipped_at_once_without_queueing(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Hang()]
    chain = make_chain(max_concurrent_calls=1)
    turn = asyncio.create_task(ask(chain))
    await wait_until(lambda: brain_server.in_flight == 1)

    started = time.perf_counter()
    with pytest.raises(EngineError) as failed:
        await chain.complete(prompt, engines=["brain"], max_tokens=SUMMARY_TOKENS)

    assert failed.value.kind is ErrorKind.BUSY
    assert time.perf_counter() - started < 0.2
    assert len(brain_server.requests) == 1
    turn.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await turn


async def test_a_turn_that_finds_the_tier_full_takes_the_slot_of_a_background_answer(
    brain_server: FakeChatServer, make_chain
) -> None:
    slow = Reply("a summary that takes its time", chunks=10, chunk_delay_s=0.3)
    brain_server.script = lambda body: slow if body["messages"] == PROMPT else Reply("Brain here.")
    chain = make_chain(max_concurrent_calls=1)
    background = asyncio.create_task(chain.complete(prompt, engines=["brain"], max_tokens=SUMMARY_TOKENS))
    await wait_until(lambda: brain_server.in_flight == 1)

    started = time.perf_counter()
    assert await ask(chain) == ("brain", "Brain here.")

    assert time.perf_counter() - started < 1.0  # the summary alone would hold the only slot for 3 s
    with pytest.raises(EngineError) as failed:
        await background
    assert failed.value.kind is ErrorKind.BUSY
    brain = status_of(chain, "brain")
    assert (brain.failures, brain.breaker) == (0, "closed")


async def test_a_turn_on_a_free_tier_leaves_background_answers_alone(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = lambda body: Reply("the summary", chunks=3, chunk_delay_s=0.2)
    chain = make_chain(max_concurrent_calls=2)
    background = asyncio.create_task(chain.complete(prompt, engines=["brain"], max_tokens=SUMMARY_TOKENS))
    await wait_until(lambda: brain_server.in_flight == 1)

    await ask(chain)

    assert (await background).text == "the summary"


async def test_the_callers_cancellation_propagates_and_charges_no_one(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Hang()]
    chain = make_chain(failure_threshold=1)
    background = asyncio.create_task(chain.complete(prompt, engines=["brain", "huggingface"], max_tokens=10))
    await wait_until(lambda: brain_server.in_flight == 1)

    background.cancel()
    with pytest.raises(asyncio.CancelledError):
        await background

    brain = status_of(chain, "brain")
    assert (brain.failures, brain.breaker) == (0, "closed")
    assert status_of(chain, "huggingface").calls == 0  # cancelled, not handed over


class OneAtATimeEngine:
    """Serves one answer at a time, as the local model does: turns queue in `reserved()`."""

    name = "local"
    context_window = 2048

    def __init__(self, seconds_per_answer: float) -> None:
        self.seconds_per_answer = seconds_per_answer
        self.answering: list[str] = []  # the last message of each request, when it started
        self.finished: list[str] = []
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def reserved(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    async def stream(self, messages, max_tokens) -> AsyncIterator[str]:
        self.answering.append(messages[-1]["content"])
        await asyncio.sleep(self.seconds_per_answer)
        self.finished.append(messages[-1]["content"])
        yield f"answer to {messages[-1]['content']}"

    async def aclose(self) -> None:
        pass


async def test_a_one_at_a_time_engine_that_a_turn_uses_is_not_waited_for() -> None:
    engine = OneAtATimeEngine(seconds_per_answer=0.5)
    chain = EngineChain([Tier(engine, 2.0)], EchoEngine(), max_tokens=100)
    turn = asyncio.create_task(ask(chain))
    await wait_until(lambda: engine.answering)

    with pytest.raises(EngineError) as failed:
        await chain.complete(prompt, engines=["local"], max_tokens=SUMMARY_TOKENS)

    assert failed.value.kind is ErrorKind.BUSY
    assert (await turn)[0] == "local"
    assert engine.answering == ["Hi!"]


async def test_a_turn_never_waits_behind_a_background_answer_on_a_one_at_a_time_engine() -> None:
    engine = OneAtATimeEngine(seconds_per_answer=1.0)
    chain = EngineChain([Tier(engine, 3.0)], EchoEngine(), max_tokens=100)
    background = asyncio.create_task(chain.complete(prompt, engines=["local"], max_tokens=SUMMARY_TOKENS))
    await wait_until(lambda: engine.answering)

    started = time.perf_counter()
    assert await ask(chain) == ("local", "answer to Hi!")

    assert time.perf_counter() - started < 1.5  # one answer's time, not two
    with pytest.raises(EngineError):
        await background
    assert engine.finished == ["Hi!"]


async def wait_until(condition, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
