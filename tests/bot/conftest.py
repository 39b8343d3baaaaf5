"""End-to-end fixtures: the real discord.py client against the fake Discord API, the real huggingface_hub
client against local OpenAI-compatible servers (brain and HF), and a real SQLite file with the migrations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from app.bot.bot import KortanaBot
from app.bot.runner import build_bot
from app.config import Settings
from app.conversation.service import ConversationService
from app.conversation.setup import open_service
from tests.fakes.discord import BotRunner, FakeDiscord
from tests.fakes.openai_server import FakeChatServer, Reply
from tests.helpers import settings_for

HF_SECRET = "hf_" + "t" * 34


@dataclass
class World:
    fake: FakeDiscord
    brain: FakeChatServer
    hf: FakeChatServer
    database_url: str
    overrides: dict = field(default_factory=dict)
    service: ConversationService | None = None
    bot: KortanaBot | None = None
    runner: BotRunner | None = None

    def settings(self) -> Settings:
        values = dict(
            database_url=self.database_url,
            discord_bot_token="fake-token",
            brain="http",
            brain_url=self.brain.base_url,
            brain_timeout_seconds=3,
            hf_base_url=self.hf.base_url,
            huggingface_api_key=HF_SECRET,
            hf_timeout_seconds=3,
            user_cooldown_seconds=0,
            max_tokens=100,
        )
        values.update(self.overrides)
        return settings_for(**values)

    async def start(self, **overrides: object) -> KortanaBot:
        self.overrides.update(overrides)
        settings = self.settings()
        self.service = await open_service(settings)
        self.bot = build_bot(self.service, settings, "test", edit_interval=0.2)
        self.runner = await self.fake.start_bot(self.bot)
        return self.bot

    async def stop(self) -> None:
        if self.runner is not None:
            await self.bot.shutdown()  # as SIGTERM does: running turns end before the connection closes
            await self.runner.stop()
            self.runner = None
        if self.service is not None:
            await self.service.close()
            self.service = None

    async def restart(self, **overrides: object) -> KortanaBot:
        await self.stop()
        return await self.start(**overrides)


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


# --- what a user does and sees ---------------------------------------------------------------------------


async def mention(world: World, text: str, **kwargs) -> dict:
    return await world.fake.user_message(world.fake.channel, f"<@{world.fake.bot_id}> {text}", **kwargs)


async def answer_to(world: World, message: dict, count: int = 1, timeout: float = 8) -> list[str]:
    """The final texts of the bot's messages that answer `message` (replies to it and their continuations)."""
    fake = world.fake
    channel = int(message["channel_id"])

    def answered():
        replies = [m for m in fake.bot_messages(channel) if int(m.id) > int(message["id"])]
        return len(replies) >= count and world.bot.active_turns == 0

    await fake.wait_for(answered, timeout=timeout, what=f"{count} answer(s)")
    return [m.content for m in fake.bot_messages(channel) if int(m.id) > int(message["id"])]


async def interaction_text(world: World, interaction) -> str:
    """What the caller finally sees: the first followup (it replaces "thinking…") or the original response."""

    def text():
        shown = interaction.followups or ([interaction.original] if interaction.original else [])
        return shown[0].content if shown and shown[0].content else None

    return await world.fake.wait_for(text, what=f"/{interaction.name} reply")


def user_contents(request) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] != "system"]
