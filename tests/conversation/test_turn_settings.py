"""What a server's settings do to one turn: its persona is the system prompt, its model is asked for on its tier,
and every answer is charged to its member in its server — the engine's own count when it reports one, ours
otherwise, nothing for echo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

from app.bench.instant_engine import InstantEngine
from app.conversation.service import ConversationService
from app.engines import ECHO, ChatMessage, TokenUsage
from app.storage import ConversationKey
from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import TEST_SYSTEM_PROMPT, api_engine

ALICE = ConversationKey(user_id=1, scope="guild:7")
GUILD = 7


class CountingEngine(InstantEngine):
    """Answers like InstantEngine, then says what the answer cost, as a server's `usage` does."""

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str | TokenUsage]:
        async for chunk in super().stream(messages, max_tokens):
            yield chunk
        yield TokenUsage(prompt_tokens=120, completion_tokens=30)


async def turn(service: ConversationService, text: str, **options) -> list:  # type: ignore[no-untyped-def]
    async with aclosing(service.respond(ALICE, "Alice", text, **options)) as events:
        return [event async for event in events]


async def test_a_persona_replaces_the_system_prompt_for_its_turn_only(open_test_service) -> None:  # type: ignore[no-untyped-def]
    engine = InstantEngine()
    service = await open_test_service([engine])
    await turn(service, "ahoy", persona="You are Captain Hook.")
    await turn(service, "hello again")
    assert engine.requests[0][0]["content"].startswith("You are Captain Hook.\nYou are talking with Alice.")
    assert TEST_SYSTEM_PROMPT not in engine.requests[0][0]["content"]
    assert engine.requests[1][0]["content"].startswith(TEST_SYSTEM_PROMPT)


async def test_a_chosen_model_is_asked_for_on_its_tier_and_the_others_keep_theirs(open_test_service) -> None:  # type: ignore[no-untyped-def]
    async with FakeChatServer(default=Reply("from the brain")) as brain, FakeChatServer() as hf:
        service = await open_test_service(
            [api_engine(brain.base_url, model="brain-default"), api_engine(hf.base_url, "huggingface")]
        )
        await turn(service, "hi", model="brain:llama3.1:8b")
        await turn(service, "hi", model="huggingface:Qwen/Qwen2.5-7B-Instruct", prefer="huggingface")
        await turn(service, "hi")
        assert [request.body["model"] for request in brain.requests] == ["llama3.1:8b", "brain-default"]
        assert [request.body["model"] for request in hf.requests] == ["Qwen/Qwen2.5-7B-Instruct"]


async def test_answers_are_charged_to_the_member_in_their_server(open_test_service) -> None:  # type: ignore[no-untyped-def]
    service = await open_test_service([CountingEngine()])
    await turn(service, "what does this cost?", guild_id=GUILD)
    assert await service.usage.used_today(GUILD, ALICE.user_id) == 150  # the engine's own count
    assert await service.usage.used_today(0, ALICE.user_id) == 0
    await service.close()
    reopened = await open_test_service([CountingEngine()])
    assert await reopened.usage.used_today(GUILD, ALICE.user_id) == 150, "stored with the answer"


async def test_an_engine_that_reports_nothing_is_charged_what_we_counted(open_test_service) -> None:  # type: ignore[no-untyped-def]
    service = await open_test_service([InstantEngine(answer="four words of answer")])
    await turn(service, "count me", guild_id=GUILD)
    used = await service.usage.used_today(GUILD, ALICE.user_id)
    assert 30 < used < 200  # the system prompt, the question and the answer, as the estimate counts them


async def test_echo_answers_cost_nothing(open_test_service) -> None:  # type: ignore[no-untyped-def]
    service = await open_test_service([])
    events = await turn(service, "anyone there?", guild_id=GUILD)
    assert events[-1].engine == ECHO
    totals = await service.usage.totals()
    assert [(total.engine, total.tokens, total.answers) for total in totals] == [(ECHO, 0, 1)]
