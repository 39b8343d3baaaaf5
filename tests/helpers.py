"""The test kit's one helper module: what tests, fixtures and workers build, and the helpers they share.

Fixtures (in the conftest modules) call these; so do the workers that tests start in other processes
(tests/workers/) and the benchmarks that drive the fakes (app/bench/). Import from `tests.helpers` only.

Map:
- settings and services: `settings_for`, `engine_chain`, `history_store`, `conversation_service`, with the test
  defaults in one place (the test system prompt, a 3,000-token budget, short engine deadlines, echo last);
- child processes: `child_environment`, the only builder of a child's environment;
- engines: `api_engine` (a ChatApiEngine with short test timeouts), `BreakerWitness`, and what a chain reports and
  shows (`status_of`, `shown_text`);
- the bot end to end: `World` (the fake Discord, brain and HF servers, and the bot on the test's database),
  `start_shard`, and what a user does and sees: `mention`, `answer_to`, `interaction_text`, `user_contents`.

Each builder takes what a test varies as arguments and keeps the defaults here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from pydantic import AliasChoices
from sqlalchemy.ext.asyncio import AsyncEngine

from app.bot.bot import KortanaBot
from app.bot.runner import build_bot
from app.config import Settings
from app.conversation.service import ConversationService
from app.conversation.setup import open_service, open_store
from app.conversation.tokens import EstimatedTokens, TokenCounter
from app.engines import ChatMessage, Engine, EngineStarted
from app.engines.chain import EngineChain, EngineStatus, Tier
from app.engines.chat_api import ChatApiEngine
from app.engines.echo import EchoEngine
from app.storage import HistoryStore, create_engine

if TYPE_CHECKING:
    from tests.fakes.discord import BotRunner, FakeDiscord
    from tests.fakes.openai_server import FakeChatServer, RecordedRequest

TEST_SYSTEM_PROMPT = "You are Kor'tana, a test companion."
TEST_BUDGET = 3000

# --- settings and services -----------------------------------------------------------------------------------


def settings_for(**values: object) -> Settings:
    """Settings from `values` and the environment only: a developer's .env file never leaks into a test."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def engine_chain(engines: Sequence[Engine] = (), *, deadline_s: float = 5.0, max_tokens: int = 64) -> EngineChain:
    """`engines` in order, each with the same total deadline, then echo."""
    return EngineChain([Tier(engine, deadline_s) for engine in engines], EchoEngine(), max_tokens=max_tokens)


def history_store(
    database: str | AsyncEngine, *, window_budget: int = 4096, timeout_s: float | None = None
) -> HistoryStore:
    """A service's store (`open_store`: echo's replies stay out of windows) for a database URL (its own engine,
    disposed when the store closes) or for an engine. `window_budget` is the largest history budget a turn asks
    for; `timeout_s` is the database timeout (SQLite's busy timeout), None for the application's default."""
    if isinstance(database, str):
        database = create_engine(database) if timeout_s is None else create_engine(database, timeout_s=timeout_s)
    elif timeout_s is not None:
        raise ValueError("timeout_s applies to a URL; an engine already has its timeout")
    return open_store(database, window_budget)


def conversation_service(
    store: HistoryStore,
    engines: Sequence[Engine] = (),
    *,
    chain: EngineChain | None = None,
    budget: int = TEST_BUDGET,
    counter: TokenCounter | None = None,
    deadline_s: float = 5.0,
    max_tokens: int = 64,
    system_prompt: str = TEST_SYSTEM_PROMPT,
    brain_name: str | None = None,
    save_answer_within_s: float | None = None,
) -> ConversationService:
    """A service on `store` answering from `engines` (or from a ready `chain`), with the test defaults.

    The brain is the first engine, as `open_service` makes it, unless `brain_name` says otherwise.
    `save_answer_within_s` None keeps the service's default.
    """
    if chain is not None and engines:
        raise ValueError("give engines or a chain, not both")
    options: dict[str, float] = {}
    if save_answer_within_s is not None:
        options["save_answer_within_s"] = save_answer_within_s
    return ConversationService(
        store,
        chain or engine_chain(engines, deadline_s=deadline_s, max_tokens=max_tokens),
        counter or EstimatedTokens(),
        system_prompt=system_prompt,
        history_token_budget=budget,
        brain_name=brain_name or (engines[0].name if engines else None),
        **options,
    )


