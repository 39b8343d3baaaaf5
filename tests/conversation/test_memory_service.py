"""Long-term memory through the real ConversationService: recall of a fact beyond the window, no search while the
conversation fits, and nothing erased by /reset or /forget reaching an engine again — the summary job included,
one that is running at the time too. Real stores (SQLite, and PostgreSQL when given); the engine is the real
client against the local OpenAI-compatible test server, whose every request is scanned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from sqlalchemy import event

from app.conversation.events import FinalReply
from app.conversation.service import ConversationService
from app.conversation.setup import service_for
from app.conversation.summary import INSTRUCTIONS
from app.conversation.tokens import EstimatedTokens
from app.storage import ConversationKey, create_engine
from tests.fakes.openai_server import FakeChatServer, Hang, Reply
from tests.helpers import api_engine, engine_chain, history_store, settings_for

DM = ConversationKey(1, "dm")
GUILD = ConversationKey(1, "guild:7")
SECRET = "My locker code is 4417, please remember it."
SECRET_WORDS = ("4417", "locker code is")
SUMMARY_OPENING = INSTRUCTIONS.split(".")[0]


def _is_summary_request(body: dict[str, Any]) -> bool:
    return body["messages"][0]["content"].startswith(SUMMARY_OPENING)


def _summary_repeating_the_transcript(body: dict[str, Any]) -> Reply:
    """A model that keeps every fact: its summary holds whatever the transcript held (a leak check's worst case)."""
    return Reply(text="The user said: " + body["messages"][1]["content"][-300:].replace("\n", " "))


@pytest.fixture
async def server() -> AsyncIterator[FakeChatServer]:
    async with FakeChatServer() as started:
        yield started


async def _service(
    url: str, server: FakeChatServer, engine_timeout_s: float = 2.0, **settings: object
) -> ConversationService:
    values = {"history_token_budget": 500, "summary_every_turns": 2, "summary_max_tokens": 60, **settings}
    chosen = settings_for(**values)
    store = history_store(url, window_budget=chosen.history_token_budget)
    chain = engine_chain(
        [api_engine(server.base_url, "brain", timeout_s=engine_timeout_s)], max_tokens=32, deadline_s=30
    )
    return service_for(chosen, store, chain, EstimatedTokens(), summary_engines=("brain",))


async def _say(service: ConversationService, key: ConversationKey, text: str) -> FinalReply:
    async with aclosing(service.respond(key, "Sam", text)) as events:
        replies = [event async for event in events if isinstance(event, FinalReply)]
    return replies[0]


async def _chatter(service: ConversationService, key: ConversationKey, turns: int) -> None:
    for number in range(turns):
        await _say(service, key, f"Small talk number {number}: the weather was fine and the tea was warm.")


def _requests_text(server: FakeChatServer, since: int = 0) -> list[str]:
    return [message["content"] for request in server.requests[since:] for message in request.messages]


async def test_a_fact_far_beyond_the_window_is_recalled_with_its_date(migrated_url: str, server) -> None:  # type: ignore[no-untyped-def]
    service = await _service(migrated_url, server, summary_enabled=False)
    try:
        await _say(service, DM, "My dog is called Biscuit and he loves the beach.")
        await _chatter(service, DM, 30)
        before = len(server.requests)
        await _say(service, DM, "What is my dog called again?")
        request = server.requests[before].messages
        system, window = request[0]["content"], request[1:-1]
        assert "My dog is called Biscuit" in system and "Excerpts from earlier" in system
        assert "] Sam: My dog is called Biscuit" in system, "a recalled line carries its date and who said it"
        assert not any("Biscuit" in message["content"] for message in window), "beyond the window: only recalled"
        assert request[-1]["content"] == "What is my dog called again?"
    finally:
        await service.close()


async def test_a_conversation_that_fits_the_window_costs_no_search(migrated_url: str, server) -> None:  # type: ignore[no-untyped-def]
    database = create_engine(migrated_url)
    searches: list[str] = []

    def count_searches(_connection, _cursor, statement: str, *_args: object) -> None:  # type: ignore[no-untyped-def]
        if "MATCH" in statement or "@@" in statement:
            searches.append(statement)

    event.listen(database.sync_engine, "before_cursor_execute", count_searches)
    settings = settings_for(history_token_budget=3000, summary_enabled=False)
    store = history_store(database, window_budget=3000)
    service = service_for(settings, store, engine_chain([api_engine(server.base_url, "brain")]), EstimatedTokens())
    try:
        await _say(service, DM, "My dog is called Biscuit.")
        await _chatter(service, DM, 5)
        await _say(service, DM, "What is my dog called?")
        assert searches == []
        assert "Excerpts from earlier" not in server.requests[-1].messages[0]["content"]
    finally:
        await service.close()


async def test_after_a_reset_nothing_erased_reaches_an_engine_by_recall_or_summary(migrated_url: str, server) -> None:  # type: ignore[no-untyped-def]
    server.script = lambda body: _summary_repeating_the_transcript(body) if _is_summary_request(body) else Reply()
    service = await _service(migrated_url, server)
    try:
        await _say(service, DM, SECRET)
        await _chatter(service, DM, 12)
        await service.memory_idle()
        report = await service.memory(DM)
        assert report.recall_enabled and report.summary_enabled
        assert report.summary is not None, "the summary job ran in the background"
        assert any(_is_summary_request(request.body) for request in server.requests)

        await service.reset(DM)
        assert (await service.memory(DM)).summary is None
        after_reset = len(server.requests)
        await _say(service, DM, "What is my locker code? The 4417 one, or locker code is what?")
        await _chatter(service, DM, 12)
        await _say(service, DM, "Remind me of my locker code please")
        await service.memory_idle()
        erased = [text for text in _requests_text(server, after_reset) if SECRET[:20] in text]
        assert erased == []
        assert not any("Small talk number 11: " in text for text in _requests_text(server, after_reset)[:3])
    finally:
        await service.close()


async def test_forget_while_a_summary_job_runs_stops_it_and_nothing_erased_is_sent_again(
    migrated_url: str, server
) -> None:  # type: ignore[no-untyped-def]
    server.script = lambda body: Hang() if _is_summary_request(body) else Reply()
    service = await _service(migrated_url, server, engine_timeout_s=20)
    try:
        await _say(service, GUILD, "In this server too: " + SECRET)
        await _say(service, DM, SECRET)
        await _chatter(service, DM, 12)
        await _wait_for(lambda: any(_is_summary_request(request.body) for request in server.requests))

        forgotten = await asyncio.wait_for(service.forget(1), timeout=10)
        assert forgotten >= 2 * 14
        after_forget = len(server.requests)
        # Stopped by the forget, not left to time out (20 s) and save nothing: it sends nothing more.
        await asyncio.wait_for(service.memory_idle(), timeout=1)
        server.script = lambda body: _summary_repeating_the_transcript(body) if _is_summary_request(body) else Reply()
        for key in (DM, GUILD):
            assert (await service.memory(key)).messages == 0
            await _say(service, key, "What is my locker code?")
            await _chatter(service, key, 8)
        await service.memory_idle()
        assert [text for text in _requests_text(server, after_forget) if "4417" in text] == []
    finally:
        await service.close()


async def _wait_for(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)
