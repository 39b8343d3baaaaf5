"""Fixtures for engine tests: fake chat servers, the real huggingface_hub client pointed at them, and a witness
of the calls an open breaker let through (the failover benchmark uses it too)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing

import pytest

from app.engines import ChatMessage, Engine
from app.engines.chain import EngineChain
from app.engines.chat_api import ChatApiEngine
from tests.fakes.openai_server import FakeChatServer, Reply, refused_base_url

MakeApiEngine = Callable[..., ChatApiEngine]


@pytest.fixture
async def brain_server() -> AsyncIterator[FakeChatServer]:
    async with FakeChatServer(default=Reply("Hello from the brain!", chunks=3)) as server:
        yield server


@pytest.fixture
async def hf_server() -> AsyncIterator[FakeChatServer]:
    async with FakeChatServer(default=Reply("Hello from Hugging Face!", chunks=3)) as server:
        yield server


@pytest.fixture
def refused_url() -> Iterator[str]:
    with refused_base_url() as url:
        yield url


@pytest.fixture
def make_api_engine() -> MakeApiEngine:
    """`make_api_engine(base_url, name="brain", **overrides)`: a ChatApiEngine with short test timeouts."""

    def make(base_url: str, name: str = "brain", **overrides: object) -> ChatApiEngine:
        settings: dict[str, object] = dict(
            model="fake/model", api_key=None, timeout_s=2.0, temperature=0.8, context_window=4096
        )
        settings.update(overrides)
        return ChatApiEngine(name=name, base_url=base_url, **settings)  # type: ignore[arg-type]

    return make



class BreakerWitness:
    """Wraps an engine of `chain` and notes every call that reaches it while its breaker is open: a call the
    breaker should have spared it (none is a half-open probe while the breaker's period has not run out)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.context_window = engine.context_window
        self.chain: EngineChain | None = None
        self.calls = 0
        self.calls_while_open = 0

    async def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> AsyncIterator[str]:
        assert self.chain is not None
        self.calls += 1
        if next(status for status in self.chain.status() if status.name == self.name).breaker == "open":
            self.calls_while_open += 1
        async with aclosing(self.engine.stream(messages, max_tokens)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def aclose(self) -> None:
        await self.engine.aclose()
