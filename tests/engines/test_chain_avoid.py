"""Another engine: the chain asks the avoided engine last of its tiers, and still asks it when it is the only
healthy one (the real HTTP engines against the fake chat servers)."""

from __future__ import annotations

from app.engines import ChatMessage
from tests.fakes.openai_server import FakeChatServer, HttpError, Reply
from tests.helpers import api_engine, engine_chain, shown_text

ASKED = [ChatMessage(role="user", content="hello")]


async def answer(chain, **options) -> str:
    return shown_text([item async for item in chain.stream(lambda budget: ASKED, 1000, **options)])


async def test_the_avoided_engine_is_asked_last() -> None:
    async with FakeChatServer(default=Reply("brain")) as brain, FakeChatServer(default=Reply("hf")) as hf:
        chain = engine_chain([api_engine(brain.base_url, "brain"), api_engine(hf.base_url, "huggingface")])
        try:
            assert await answer(chain, avoid="brain") == "hf"
            assert await answer(chain, prefer="huggingface", avoid="huggingface") == "brain"
            assert len(brain.requests) == 1 and len(hf.requests) == 1
        finally:
            await chain.aclose()


async def test_the_avoided_engine_still_answers_when_the_others_fail() -> None:
    async with FakeChatServer(default=Reply("brain")) as brain, FakeChatServer(default=HttpError.unauthorized()) as hf:
        chain = engine_chain([api_engine(brain.base_url, "brain"), api_engine(hf.base_url, "huggingface")])
        try:
            assert await answer(chain, avoid="brain") == "brain"
            assert len(hf.requests) == 1
        finally:
            await chain.aclose()