#: What the `open_test_service` fixture gives: `await open_service(engines, budget=..., ...)`.
ServiceFactory = Callable[..., Awaitable[ConversationService]]

# --- child processes ---------------------------------------------------------------------------------------


def _setting_names() -> frozenset[str]:
    """Every environment variable `Settings` reads (its fields' names and aliases, as pydantic-settings matches
    them: in any case)."""
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        names.add(name.upper())
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
    return frozenset(names)


#: The Kor'tana settings a developer's shell may carry, which would change what `python -m app` does in a child.
SETTING_NAMES = _setting_names()


def child_environment(*dropped: str, **values: str) -> dict[str, str]:
    """This process's environment for a child, without any Kor'tana setting and without `dropped`, plus `values`.

    `dropped` are names or shell-style patterns (`"HF_HUB_*"`).
    """

    def kept(name: str) -> bool:
        return name.upper() not in SETTING_NAMES and not any(fnmatchcase(name, pattern) for pattern in dropped)

    return {**{name: value for name, value in os.environ.items() if kept(name)}, **values}


# --- engines -------------------------------------------------------------------------------------------------

#: What the `make_api_engine` fixture gives: `api_engine` itself.
MakeApiEngine = Callable[..., ChatApiEngine]


def api_engine(base_url: str, name: str = "brain", **overrides: object) -> ChatApiEngine:
    """A ChatApiEngine on `base_url` with short test timeouts; `overrides` are ChatApiEngine's own words."""
    settings: dict[str, object] = dict(
        model="fake/model", api_key=None, timeout_s=2.0, temperature=0.8, context_window=4096
    )
    settings.update(overrides)
    return ChatApiEngine(name=name, base_url=base_url, **settings)  # type: ignore[arg-type]


def status_of(chain: EngineChain, name: str) -> EngineStatus:
    """The chain's status report of the engine `name`."""
    return next(status for status in chain.status() if status.name == name)


def shown_text(items: Sequence[object]) -> str:
    """The text a front end ends up showing of a chain's stream: an engine that replaces a partial answer starts it
    again."""
    text = ""
    for item in items:
        if isinstance(item, EngineStarted):
            text = "" if item.replaces_partial else text
        elif isinstance(item, str):
            text += item
    return text


class BreakerWitness:
    """Wraps an engine of `chain` and notes every call that reaches it while its breaker is open: a call the
    breaker should have spared it (none is a half-open probe while the breaker's period has not run out).
    The failover benchmark uses it too."""

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


# --- the bot end to end ---------------------------------------------------------------------------------------

HF_SECRET = "hf_" + "t" * 34


@dataclass
class World:
    """The real discord.py client against the fake Discord API, the real huggingface_hub client against local
    chat servers (brain and HF), and the bot's database; `start`, `restart` and `stop` run the bot in it."""

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


async def start_shard(world: World, shard_id: int, received: dict[int, list]) -> tuple[KortanaBot, BotRunner]:
    """One bot "process" of two shards (its own service and database pool) in `world`; the guild ids of the
    messages its gateway connection delivers are noted in `received[shard_id]`. The caller stops the runner and
    closes `bot.service`."""
    settings = world.settings().model_copy(update={"shard_count": 2, "shard_ids": [shard_id]})
    service = await open_service(settings)
    bot = build_bot(service, settings, "test", edit_interval=0.2)
    handle = bot.on_message

    async def recording(message) -> None:  # what this process's gateway connection delivered
        received[shard_id].append(message.guild.id if message.guild else None)
        await handle(message)

    bot.on_message = recording  # type: ignore[method-assign]
    try:
        return bot, await world.fake.start_bot(bot)
    except BaseException:
        await service.close()
        raise


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


def user_contents(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] != "system"]
