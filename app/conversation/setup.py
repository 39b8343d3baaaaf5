"""Opening a ready-to-use ConversationService from the settings: database up and migrated, chain built."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings, SettingsError
from app.conversation.server_settings import Defaults, ServerSettings
from app.conversation.service import ConversationService, persona_fits
from app.conversation.summary import open_summary_writer, summary_engine_order
from app.conversation.tokens import EngineTokens, NeverFailingCounter, TokenCounter, token_counter
from app.conversation.window import CUT_MARKER, Text, fixed_cost
from app.engines import ECHO, CountsTokens, Engine
from app.engines.chain import EngineChain
from app.engines.factory import build_brain, build_chain, build_hf, choose_local_model
from app.storage import (
    AppState,
    DatabaseUnavailable,
    HistoryStore,
    ServerSettingsStore,
    create_engine,
    describe,
    driver_error,
    is_login_refused,
    is_lost_connection,
    migrate,
    open_history_store,
)

log = logging.getLogger(__name__)

__all__ = ["migrate_when_reachable", "open_service", "open_store", "service_for"]


async def open_service(settings: Settings) -> ConversationService:
    database = create_engine(
        settings.database_url, pool_size=settings.database_pool_size, timeout_s=settings.database_timeout_seconds
    )
    try:
        await migrate_when_reachable(database, settings)
        local_model = await asyncio.to_thread(choose_local_model, settings)  # may download it
        brain, hf = build_brain(settings, local_model, local_model_chosen=True), build_hf(settings)
        chain = build_chain(settings, brain, hf)
        summary_engines = summary_engine_order(settings, brain, hf)
        counter = _counter_for(settings, brain)
        _check_budget_fits_system_prompt(settings, counter)
        _check_summary_fits_memory(settings)
        _check_allowed_models_have_tiers(settings, chain)
        await chain.start()
    except BaseException:
        await database.dispose()
        raise
    return service_for(
        settings,
        open_store(database, settings.history_token_budget),
        chain,
        counter,
        database_description=describe(settings.database_url),
        brain_name=brain.name if brain else None,
        app_state=AppState(database),
        summary_engines=summary_engines,
    )


def service_for(
    settings: Settings,
    store: HistoryStore,
    chain: EngineChain,
    counter: TokenCounter,
    *,
    database_description: str = "",
    brain_name: str | None = None,
    app_state: AppState | None = None,
    summary_engines: Sequence[str] = (),
) -> ConversationService:
    """The service of `settings` (its prompt, budget and memory) over a store and a chain already opened; the
    benchmarks open theirs with it too, so they measure what the bot runs. `summary_engines`: the chain's engines
    that may write summaries, strongest first (`summary_engine_order`); none: no summaries."""
    server_settings = ServerSettings(
        ServerSettingsStore(store.database),
        Defaults(
            persona=settings.system_prompt,
            open_channels=frozenset(settings.chat_channel_ids),
            cooldown_s=settings.user_cooldown_seconds,
            daily_tokens=settings.daily_token_limit or None,
            dm_enabled=settings.dm_enabled,
        ),
        cache_s=settings.settings_cache_seconds,
        allowed_models=settings.allowed_models,
        persona_max_chars=settings.persona_max_chars,
        persona_fits=functools.partial(
            persona_fits, counter=NeverFailingCounter(counter), budget=settings.history_token_budget
        ),
    )
    return ConversationService(
        store,
        chain,
        counter,
        system_prompt=settings.system_prompt,
        history_token_budget=settings.history_token_budget,
        database_description=database_description,
        brain_name=brain_name,
        # Every write waits up to the timeout for the database (SQLite's busy timeout): three of them.
        save_answer_within_s=3 * settings.database_timeout_seconds,
        app_state=app_state,
        recall=settings.recall_enabled,
        memory_share=settings.recall_share,
        recall_max_turns=settings.recall_max_turns,
        summaries=open_summary_writer(settings, store, chain, counter, summary_engines),
        server_settings=server_settings,
        show_thinking_time=settings.show_thinking_time,
        image_tokens=settings.image_tokens,
    )


def open_store(database: AsyncEngine, history_token_budget: int) -> HistoryStore:
    """The history store of a service: echo's replies are stored and shown, and never sent to a model."""
    return open_history_store(database, window_budget=history_token_budget, never_sent_engine=ECHO)


