"""EngineChain with engines that report usage, and with a model chosen per tier: the real huggingface_hub client
against fake servers, and small engines of the contract where a server cannot misbehave the way needed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from app.bench.instant_engine import InstantEngine
from app.engines import ChatMessage, EngineError, EngineStarted, ErrorKind, TokenUsage
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from app.engines.plugin import CallableBrain
from tests.fakes.openai_server import FakeChatServer, HttpError, Reply
from tests.helpers import MakeApiEngine, shown_text, status_of

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are Kor'tana."},  # the fake counts words: 3
    {"role": "user", "content": "Hello there!"},  # 2
]
DEADLINE_S = 2.0


def window(budget: int) -> list[ChatMessage]:
    return MESSAGES


async def turn_of(chain: EngineChain, **options: object) -> list[EngineStarted | str | TokenUsage]:
    return [item async for item in chain.stream(window, 3000, **options)]  # type: ignore[arg-type]


class Reporting:
    """An engine that yields `items` in order (text and usage reports), then fails if `then_fails`."""

    context_window = 4096

    def __init__(self, name: str, *items: str | TokenUsage, then_fails: bool = False) -> None:
        self.name = name
        self.items = items
        self.then_fails = then_fails

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str | TokenUsage]:
        for item in self.items:
            yield item
        if self.then_fails:
            raise EngineError(ErrorKind.UNAVAILABLE, "the connection dropped after the usage")

    async def aclose(self) -> None:
        pass


def chain_of(*engines, **options: object) -> EngineChain:
    return EngineChain(
        [Tier(engine, DEADLINE_S) for engine in engines], EchoEngine(), max_tokens=100, **options  # type: ignore[arg-type]
    )


# -- usage ---------------------------------------------------------------------------------------------------------


def test_a_usage_report_holds_two_whole_counts_and_knows_its_total() -> None:
    assert TokenUsage(12, 30).total == 42
    for counts in ((-1, 3), (3, -1), (1.5, 3), (True, 3)):
        with pytest.raises(ValueError):
            TokenUsage(*counts)  # type: ignore[arg-type]


async def test_the_answering_servers_usage_is_the_turns_last_item_and_no_text(
    brain_server: FakeChatServer, make_api_engine: MakeApiEngine
) -> None:
    brain_server.script = [Reply("Hi Sam, lovely to see you.", chunks=3)]
    chain = chain_of(make_api_engine(brain_server.base_url, "brain"))

    items = await turn_of(chain)

    assert items[0] == EngineStarted("brain", replaces_partial=False)
    assert [type(item) for item in items[1:]] == [str, str, str, TokenUsage]
    assert items[-1] == TokenUsage(prompt_tokens=5, completion_tokens=6)
    assert shown_text(items) == "Hi Sam, lovely to see you."


async def test_engines_that_yield_only_text_still_answer_and_report_no_usage() -> None:
    async def answer(messages: list[ChatMessage]) -> str:
        return "A plugin's whole answer."

    for engine in (CallableBrain("brain", answer, 4096), InstantEngine("brain", chunks=3, answer="In three parts")):
        items = await turn_of(chain_of(engine))
        assert not [item for item in items if isinstance(item, TokenUsage)]
        assert [item.engine for item in items if isinstance(item, EngineStarted)] == ["brain"]


async def test_an_answer_of_usage_alone_is_empty_and_the_next_tier_answers_with_its_own_usage() -> None:
    chain = chain_of(Reporting("brain", TokenUsage(5, 0)), Reporting("huggingface", "Hello!", TokenUsage(5, 1)))

    items = await turn_of(chain)

    assert items == [EngineStarted("huggingface", replaces_partial=False), "Hello!", TokenUsage(5, 1)]
    assert (status_of(chain, "brain").failures, status_of(chain, "brain").last_error_kind) == (1, "unavailable")


async def test_the_usage_of_an_engine_that_failed_after_reporting_it_is_not_passed_on() -> None:
    chain = chain_of(
        Reporting("brain", "Half an ans", TokenUsage(5, 3), then_fails=True),
        Reporting("huggingface", "A whole answer.", TokenUsage(5, 3)),
    )

    items = await turn_of(chain)

    assert [item for item in items if isinstance(item, TokenUsage)] == [TokenUsage(5, 3)]
    assert items[-1] == TokenUsage(5, 3) and items[-3] == EngineStarted("huggingface", replaces_partial=True)
    assert shown_text(items) == "A whole answer."
    assert status_of(chain, "brain").failures == 1


async def test_when_every_tier_fails_echo_answers_with_no_usage() -> None:
    chain = chain_of(Reporting("brain", "Partly", TokenUsage(5, 1), then_fails=True))

    items = await turn_of(chain)

    assert items[-2] == EngineStarted("echo", replaces_partial=True)
    assert not [item for item in items if isinstance(item, TokenUsage)]


async def test_a_usage_reported_before_the_text_still_comes_after_it_and_only_the_last_report_counts() -> None:
    chain = chain_of(Reporting("brain", TokenUsage(1, 1), "Hello ", TokenUsage(5, 2), "you."))

    items = await turn_of(chain)

    assert items == [EngineStarted("brain", replaces_partial=False), "Hello ", "you.", TokenUsage(5, 2)]


async def test_complete_ignores_the_usage(brain_server: FakeChatServer, make_api_engine: MakeApiEngine) -> None:
    brain_server.script = [Reply("A short summary.", chunks=2)]
    chain = chain_of(make_api_engine(brain_server.base_url, "brain"))

    completion = await chain.complete(window, engines=["brain"], max_tokens=50)

    assert (completion.text, completion.engine) == ("A short summary.", "brain")
    assert brain_server.requests[0].body["stream_options"] == {"include_usage": True}


# -- a model per tier ----------------------------------------------------------------------------------------------


@pytest.fixture
def two_tiers(make_api_engine: MakeApiEngine, brain_server: FakeChatServer, hf_server: FakeChatServer):
    def make(**options: object) -> EngineChain:
        return chain_of(
            make_api_engine(brain_server.base_url, "brain", model="llama3.1:8b"),
            make_api_engine(hf_server.base_url, "huggingface", model="meta-llama/Llama-3.1-8B-Instruct"),
            **options,
        )

    return make


async def test_the_chosen_model_is_asked_of_its_tier_only(
    two_tiers, brain_server: FakeChatServer, hf_server: FakeChatServer
) -> None:
    chain = two_tiers()
    brain_server.script = [HttpError.server_error(), Reply("from the chosen brain")]

    first = await turn_of(chain, models={"brain": "qwen2.5:7b"})  # the brain fails: Hugging Face answers
    second = await turn_of(chain, models={"brain": "qwen2.5:7b"})
    third = await turn_of(chain)

    assert shown_text(first) == "Hello from Hugging Face!"
    assert shown_text(second) == "from the chosen brain"
    assert shown_text(third) == "Hello from the brain!"
    assert [request.body["model"] for request in brain_server.requests] == ["qwen2.5:7b", "qwen2.5:7b", "llama3.1:8b"]
    assert [request.body["model"] for request in hf_server.requests] == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert [item.engine for item in first if isinstance(item, EngineStarted)] == ["huggingface"]


async def test_a_model_chosen_for_the_second_tier_is_asked_when_the_first_fails(
    two_tiers, brain_server: FakeChatServer, hf_server: FakeChatServer
) -> None:
    chain = two_tiers()
    brain_server.script = [HttpError.unavailable()]

    items = await turn_of(chain, models={"huggingface": "Qwen/Qwen2.5-72B-Instruct"})

    assert shown_text(items) == "Hello from Hugging Face!" and isinstance(items[-1], TokenUsage)
    assert brain_server.requests[0].body["model"] == "llama3.1:8b"
    assert hf_server.requests[0].body["model"] == "Qwen/Qwen2.5-72B-Instruct"


async def test_a_failing_chosen_model_opens_its_tiers_breaker_for_every_turn(
    two_tiers, brain_server: FakeChatServer, hf_server: FakeChatServer
) -> None:
    # The design: the breaker is the tier's, whatever model a server chose; the operator vouches for the models
    # in ALLOWED_MODELS, so one that fails (a model the brain's server does not have: 404) is the tier failing.
    chain = two_tiers(failure_threshold=2)
    brain_server.script = lambda body: HttpError(404, {"error": "model not found"}) if body["model"] == "gone" \
        else Reply("Hello from the brain!")

    for _ in range(2):
        assert shown_text(await turn_of(chain, models={"brain": "gone"})) == "Hello from Hugging Face!"
    assert status_of(chain, "brain").breaker == "open"

    assert shown_text(await turn_of(chain)) == "Hello from Hugging Face!"
    assert len(brain_server.requests) == 2, "the open breaker spares the brain the default model's turn too"


async def test_a_model_for_a_tier_that_serves_one_model_is_not_asked_for() -> None:
    brain = InstantEngine("brain", answer="the only model I have")
    chain = chain_of(brain)

    items = await turn_of(chain, models={"brain": "qwen2.5:7b", "huggingface": "not in this chain"})

    assert shown_text(items) == "the only model I have"
    assert chain.models_served() == {}


def test_models_served_names_each_tier_that_can_be_asked_for_another_model(
    make_api_engine: MakeApiEngine,
) -> None:
    chain = chain_of(
        InstantEngine("brain"), make_api_engine("http://127.0.0.1:9/v1", "huggingface", model="hf/default")
    )

    assert chain.models_served() == {"huggingface": "hf/default"}
