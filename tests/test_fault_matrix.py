"""The fault matrix: every way an HTTP engine fails, against each HTTP tier, with several users at once.

Each cell runs whole turns through the real ConversationService on a migrated database (SQLite, and
PostgreSQL when configured), with the real huggingface_hub client against local fake servers. The faulty tier
is asked first (the brain normally; Hugging Face through `prefer`, as `/ask` does) and the other tier is
healthy. For every cell: each turn gets an answer within the stated bound, from the right engine; the database
holds each user message once, followed by exactly its one answer; the faulty engine's breaker is open exactly
when the fault says the engine is unhealthy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass

import pytest

from app.conversation.events import FinalReply
from app.conversation.service import ConversationService
from app.engines.chat_api import ChatApiEngine
from app.storage import ConversationKey, StoredMessage
from tests.fakes import openai_server as fake
from tests.helpers import ServiceFactory

# Long enough for a healthy answer on a loaded machine (0.4 s was not: twice in full runs a healthy engine timed out
# and the next one answered), short enough that the hanging and stalling faults end each case within seconds.
DEADLINE_S = 1.0
USERS = 4
TURNS_PER_USER = 2
BRAIN_TEXT = "The brain answers."
HF_TEXT = "Hugging Face answers."


@dataclass(frozen=True)
class Fault:
    behaviour: fake.Behaviour | None  # None: the server refuses connections
    engine_unhealthy: bool  # should the engine's breaker open?
    faulty_engine_answers: bool = False  # the fault is in the text only: the engine still answers, made valid


FAULTS = {
    "500": Fault(fake.HttpError.server_error(), engine_unhealthy=True),
    "503-retry-after": Fault(fake.HttpError.unavailable(retry_after=30), engine_unhealthy=True),
    "429": Fault(fake.HttpError.rate_limited(), engine_unhealthy=True),
    "401": Fault(fake.HttpError.unauthorized(), engine_unhealthy=True),
    "400": Fault(fake.HttpError(400, {"error": "rejected by the content policy"}), engine_unhealthy=False),
    "hang": Fault(fake.Hang(), engine_unhealthy=True),
    "refused": Fault(None, engine_unhealthy=True),
    "malformed-json": Fault(fake.MalformedJson(), engine_unhealthy=True),
    "error-event": Fault(fake.StreamErrorEvent(text_before="I was saying "), engine_unhealthy=True),
    "stall-mid-stream": Fault(fake.Reply("I was saying that", chunks=4, stall_after_chunks=2), engine_unhealthy=True),
    "lone-surrogates": Fault(fake.LoneSurrogates(), engine_unhealthy=False, faulty_engine_answers=True),
}
TIERS = {"brain": "brain", "hf": "huggingface"}


@dataclass(frozen=True)
class Answered:
    reply: FinalReply
    seconds: float


async def one_turn(service: ConversationService, key: ConversationKey, text: str, prefer: str | None) -> Answered:
    started = time.perf_counter()
    replies = []
    async with aclosing(service.respond(key, "tester", text, prefer=prefer)) as events:
        async for event in events:
            if isinstance(event, FinalReply):
                replies.append(event)
    [reply] = replies
    return Answered(reply, time.perf_counter() - started)


async def one_user(service: ConversationService, key: ConversationKey, prefer: str | None) -> list[Answered]:
    texts = [f"message {turn} of user {key.user_id}" for turn in range(TURNS_PER_USER)]
    return [await one_turn(service, key, text, prefer) for text in texts]


async def stored_history(service: ConversationService, key: ConversationKey) -> list[StoredMessage]:
    """The history once every answer of the user is stored (a shown answer's write may trail its turn)."""
    for _ in range(100):
        history = await service.export(key)
        if len(history) >= 2 * TURNS_PER_USER:
            return history
        await asyncio.sleep(0.05)
    return await service.export(key)


@contextmanager
def server_url(server: fake.FakeChatServer, fault: Fault | None) -> Iterator[str]:
    if fault is not None and fault.behaviour is None:
        with fake.refused_base_url() as url:
            yield url
        return
    if fault is not None:
        server.default = fault.behaviour  # type: ignore[assignment]
    yield server.base_url


def api_engine(name: str, base_url: str) -> ChatApiEngine:
    # The read timeout is far above the deadline: the chain's total deadline must end hangs and stalls.
    return ChatApiEngine(name, "fake/model", base_url, None, timeout_s=10.0, temperature=0.8, context_window=4096)


@pytest.mark.parametrize("tier", list(TIERS), ids=lambda tier: f"{tier}-faulty")
@pytest.mark.parametrize("fault_name", list(FAULTS))
async def test_fault_matrix(open_test_service: ServiceFactory, fault_name: str, tier: str) -> None:
    fault = FAULTS[fault_name]
    faulty, healthy = ("brain", "huggingface") if tier == "brain" else ("huggingface", "brain")
    texts = {"brain": BRAIN_TEXT, "huggingface": HF_TEXT}
    async with fake.FakeChatServer(default=fake.Reply(BRAIN_TEXT, chunks=2)) as brain_server, \
            fake.FakeChatServer(default=fake.Reply(HF_TEXT, chunks=2)) as hf_server:
        servers = {"brain": brain_server, "huggingface": hf_server}
        with server_url(servers["brain"], fault if faulty == "brain" else None) as brain_url, \
                server_url(servers["huggingface"], fault if faulty == "huggingface" else None) as hf_url:
            service = await open_test_service(
                [api_engine("brain", brain_url), api_engine("huggingface", hf_url)], deadline_s=DEADLINE_S
            )
            prefer = "huggingface" if faulty == "huggingface" else None
            keys = [ConversationKey(user, "fault-matrix") for user in range(1, USERS + 1)]

            answered = await asyncio.gather(*(one_user(service, key, prefer) for key in keys))
            histories = [await stored_history(service, key) for key in keys]
            status = await service.status()

    expected_engine = faulty if fault.faulty_engine_answers else healthy
    made_valid = isinstance(fault.behaviour, fake.LoneSurrogates)
    expected_text = fault.behaviour.shown if made_valid else texts[expected_engine]  # type: ignore[union-attr]
    bound = service.answer_bound_s
    for key, turns, history in zip(keys, answered, histories, strict=True):
        assert [turn.reply.engine for turn in turns] == [expected_engine] * TURNS_PER_USER
        assert [turn.reply.text for turn in turns] == [expected_text] * TURNS_PER_USER
        assert all(turn.seconds <= bound for turn in turns), ([turn.seconds for turn in turns], bound)
        expected_history = []
        for turn in range(TURNS_PER_USER):
            expected_history += [("user", f"message {turn} of user {key.user_id}", None),
                                 ("assistant", expected_text, expected_engine)]
        assert [(message.role, message.content, message.engine) for message in history] == expected_history
        for message in history:
            message.content.encode("utf-8")  # stored text is valid

    breakers = {engine.name: engine.breaker for engine in status.engines}
    assert breakers[faulty] == ("open" if fault.engine_unhealthy else "closed")
    assert breakers[healthy] == "closed"
