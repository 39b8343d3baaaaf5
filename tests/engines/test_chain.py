"""EngineChain: brain → Hugging Face → echo, with the real huggingface_hub client against fake servers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
import types
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from app.engines import ChatMessage, CountsTokens, Engine, EngineError, EngineStarted, ErrorKind, TokenUsage
from app.engines.breaker import CircuitBreaker
from app.engines.chain import BREAKER_RULES, BreakerRule, EngineChain, Tier
from app.engines.echo import EchoEngine
from app.engines.plugin import load_plugin_brain
from tests.fakes.openai_server import (
    FakeChatServer,
    Hang,
    HttpError,
    LoneSurrogates,
    MalformedJson,
    Reply,
    StreamErrorEvent,
)
from tests.helpers import BreakerWitness, MakeApiEngine, status_of

SYSTEM: ChatMessage = {"role": "system", "content": "You are Kor'tana."}
HISTORY: list[ChatMessage] = [
    {"role": "user", "content": "I love tea."},
    {"role": "assistant", "content": "Tea is lovely 🍵"},
]
NEW_MESSAGE: ChatMessage = {"role": "user", "content": "What do I love?"}
MAX_TOKENS = 100
DEADLINE_S = 0.4


@dataclass
class Window:
    """A stand-in for the conversation's window builder: records the budgets the chain asks for."""

    budgets: list[int] = field(default_factory=list)

    def __call__(self, budget: int) -> list[ChatMessage]:
        self.budgets.append(budget)
        return [SYSTEM, *HISTORY, NEW_MESSAGE]