async def migrate_when_reachable(
    database: AsyncEngine, settings: Settings, change: Callable[[AsyncEngine], Awaitable[None]] = migrate
) -> None:
    """Run the migrations (or another schema `change`), retrying with back-off while the database is not
    reachable yet; any failure is DatabaseUnavailable with a one-line message, which the command line prints
    before it exits with 1."""
    deadline = time.monotonic() + settings.database_connect_retry_seconds
    delay = 0.5
    while True:
        try:
            await change(database)
            return
        except Exception as error:
            if is_login_refused(error):
                raise DatabaseUnavailable(
                    f"The database at {describe(settings.database_url)} refused the login: "
                    f"{driver_error(error)}"
                ) from None
            if not is_lost_connection(error):
                raise DatabaseUnavailable(
                    f"Cannot migrate the database at {describe(settings.database_url)}: {_migration_cause(error)}"
                ) from None
            cause = error
        if time.monotonic() + delay > deadline:
            raise DatabaseUnavailable(
                f"Cannot reach the database at {describe(settings.database_url)} "
                f"after {settings.database_connect_retry_seconds:g} s ({type(cause).__name__})"
            ) from None
        log.warning("Database not reachable yet (%s); retrying in %.1f s", type(cause).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def _migration_cause(error: Exception) -> str:
    """The driver's (or Alembic's) own first line: without the SQL that SQLAlchemy's wrapper adds."""
    orig = driver_error(error)
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__


def _counter_for(settings: Settings, brain: Engine | None) -> TokenCounter:
    if settings.tokenizer:
        try:
            return token_counter(settings.tokenizer)
        except Exception as error:
            raise SettingsError(f"Invalid setting TOKENIZER: cannot load {settings.tokenizer!r} ({error})") from None
    if isinstance(brain, CountsTokens):
        return EngineTokens(f"{brain.name} model's tokenizer", brain.count_tokens)
    return token_counter(None)


def _check_summary_fits_memory(settings: Settings) -> None:
    """A summary longer than the memory share could be written but never sent."""
    share = int(settings.recall_share * settings.history_token_budget)
    if settings.summary_enabled and settings.summary_max_tokens >= share:
        raise SettingsError(
            f"Invalid setting SUMMARY_MAX_TOKENS: {settings.summary_max_tokens} does not fit in the memory share "
            f"(RECALL_SHARE × HISTORY_TOKEN_BUDGET = {share}); use less, or a larger share or budget"
        )


def _check_allowed_models_have_tiers(settings: Settings, chain: EngineChain) -> None:
    """A model a server could pick but no tier could ask for would be a choice that silently does nothing."""
    served = chain.models_served()
    for allowed in settings.allowed_models:
        if allowed.tier not in served:
            raise SettingsError(
                f"Invalid setting ALLOWED_MODELS: {allowed} names the {allowed.tier} tier, which is not configured "
                "here or cannot be asked for another model (configured: "
                f"{', '.join(served) or 'none that can'})"
            )


def _check_budget_fits_system_prompt(settings: Settings, counter: TokenCounter) -> None:
    needed = fixed_cost(Text.counted(settings.system_prompt, counter), Text.counted(CUT_MARKER, counter)) + 32
    if settings.history_token_budget < needed:
        raise SettingsError(
            f"Invalid setting HISTORY_TOKEN_BUDGET: {settings.history_token_budget} leaves no room beside the "
            f"system prompt; use at least {needed}"
        )
