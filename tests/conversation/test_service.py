"""The conversation service on real, migrated databases: memory, order, isolation, reset, cancellation."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from app.bench.instant_engine import InstantEngine
from app.conversation.events import (
    EmptyMessage,
    FinalReply,
    Notice,
    TextChunk,
)
from app.conversation.service import ConversationService
from app.engines import EngineStarted
from app.storage import ConversationKey
from tests.helpers import TEST_SYSTEM_PROMPT

ALICE = ConversationKey(user_id=1, scope="guild-1")


async def turn(service: ConversationService, key: ConversationKey, text: str, **kwargs) -> list:
    async with aclosing(service.respond(key, "Alice", text, **kwargs)) as events:
        return [event async for event in events]


async def test_history_reaches_the_engine_in_order_and_survives_a_restart(open_test_service) -> None:
    engine = InstantEngine()
    first = await open_test_service([engine])
    await turn(first, ALICE, "my name is Alice")
    await turn(first, ALICE, "I like tea")
    await first.close()

    restarted_engine = InstantEngine()
    second = await open_test_service([restarted_engine])
    events = await turn(second, ALICE, "what do I like?")

    sent = restarted_engine.requests[-1]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith(TEST_SYSTEM_PROMPT)
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "my name is Alice"),
        ("assistant", "reply to: my name is Alice"),
        ("user", "I like tea"),
        ("assistant", "reply to: I like tea"),
        ("user", "what do I like?"),
    ]
    final = events[-1]
    assert isinstance(final, FinalReply) and final.engine == "instant" and final.text == "reply to: what do I like?"
    stored = await second.export(ALICE)
    assert [(m.role, m.engine) for m in stored] == [("user", None), ("assistant", "instant")] * 3


async def test_events_stream_in_order(open_test_service) -> None:
    service = await open_test_service([InstantEngine(chunks=4)])
    events = await turn(service, ALICE, "hello there friend")
    assert isinstance(events[0], EngineStarted) and events[0].engine == "instant"
    chunks = [e.text for e in events if isinstance(e, TextChunk)]
    assert len(chunks) >= 4 and "".join(chunks) == events[-1].text


async def test_echo_answers_when_no_engine_is_configured_and_is_never_sent_to_a_model(open_test_service) -> None:
    echo_only = await open_test_service([])
    events = await turn(echo_only, ALICE, "anyone home?")
    assert events[-1].engine == "echo" and "anyone home?" in events[-1].text

    engine = InstantEngine()
    with_model = await open_test_service([engine])
    await turn(with_model, ALICE, "and now?")
    contents = [m["content"] for m in engine.requests[-1][1:]]
    assert contents == ["anyone home?", "and now?"]


async def test_fifty_concurrent_turns_of_one_user_are_stored_in_order(open_test_service) -> None:
    service = await open_test_service([InstantEngine()])
    await asyncio.gather(*(turn(service, ALICE, f"message {i}") for i in range(50)))
    stored = await service.export(ALICE)
    expected = []
    for i in range(50):
        expected += [("user", f"message {i}"), ("assistant", f"reply to: message {i}")]
    assert [(m.role, m.content) for m in stored] == expected


async def test_a_hundred_users_at_once_keep_their_histories_apart(open_test_service) -> None:
    engine = InstantEngine()
    service = await open_test_service([engine])
    keys = [ConversationKey(user_id=1000 + n, scope="guild-7") for n in range(100)]
    for round_ in range(3):
        await asyncio.gather(*(turn(service, key, f"user {key.user_id} round {round_}") for key in keys))
    for key in keys:
        stored = await service.export(key)
        assert [m.content for m in stored if m.role == "user"] == [f"user {key.user_id} round {r}" for r in range(3)]
    for request in engine.requests:
        owner = request[-1]["content"].split()[1]
        assert all(owner in m["content"] for m in request[1:]), "a window mixed two users' histories"


async def test_reset_forgets_and_counts(open_test_service) -> None:
    service = await open_test_service([InstantEngine()])
    other = ConversationKey(user_id=2, scope="guild-1")
    await turn(service, ALICE, "one")
    await turn(service, ALICE, "two")
    await turn(service, other, "keep me")
    assert await service.reset(ALICE) == 4
    assert await service.export(ALICE) == []
    assert len(await service.export(other)) == 2
    assert await service.reset(ALICE) == 0


async def test_the_window_keeps_to_the_budget_dropping_oldest_turns(open_test_service) -> None:
    engine = InstantEngine()
    service = await open_test_service([engine], budget=300)
    for i in range(40):
        await turn(service, ALICE, f"this is a fairly long message number {i} about many different things")
    sent = engine.requests[-1]
    assert sent[-1]["content"].endswith("number 39 about many different things")
    assert 1 < len(sent) < 20
    assert sent[1]["role"] == "user"
    assert len(await service.export(ALICE)) == 80, "trimming the window never deletes history"


async def test_an_oversized_message_is_cut_the_user_is_told_and_nothing_is_lost(open_test_service) -> None:
    engine = InstantEngine()
    service = await open_test_service([engine], budget=500)
    huge = "blah " * 3000
    events = await turn(service, ALICE, huge)
    assert any(isinstance(e, Notice) for e in events)
    assert len(engine.requests[-1][-1]["content"]) < len(huge)
    assert (await service.export(ALICE))[0].content == huge.strip()


@pytest.mark.parametrize("empty", ["", "   ", "\u200b\u200b", "\n\t \u2060"])
async def test_empty_messages_are_refused_and_not_stored(open_test_service, empty: str) -> None:
    service = await open_test_service([InstantEngine()])
    with pytest.raises(EmptyMessage):
        await turn(service, ALICE, empty)
    assert await service.export(ALICE) == []


class _HangingEngine(InstantEngine):
    async def stream(self, messages, max_tokens):
        self.requests.append(list(messages))
        yield "partial "
        await asyncio.Event().wait()


async def test_a_cancelled_turn_stores_no_partial_answer_and_the_next_turn_works(open_test_service) -> None:
    hanging = _HangingEngine(name="slow")
    service = await open_test_service([hanging], deadline_s=30)
    task = asyncio.create_task(turn(service, ALICE, "first"))
    while not hanging.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(m.role, m.content) for m in await service.export(ALICE)] == [("user", "first")]

    fresh = await open_test_service([InstantEngine()])
    events = await turn(fresh, ALICE, "second")
    assert events[-1].text == "reply to: second"


async def test_status_reports_the_database_and_engines(open_test_service) -> None:
    service = await open_test_service([InstantEngine()])
    status = await service.status()
    assert status.database_ok and status.database_round_trip_ms is not None
    assert [engine.name for engine in status.engines] == ["instant", "echo"]


class _NulEngine(InstantEngine):
    async def stream(self, messages, max_tokens):
        yield "secret \x00 diary"


async def test_an_answer_with_a_nul_character_is_stored_not_lost(open_test_service) -> None:
    service = await open_test_service([_NulEngine(name="nul")])
    events = await turn(service, ALICE, "hi")
    assert events[-1].text == "secret  diary"
    assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "secret  diary", "shown as stored"
    assert [m.content for m in await service.export(ALICE)] == ["hi", "secret  diary"]
