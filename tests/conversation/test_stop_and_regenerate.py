"""The service's Stop and Regenerate against the fake chat server (the real HTTP engine) on migrated
databases: a stop ends the answer with its text so far, stored as stopped, and closes the engine's request;
regenerate asks the stored turn again with the history before it and replaces its answer."""

from __future__ import annotations

import asyncio

import pytest

from app.conversation.events import FinalReply, NotNewestTurn, TextChunk, TurnGone
from app.conversation.stopping import StopSignal
from app.storage import ConversationKey
from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import api_engine, user_contents

KEY = ConversationKey(user_id=5, scope="dm")
STORY = "word " * 60


async def consume(events) -> list:
    return [event async for event in events]


async def test_a_stop_keeps_the_text_so_far_stored_as_stopped_and_closes_the_request(open_test_service) -> None:
    async with FakeChatServer(default=Reply(STORY, chunks=60, chunk_delay_s=0.05)) as server:
        service = await open_test_service([api_engine(server.base_url)])
        stop = StopSignal()
        shown: list[str] = []
        final: FinalReply | None = None
        async for event in service.respond(KEY, "ann", "tell me a story", stop=stop):
            if isinstance(event, TextChunk):
                shown.append(event.text)
                if len(shown) == 3:
                    stop.request()
            elif isinstance(event, FinalReply):
                final = event

        assert final is not None and final.stopped and final.text == "".join(shown)
        await asyncio.wait_for(_until(lambda: server.in_flight == 0), 2)
        [_, answer] = await service.export(KEY)
        assert answer.stopped and answer.content == final.text and len(answer.content) < len(STORY)


async def test_a_stop_from_outside_the_answer_is_not_a_cancel_of_the_turn(open_test_service) -> None:
    async with FakeChatServer(default=Reply(STORY, chunks=60, chunk_delay_s=0.05)) as server:
        service = await open_test_service([api_engine(server.base_url)])
        stop = StopSignal()
        events = []

        async def turn() -> None:
            async for event in service.respond(KEY, "ann", "tell me a story", stop=stop):
                events.append(event)

        task = asyncio.create_task(turn())
        await _until(lambda: any(isinstance(event, TextChunk) for event in events))
        stop.request()
        await asyncio.wait_for(task, 2)  # ends on its own, not cancelled
        assert isinstance(events[-1], FinalReply) and events[-1].stopped


async def test_regenerate_asks_the_same_context_and_replaces_the_answer(open_test_service) -> None:
    async with FakeChatServer(default=Reply("fallback")) as server:
        server.script = [Reply("one"), Reply("two"), Reply("two again")]
        service = await open_test_service([api_engine(server.base_url)])
        await consume(service.respond(KEY, "ann", "first"))
        await consume(service.respond(KEY, "ann", "second"))
        first_turn, _, second_turn, _ = await service.export(KEY)

        events = await consume(service.regenerate(KEY, second_turn.id, "ann"))

        assert isinstance(events[-1], FinalReply) and events[-1].text == "two again"
        assert user_contents(server.requests[-1]) == ["first", "one", "second"]
        assert [m.content for m in await service.export(KEY)] == ["first", "one", "second", "two again"]
        with pytest.raises(NotNewestTurn):
            await consume(service.regenerate(KEY, first_turn.id, "ann"))
        await service.reset(KEY)
        asked = len(server.requests)
        with pytest.raises(TurnGone):
            await consume(service.regenerate(KEY, second_turn.id, "ann"))
        assert len(server.requests) == asked


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
