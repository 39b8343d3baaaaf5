"""Fixtures for engine tests: fake chat servers, the real huggingface_hub client pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

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

