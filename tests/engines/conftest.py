"""Fixtures for engine tests: fake chat servers and the real huggingface_hub client pointed at them
(`api_engine` and `BreakerWitness` are in tests.helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fakes.openai_server import FakeChatServer, Reply, refused_base_url
from tests.helpers import MakeApiEngine, api_engine


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
    return api_engine