@dataclass
class Turn:
    events: list[EngineStarted | str | TokenUsage]

    @property
    def starts(self) -> list[EngineStarted]:
        return [event for event in self.events if isinstance(event, EngineStarted)]

    @property
    def engine(self) -> str:
        return self.starts[-1].engine

    @property
    def shown(self) -> str:
        """What the user ends up seeing: the text after the last replacement."""
        shown = ""
        for event in self.events:
            if isinstance(event, EngineStarted):
                shown = "" if event.replaces_partial else shown
            elif isinstance(event, str):
                shown += event
        return shown

    @property
    def usages(self) -> list[TokenUsage]:
        return [event for event in self.events if isinstance(event, TokenUsage)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ask(chain: EngineChain, prefer: str | None = None, window: Window | None = None) -> Turn:
    return Turn([event async for event in chain.stream(window or Window(), 3000, prefer=prefer)])


async def first_event_after(chain: EngineChain) -> tuple[EngineStarted, float]:
    started = time.perf_counter()
    async for event in chain.stream(Window(), 3000):
        assert isinstance(event, EngineStarted)
        return event, time.perf_counter() - started
    raise AssertionError("no answer")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_chain(make_api_engine: MakeApiEngine, hf_server: FakeChatServer, clock: FakeClock):
    """`make_chain(brain, brain_deadline_s=DEADLINE_S, hf_deadline_s=DEADLINE_S, **options)`: brain (an engine or a
    base URL) → HF (the `hf_server`) → echo."""
    chains: list[EngineChain] = []

    def make(
        brain: Engine | str, brain_deadline_s: float = DEADLINE_S, hf_deadline_s: float = DEADLINE_S, **options: object
    ) -> EngineChain:
        if isinstance(brain, str):
            brain = make_api_engine(brain, "brain")
        tiers = [Tier(brain, brain_deadline_s), Tier(make_api_engine(hf_server.base_url, "hf"), hf_deadline_s)]
        chain = EngineChain(
            tiers, EchoEngine(), max_tokens=MAX_TOKENS, clock=clock, **options  # type: ignore[arg-type]
        )
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        await chain.aclose()


async def test_the_brain_answers_with_the_history_in_order_system_prompt_first(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_chain
) -> None:
    turn = await ask(make_chain(brain_server.base_url))

    assert turn.starts == [EngineStarted("brain", replaces_partial=False)]
    assert turn.shown == "Hello from the brain!"
    assert brain_server.requests[0].messages == [SYSTEM, *HISTORY, NEW_MESSAGE]
    assert brain_server.requests[0].body["max_tokens"] == MAX_TOKENS
    assert hf_server.requests == []


async def test_the_budget_leaves_room_for_the_answer_in_the_engine_window(
    brain_server: FakeChatServer, make_chain, make_api_engine: MakeApiEngine
) -> None:
    window = Window()
    small_brain = make_api_engine(brain_server.base_url, "brain", context_window=1000)

    await ask(make_chain(small_brain), window=window)

    assert window.budgets == [1000 - MAX_TOKENS]


@pytest.mark.parametrize(
    "failure",
    [HttpError.server_error(), MalformedJson(), StreamErrorEvent()],
    ids=["500", "malformed-json", "error-event"],
)
async def test_a_failing_brain_hands_over_to_hugging_face(
    brain_server: FakeChatServer, make_chain, failure
) -> None:
    brain_server.script = [failure]
    chain = make_chain(brain_server.base_url)

    turn = await ask(chain)

    assert turn.starts == [EngineStarted("hf", replaces_partial=False)]
    assert turn.shown == "Hello from Hugging Face!"
    brain = status_of(chain, "brain")
    assert (brain.calls, brain.failures, brain.last_error_kind, brain.breaker) == (1, 1, "unavailable", "closed")


async def test_consecutive_failures_open_the_breaker_and_the_brain_is_skipped(
    brain_server: FakeChatServer, make_chain, clock: FakeClock
) -> None:
    brain_server.default = HttpError.server_error()
    chain = make_chain(brain_server.base_url, failure_threshold=2, open_for_s=30)

    await ask(chain)
    assert status_of(chain, "brain").breaker == "closed"
    await ask(chain)
    assert status_of(chain, "brain").breaker == "open"
    assert status_of(chain, "brain").open_until == 30

    turn = await ask(chain)

    assert turn.engine == "hf"
    assert len(brain_server.requests) == 2


@pytest.mark.parametrize("failure", [HttpError.unavailable(retry_after=5), HttpError.rate_limited(retry_after=5)])
async def test_retry_after_opens_the_breaker_for_that_long_then_one_probe_closes_it(
    brain_server: FakeChatServer, make_chain, clock: FakeClock, failure: HttpError
) -> None:
    brain_server.script = [failure]
    chain = make_chain(brain_server.base_url, failure_threshold=3)

    assert (await ask(chain)).engine == "hf"
    assert status_of(chain, "brain").breaker == "open"
    assert status_of(chain, "brain").open_until == 5

    clock.now += 4.9
    assert (await ask(chain)).engine == "hf"
    assert len(brain_server.requests) == 1  # skipped while open

    clock.now += 0.1
    assert status_of(chain, "brain").breaker == "half_open"
    assert (await ask(chain)).engine == "brain"
    assert status_of(chain, "brain").breaker == "closed"


async def test_a_retry_after_of_a_day_still_gets_a_probe_within_15_minutes(
    brain_server: FakeChatServer, make_chain, clock: FakeClock
) -> None:
    brain_server.script = [HttpError.rate_limited(retry_after=86_400)]
    chain = make_chain(brain_server.base_url, failure_threshold=3)
    assert (await ask(chain)).engine == "hf"
    assert status_of(chain, "brain").open_until == 15 * 60
    clock.now += 15 * 60
    assert (await ask(chain)).engine == "brain"


async def test_a_failed_probe_opens_the_breaker_again(
    brain_server: FakeChatServer, make_chain, clock: FakeClock
) -> None:
    brain_server.script = [HttpError.rate_limited(retry_after=5), HttpError.server_error()]
    chain = make_chain(brain_server.base_url, open_for_s=30)
    await ask(chain)
    clock.now += 5

    assert (await ask(chain)).engine == "hf"

    assert len(brain_server.requests) == 2
    assert status_of(chain, "brain").breaker == "open"
    assert status_of(chain, "brain").open_until == 30


async def test_turns_during_a_probe_skip_the_engine(
    brain_server: FakeChatServer, make_chain, clock: FakeClock
) -> None:
    slow_probe = Reply("probing…", chunks=2, chunk_delay_s=0.15)
    brain_server.script = [HttpError.rate_limited(retry_after=5), slow_probe]
    chain = make_chain(brain_server.base_url)
    await ask(chain)
    clock.now += 5

    probe = asyncio.create_task(ask(chain))
    await asyncio.sleep(0.05)
    during_probe = await ask(chain)

    assert during_probe.engine == "hf"
    assert (await probe).engine == "brain"
    assert len(brain_server.requests) == 2


async def test_a_rejected_key_opens_the_breaker_at_once_and_is_logged_clearly(
    brain_server: FakeChatServer, make_chain, make_api_engine: MakeApiEngine, caplog: pytest.LogCaptureFixture
) -> None:
    brain_server.script = [HttpError.unauthorized()]
    brain = make_api_engine(brain_server.base_url, "brain", api_key="sk-brain-secret")
    chain = make_chain(brain, failure_threshold=3)

    with caplog.at_level(logging.INFO, logger="app.engines"):
        turn = await ask(chain)

    assert turn.engine == "hf"
    assert status_of(chain, "brain").breaker == "open"
    [record] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert "brain" in record.getMessage() and "auth" in record.getMessage() and "401" in record.getMessage()
    assert "sk-brain-secret" not in caplog.text + repr(chain.status())
    assert NEW_MESSAGE["content"] not in caplog.text


async def test_a_hanging_brain_costs_no_more_than_its_deadline(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Hang()]

    started, waited = await first_event_after(make_chain(brain_server.base_url))

    assert started == EngineStarted("hf", replaces_partial=False)
    assert DEADLINE_S <= waited < 2 * DEADLINE_S  # its deadline, and no more


async def test_a_refused_connection_costs_almost_nothing(refused_url: str, make_chain) -> None:
    chain = make_chain(refused_url)

    started, waited = await first_event_after(chain)

    assert started.engine == "hf"
    assert waited < DEADLINE_S  # failed over at once, not at the deadline


async def test_a_stall_mid_stream_discards_the_partial_text(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Reply("I think that you lo", chunks=4, stall_after_chunks=2)]
    chain = make_chain(brain_server.base_url)

    turn = await ask(chain)

    assert turn.starts == [EngineStarted("brain", False), EngineStarted("hf", replaces_partial=True)]
    assert turn.shown == "Hello from Hugging Face!"
    assert status_of(chain, "brain").last_error_kind == "timeout"


async def test_an_error_event_after_partial_text_discards_it(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [StreamErrorEvent(text_before="You love co")]

    turn = await ask(make_chain(brain_server.base_url))

    assert turn.starts[-1] == EngineStarted("hf", replaces_partial=True)
    assert turn.shown == "Hello from Hugging Face!"


async def test_a_slow_reader_does_not_use_up_the_deadline(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Reply("every word counts", chunks=3)]
    events = []

    async for event in make_chain(brain_server.base_url).stream(Window(), 3000):
        events.append(event)
        await asyncio.sleep(DEADLINE_S / 2)  # a front end busy editing its message

    assert Turn(events).engine == "brain"
    assert Turn(events).shown == "every word counts"


async def test_when_every_engine_is_down_echo_answers(
    refused_url: str, hf_server: FakeChatServer, make_chain
) -> None:
    hf_server.script = [HttpError.server_error()]
    chain = make_chain(refused_url)

    turn = await ask(chain)

    assert turn.starts == [EngineStarted("echo", replaces_partial=False)]
    assert "trouble" in turn.shown and "What do I love?" in turn.shown
    assert status_of(chain, "echo").calls == 1


async def test_echo_says_after_partial_text_that_it_replaces_it(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_chain
) -> None:
    brain_server.script = [Reply("You lo", chunks=2, stall_after_chunks=1)]
    hf_server.script = [HttpError.server_error()]

    turn = await ask(make_chain(brain_server.base_url))

    assert turn.starts[-1] == EngineStarted("echo", replaces_partial=True)
    assert "What do I love?" in turn.shown and "You lo" not in turn.shown


async def test_echo_answers_in_one_chunk_with_a_short_quote() -> None:
    rambling = "tell me " + "a very long story " * 20
    chunks = [chunk async for chunk in EchoEngine().stream([SYSTEM, {"role": "user", "content": rambling}], 50)]

    [reply] = chunks
    assert "trouble" in reply and "tell me a very long story" in reply
    assert len(reply) < 200


async def test_echo_without_a_user_message_still_answers() -> None:
    [reply] = [chunk async for chunk in EchoEngine().stream([SYSTEM], 50)]

    assert "trouble" in reply


class BusyBrain:
    name = "brain"
    context_window = 4096

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        raise EngineError(ErrorKind.BUSY, "queue full")
        yield ""

    async def aclose(self) -> None:
        pass


async def test_a_busy_engine_is_passed_over_without_opening_its_breaker(make_chain) -> None:
    chain = make_chain(BusyBrain(), failure_threshold=1)

    assert (await ask(chain)).engine == "hf"
    assert (await ask(chain)).engine == "hf"

    brain = status_of(chain, "brain")
    assert (brain.calls, brain.failures, brain.last_error_kind, brain.breaker) == (2, 2, "busy", "closed")


async def test_context_too_long_is_retried_once_with_half_the_budget(
    brain_server: FakeChatServer, make_chain
) -> None:
    brain_server.script = [HttpError.context_too_long(), Reply("It fits now.")]
    window = Window()
    chain = make_chain(brain_server.base_url)

    turn = await ask(chain, window=window)

    assert turn.engine == "brain" and turn.shown == "It fits now."
    assert window.budgets == [3000, 1500]
    assert status_of(chain, "brain").breaker == "closed"


async def test_context_too_long_twice_moves_on(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.default = HttpError.context_too_long()
    window = Window()

    turn = await ask(make_chain(brain_server.base_url), window=window)

    assert turn.engine == "hf"
    assert len(brain_server.requests) == 2
    assert window.budgets == [3000, 1500, 3000]


async def test_prefer_asks_that_engine_first(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_chain
) -> None:
    chain = make_chain(brain_server.base_url)

    assert (await ask(chain, prefer="hf")).engine == "hf"
    assert brain_server.requests == []

    hf_server.script = [HttpError.server_error()]
    assert (await ask(chain, prefer="hf")).engine == "brain"
    assert (await ask(chain, prefer="no-such-engine")).engine == "brain"


async def test_concurrent_engine_calls_are_capped(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.default = Reply("one at a time", chunks=2, chunk_delay_s=0.05)
    chain = make_chain(brain_server.base_url, max_concurrent_calls=2)

    turns = await asyncio.gather(*(ask(chain) for _ in range(5)))

    assert [turn.engine for turn in turns] == ["brain"] * 5
    assert brain_server.max_in_flight == 2


async def test_cancelling_a_turn_propagates_and_charges_no_one(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Reply("a long and slow answer", chunks=5, chunk_delay_s=0.1)]
    chain = make_chain(brain_server.base_url, failure_threshold=1)
    got_text = asyncio.Event()

    async def consume() -> None:
        async for event in chain.stream(Window(), 3000):
            if isinstance(event, str):
                got_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_text.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    brain = status_of(chain, "brain")
    assert (brain.failures, brain.breaker) == (0, "closed")
    assert (await ask(chain)).shown == "Hello from the brain!"


async def test_a_cancelled_probe_lets_the_next_turn_probe(
    brain_server: FakeChatServer, make_chain, clock: FakeClock
) -> None:
    brain_server.script = [HttpError.rate_limited(retry_after=5), Hang()]
    chain = make_chain(brain_server.base_url)
    await ask(chain)
    clock.now += 5

    probe = asyncio.create_task(ask(chain))
    await asyncio.sleep(0.1)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    assert (await ask(chain)).engine == "brain"
    assert len(brain_server.requests) == 3


async def test_a_silent_engine_counts_as_a_failure(brain_server: FakeChatServer, make_chain) -> None:
    brain_server.script = [Reply("")]
    chain = make_chain(brain_server.base_url)

    assert (await ask(chain)).engine == "hf"
    assert status_of(chain, "brain").failures == 1


async def test_status_reports_every_engine(brain_server: FakeChatServer, make_chain) -> None:
    chain = make_chain(brain_server.base_url)
    await ask(chain)

    brain, hf, echo = chain.status()

    assert [brain.name, hf.name, echo.name] == ["brain", "hf", "echo"]
    assert (brain.calls, brain.failures, brain.breaker, brain.open_until) == (1, 0, "closed", None)
    assert brain.last_latency_s is not None and brain.last_latency_s < DEADLINE_S
    assert (hf.calls, echo.calls) == (0, 0)
    assert all(status.configured for status in (brain, hf, echo))


class TeaBrain:
    """An engine-like plugin object."""

    name = "tea"
    context_window = 2048

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        yield "You love "
        yield f"tea ({len(messages)} messages)."


async def answer_with_tea(messages: list[ChatMessage]) -> str:
    return f"You love tea, said the function ({messages[0]['role']} first)."


@pytest.fixture
def brains_module(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("kortana_test_brains")
    module.TeaBrain = TeaBrain  # type: ignore[attr-defined]
    module.tea = TeaBrain()  # type: ignore[attr-defined]
    module.answer_with_tea = answer_with_tea  # type: ignore[attr-defined]
    module.not_a_brain = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module.__name__


@pytest.mark.parametrize(
    ("attribute", "name", "text"),
    [
        ("tea", "tea", "You love tea (4 messages)."),
        ("TeaBrain", "tea", "You love tea (4 messages)."),
        ("answer_with_tea", "answer_with_tea", "You love tea, said the function (system first)."),
    ],
    ids=["object", "factory", "async-callable"],
)
async def test_a_plugin_brain_answers(
    brains_module: str, make_chain, attribute: str, name: str, text: str
) -> None:
    brain = load_plugin_brain(f"{brains_module}:{attribute}", context_window=4096)

    turn = await ask(make_chain(brain))

    assert brain.name == name
    assert turn.starts == [EngineStarted(name, replaces_partial=False)]
    assert turn.shown == text


class CountingTeaBrain(TeaBrain):
    """A whole engine with an optional capability: it counts its own tokens."""

    async def aclose(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_a_plugin_that_is_a_whole_engine_keeps_its_optional_capabilities(
    brains_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[brains_module], "counting", CountingTeaBrain(), raising=False)

    brain = load_plugin_brain(f"{brains_module}:counting", context_window=4096)

    assert brain is sys.modules[brains_module].counting  # not wrapped: nothing of it is hidden
    assert isinstance(brain, CountsTokens) and brain.count_tokens("two words") == 2


async def test_a_failing_plugin_brain_hands_over(
    brains_module: str, make_chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(messages: list[ChatMessage]) -> str:
        raise RuntimeError("the user's brain has a bug")

    monkeypatch.setattr(sys.modules[brains_module], "answer_with_tea", broken)
    chain = make_chain(load_plugin_brain(f"{brains_module}:answer_with_tea", context_window=4096))

    assert (await ask(chain)).engine == "hf"
    assert status_of(chain, "answer_with_tea").last_error_kind == "unavailable"


@pytest.mark.parametrize(
    "spec",
    ["no_colon_here", ":attribute", "module:", "no.such.module:brain", "{module}:missing", "{module}:not_a_brain"],
)
def test_a_bad_plugin_spec_is_a_clear_error(brains_module: str, spec: str) -> None:
    with pytest.raises(ValueError, match="BRAIN="):
        load_plugin_brain(spec.format(module=brains_module), context_window=4096)


class _OneAtATimeEngine:
    """An engine that serves one answer at a time, like the local model: turns queue in `reserved()`."""

    def __init__(self, seconds_per_answer: float) -> None:
        self.name = "local"
        self.context_window = 4096
        self._seconds = seconds_per_answer
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def reserved(self):
        async with self._lock:
            yield

    async def stream(self, messages, max_tokens):
        await asyncio.sleep(self._seconds)
        yield "answer from the one-at-a-time engine"

    async def aclose(self) -> None:
        pass


async def test_waiting_for_a_one_at_a_time_engine_does_not_eat_its_deadline() -> None:
    engine = _OneAtATimeEngine(seconds_per_answer=0.3)
    chain = EngineChain([Tier(engine, 0.5)], EchoEngine(), max_tokens=MAX_TOKENS)

    async def one_answer() -> str:
        return "".join([item async for item in chain.stream(Window(), 3000) if isinstance(item, str)])

    # Two turns at once: the second waits 0.3 s, then answers in 0.3 s — 0.6 s in all, over the 0.5 s deadline
    # of one answer, which counts from the moment the engine is free.
    answers = await asyncio.gather(one_answer(), one_answer())
    assert answers == ["answer from the one-at-a-time engine"] * 2
    assert status_of(chain, "local").failures == 0


async def test_a_queue_longer_than_the_deadline_is_busy_and_spares_the_breaker() -> None:
    engine = _OneAtATimeEngine(seconds_per_answer=0.2)
    chain = EngineChain([Tier(engine, 0.3)], EchoEngine(), max_tokens=MAX_TOKENS, failure_threshold=1)

    async def answered_by() -> str:
        return [item.engine async for item in chain.stream(Window(), 3000) if isinstance(item, EngineStarted)][-1]

    # The third turn would wait 0.4 s for the engine, longer than its 0.3 s deadline.
    answers = await asyncio.gather(answered_by(), answered_by(), answered_by())
    assert sorted(answers) == ["echo", "local", "local"]
    local = status_of(chain, "local")
    assert local.last_error_kind == "busy" and local.breaker == "closed"


# -- what a failure says about the engine: only an unhealthy engine's failures reach its breaker -----------------

CONTENT_POLICY_REFUSAL = HttpError(
    400, {"error": {"message": "Your request was rejected by the content policy.", "code": "content_policy_violation"}}
)
VALIDATION_ERROR = HttpError(422, {"error": "Input validation error: `messages` must alternate roles"})


@pytest.mark.parametrize(
    "refusal", [CONTENT_POLICY_REFUSAL, VALIDATION_ERROR, HttpError.context_too_long()], ids=["400", "422", "too-long"]
)
async def test_one_users_refused_requests_never_switch_the_brain_off_for_everyone(
    brain_server: FakeChatServer, make_chain, refusal: HttpError
) -> None:
    refused_prompt = "a message this engine refuses"
    brain_server.script = lambda body: refusal if refused_prompt in str(body["messages"]) else Reply("Brain here.")
    chain = make_chain(brain_server.base_url, failure_threshold=1)

    def refused_window(budget: int) -> list[ChatMessage]:
        return [SYSTEM, {"role": "user", "content": refused_prompt}]

    for _ in range(3):
        assert (await ask(chain, window=refused_window)).engine == "hf"  # type: ignore[arg-type]

    assert status_of(chain, "brain").breaker == "closed"
    assert (await ask(chain)).shown == "Brain here."


async def test_a_probe_refused_for_its_request_is_inconclusive_and_the_next_turn_probes(
    brain_server: FakeChatServer, make_chain, clock: FakeClock
) -> None:
    brain_server.script = [HttpError.rate_limited(retry_after=5), CONTENT_POLICY_REFUSAL, Reply("Back again.")]
    chain = make_chain(brain_server.base_url)
    await ask(chain)
    clock.now += 5

    assert (await ask(chain)).engine == "hf"  # the probe was refused for what it asked, not for being down
    assert status_of(chain, "brain").breaker == "half_open"

    assert (await ask(chain)).shown == "Back again."
    assert status_of(chain, "brain").breaker == "closed"


def test_a_call_let_through_before_the_breaker_opened_never_ends_anothers_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, open_for_s=5, clock=clock)
    refused, failing, limited = (breaker.try_acquire() for _ in range(3))  # three calls while closed
    breaker.record_failure(limited, open_for_s=1)  # a 429 with Retry-After: 1 opens it; the other two run on
    clock.now += 1
    probe = breaker.try_acquire()
    assert (refused, failing, probe) == ("call", "call", "probe")

    breaker.release(refused)  # refused for what it asked: no verdict, and it was not the probe
    assert breaker.try_acquire() is None  # still one probe at a time
    breaker.record_failure(failing)  # the breaker opens again; the probe is still the one in flight
    clock.now += 5
    assert breaker.try_acquire() is None

    breaker.record_success()  # the probe answers
    assert breaker.state == "closed"


class FailingEngine:
    """Fails every call with one kind, after `delay_s`."""

    def __init__(self, kind: ErrorKind, delay_s: float = 0.0, name: str = "brain") -> None:
        self.name = name
        self.context_window = 4096
        self.kind = kind
        self.delay_s = delay_s
        self.calls = 0

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        raise EngineError(self.kind, "failing for the test")
        yield ""

    async def aclose(self) -> None:
        pass


def test_every_error_kind_has_a_breaker_rule() -> None:
    assert set(BREAKER_RULES) == set(ErrorKind)
    unhealthy = {kind for kind, rule in BREAKER_RULES.items() if rule is BreakerRule.ENGINE_UNHEALTHY}
    assert unhealthy == {ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.RATE_LIMITED, ErrorKind.AUTH}


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: kind.value)
async def test_only_failures_that_say_the_engine_is_unhealthy_open_its_breaker(make_chain, kind: ErrorKind) -> None:
    chain = make_chain(FailingEngine(kind), failure_threshold=1)

    assert (await ask(chain)).engine == "hf"

    expected = "open" if BREAKER_RULES[kind] is BreakerRule.ENGINE_UNHEALTHY else "closed"
    assert status_of(chain, "brain").breaker == expected
    assert status_of(chain, "brain").last_error_kind == kind.value


# -- bounded waiting under an outage -------------------------------------------------------------------------------


async def timed(turn) -> tuple[Turn, float]:
    started = time.perf_counter()
    result = await turn
    return result, time.perf_counter() - started


async def test_with_a_hanging_brain_no_turn_of_many_users_exceeds_the_answer_bound(
    brain_server: FakeChatServer, hf_server: FakeChatServer, make_chain, make_api_engine: MakeApiEngine
) -> None:
    brain_server.default = Hang()
    brain = BreakerWitness(make_api_engine(brain_server.base_url, "brain"))
    # HF answers 16 turns at once, each on a fresh client: on a loaded 2-core machine that took more than 0.4 s.
    chain = make_chain(brain, hf_deadline_s=3.0, max_concurrent_calls=2, failure_threshold=2)
    brain.chain = chain
    first = [asyncio.create_task(timed(ask(chain))) for _ in range(2)]
    while brain_server.in_flight < 2:
        await asyncio.sleep(0.01)

    # The other turns queue for the brain's two slots while its calls hang; those time out and open its breaker.
    results = await asyncio.gather(*first, *(timed(ask(chain)) for _ in range(14)))

    assert [turn.engine for turn, _ in results] == ["hf"] * 16
    assert max(seconds for _, seconds in results) <= chain.answer_bound_s
    assert status_of(chain, "brain").breaker == "open"
    assert brain.calls_while_open == 0


async def test_a_healthy_tier_never_queues_behind_a_hanging_ones_call_limit(
    brain_server: FakeChatServer, make_chain, make_api_engine: MakeApiEngine
) -> None:
    brain_server.default = Hang()
    hour = 3600.0  # the brain holds both its slots until the test ends the hang
    chain = make_chain(
        make_api_engine(brain_server.base_url, "brain", timeout_s=hour), brain_deadline_s=hour, max_concurrent_calls=2
    )
    hanging = [asyncio.create_task(ask(chain)) for _ in range(2)]
    while brain_server.in_flight < 2:
        await asyncio.sleep(0.01)

    # `/ask` prefers Hugging Face; queued behind the brain's slots, this turn would wait for the hang to end.
    turn = await asyncio.wait_for(ask(chain, prefer="hf"), 30)

    assert turn.engine == "hf"
    await brain_server.stop()  # the hang ends in an error: those turns move on
    assert [turn.engine for turn in await asyncio.gather(*hanging)] == ["hf", "hf"]


async def test_the_breaker_is_checked_again_once_a_slot_is_free(make_chain) -> None:
    failing = FailingEngine(ErrorKind.UNAVAILABLE, delay_s=0.1)
    chain = make_chain(failing, max_concurrent_calls=1, failure_threshold=1)

    turns = await asyncio.gather(*(ask(chain) for _ in range(5)))

    assert [turn.engine for turn in turns] == ["hf"] * 5
    assert failing.calls == 1  # the others waited for the slot, then found the breaker open


async def test_waiting_for_a_slot_counts_against_the_tiers_deadline(
    brain_server: FakeChatServer, make_chain
) -> None:
    brain_server.default = Reply("slowly, slowly", chunks=2, chunk_delay_s=DEADLINE_S * 0.4)
    chain = make_chain(brain_server.base_url, max_concurrent_calls=1, failure_threshold=10)

    (first, _), (second, waited) = await asyncio.gather(timed(ask(chain)), timed(ask(chain)))

    assert first.engine == "brain"
    assert second.engine == "hf"  # its deadline ran out while the first answer held the only slot
    assert waited < DEADLINE_S * 2
    assert status_of(chain, "brain").last_error_kind == "busy"
    assert status_of(chain, "brain").breaker == "closed"  # a full engine is "not now", not "broken"


async def test_the_retry_with_a_smaller_window_shares_the_tiers_deadline(
    brain_server: FakeChatServer, make_chain
) -> None:
    deadline_s = 1.0
    brain_server.script = [dataclasses.replace(HttpError.context_too_long(), delay_s=deadline_s * 0.75), Hang()]

    started, waited = await first_event_after(make_chain(brain_server.base_url, brain_deadline_s=deadline_s))

    assert started.engine == "hf"
    assert waited < deadline_s * 1.375  # a deadline of its own would have made it 1.75 deadlines


async def test_the_answer_bound_covers_the_wait_for_a_one_at_a_time_engine() -> None:
    engine = _OneAtATimeEngine(seconds_per_answer=0.9)
    chain = EngineChain([Tier(engine, 1.2)], EchoEngine(), max_tokens=MAX_TOKENS)

    results = await asyncio.gather(timed(ask(chain)), timed(ask(chain)))

    assert [turn.engine for turn, _ in results] == ["local", "local"]
    assert max(seconds for _, seconds in results) <= chain.answer_bound_s
    assert chain.answer_bound_s >= 2 * 1.2  # a whole deadline in the queue, then a whole deadline to answer


# -- text from engines is valid before anyone counts, stores or shows it ---------------------------------------


async def test_a_surrogate_pair_split_across_chunks_becomes_the_emoji(
    brain_server: FakeChatServer, make_chain
) -> None:
    brain_server.script = [LoneSurrogates()]

    turn = await ask(make_chain(brain_server.base_url))

    assert turn.engine == "brain"
    assert turn.shown == "ab😀cd lone \ufffd."
    for chunk in turn.events:
        if isinstance(chunk, str):
            chunk.encode("utf-8")  # every chunk on its own is valid: front ends show them one by one


async def test_a_stream_ending_in_half_a_pair_ends_with_a_replacement_character(
    brain_server: FakeChatServer, make_chain
) -> None:
    brain_server.script = [LoneSurrogates(pieces=("cut off \ud83d",))]

    assert (await ask(make_chain(brain_server.base_url))).shown == "cut off \ufffd"


class GarbageBrain:
    """A plugin brain with a bug: yields something that is not text."""

    name = "brain"
    context_window = 4096

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        yield "Half an answer, then "
        yield 42  # type: ignore[misc]

    async def aclose(self) -> None:
        pass


class BrokenReservationBrain(_OneAtATimeEngine):
    @contextlib.asynccontextmanager
    async def reserved(self):
        raise RuntimeError("a bug in the queue")
        yield


@pytest.mark.parametrize("brain", [GarbageBrain, lambda: BrokenReservationBrain(0.0)], ids=["bad-chunk", "reserve"])
async def test_a_bug_while_handling_an_engine_is_that_engines_failure_and_the_turn_still_gets_an_answer(
    make_chain, brain
) -> None:
    chain = make_chain(brain(), failure_threshold=1)

    turn = await ask(chain)

    assert turn.engine == "hf" and turn.shown == "Hello from Hugging Face!"
    assert all(isinstance(event, EngineStarted | str | TokenUsage) for event in turn.events)
    engine = chain.status()[0]
    assert (engine.failures, engine.last_error_kind, engine.breaker) == (1, "unavailable", "open")


class StuckCleanupBrain:
    """Hangs (or, `garbage`: yields something that is not text), and its cleanup hangs too: a plugin awaiting
    something slow in `finally`."""

    name = "brain"
    context_window = 4096

    def __init__(self, garbage: bool) -> None:
        self.garbage = garbage

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        try:
            if self.garbage:
                yield 42  # type: ignore[misc]
            await asyncio.sleep(3600)
            yield "never"
        finally:
            await asyncio.sleep(3600)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("garbage", [False, True], ids=["cancelled-at-the-deadline", "closed-after-a-bad-chunk"])
async def test_an_engine_whose_cleanup_hangs_still_cannot_hold_a_turn_past_the_bound(make_chain, garbage: bool) -> None:
    chain = make_chain(StuckCleanupBrain(garbage))

    turn, seconds = await timed(asyncio.wait_for(ask(chain), chain.answer_bound_s * 3))

    assert turn.engine == "hf"
    assert seconds <= chain.answer_bound_s
