"""Builders for the objects tests wire together: settings, an engine chain, a history store, a conversation
service, and the environment of a child process. Fixtures (in the conftest modules) call these; so do the
workers that tests start in other processes (tests/workers/).

Each builder takes what a test varies as arguments and keeps the test defaults in one place: the test
system prompt, a 3,000-token budget, short engine deadlines, and echo as the last resort.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.conversation.service import ConversationService
from app.conversation.tokens import EstimatedTokens, TokenCounter
from app.engines import ECHO, Engine
from app.engines.chain import EngineChain, Tier
from app.engines.echo import EchoEngine
from app.storage import HistoryStore, create_engine, open_history_store

TEST_SYSTEM_PROMPT = "You are Kor'tana, a test companion."
TEST_BUDGET = 3000

#: Settings a developer's shell may carry that would change what `python -m app` does in a child process.
SETTING_NAMES = ("BRAIN", "BRAIN_URL", "HF_TOKEN", "HUGGINGFACE_API_KEY", "HF_BASE_URL", "DATABASE_URL", "TOKENIZER")


def settings_for(**values: object) -> Settings:
    """Settings from `values` and the environment only: a developer's .env file never leaks into a test."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def engine_chain(engines: Sequence[Engine] = (), *, deadline_s: float = 5.0, max_tokens: int = 64) -> EngineChain:
    """`engines` in order, each with the same total deadline, then echo."""
    return EngineChain([Tier(engine, deadline_s) for engine in engines], EchoEngine(), max_tokens=max_tokens)


def history_store(
    database: str | AsyncEngine, *, window_budget: int | None = None, timeout_s: float | None = None
) -> HistoryStore:
    """The store for a database URL (its own engine, disposed when the store closes) or for an engine.

    `timeout_s` is the database timeout (SQLite's busy timeout); None keeps the application's default, and so
    does `window_budget`.
    """
    if isinstance(database, str):
        database = create_engine(database) if timeout_s is None else create_engine(database, timeout_s=timeout_s)
    elif timeout_s is not None:
        raise ValueError("timeout_s applies to a URL; an engine already has its timeout")
    if window_budget is None:
        return open_history_store(database, never_sent_engine=ECHO)
    return open_history_store(database, window_budget, never_sent_engine=ECHO)


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


def child_environment(*dropped: str, **values: str) -> dict[str, str]:
    """This process's environment for a child, without the Kor'tana settings (and `dropped`), plus `values`."""
    removed = {*SETTING_NAMES, *dropped}
    return {**{name: value for name, value in os.environ.items() if name not in removed}, **values}
