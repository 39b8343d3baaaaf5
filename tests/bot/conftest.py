"""End-to-end fixtures: the real discord.py client against the fake Discord API, the real huggingface_hub
client against local OpenAI-compatible servers (brain and HF), and the test's database with the migrations.
`World` and what a user does and sees are in tests.helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import World


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    """A bot on the test's database (a SQLite file, and PostgreSQL when one is given)."""
    async with FakeDiscord() as fake, FakeChatServer(default=Reply("Hello from the brain!", chunks=3)) as brain, \
            FakeChatServer(default=Reply("Hello from Hugging Face!", chunks=2)) as hf:
        world = World(fake, brain, hf, database_url)
        try:
            yield world
        finally:
            await world.stop()
