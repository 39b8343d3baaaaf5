"""Kor'tana's storage: conversations and their messages in SQLite or PostgreSQL; this module is its face.

Other layers import storage's names from here only. Inside, imports point one way, each module only to those
before it: records, failures, models → app_state, database, _statements, window_cache, sqlite_writer,
server_settings, usage → search (the full-text query) → history (the abstract HistoryStore) → sqlite_history,
postgres_history → this face, which picks one of the two.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.storage.app_state import AppState
from app.storage.database import create_engine, describe, downgrade, migrate
from app.storage.failures import (
    DatabaseUnavailable,
    StorageUnavailable,
    driver_error,
    is_login_refused,
    is_lost_connection,
    short_cause,
)
from app.storage.history import HistoryStore
from app.storage.models import conversations, messages
from app.storage.postgres_history import PostgresHistoryStore
from app.storage.records import (
    AccessRule,
    ConversationKey,
    FoundMessage,
    GuildSettingsRecord,
    MemoryStats,
    PlaceSettings,
    StoredImage,
    StoredMessage,
    Summary,
    SummaryDraft,
    TurnContext,
    TurnStart,
    UsageCharge,
    UsageTotal,
)
from app.storage.server_settings import RULE_KINDS, RULES, ServerSettingsStore
from app.storage.sqlite_history import SqliteHistoryStore
from app.storage.usage import UsageStore

__all__ = [
    "RULES",
    "RULE_KINDS",
    "AccessRule",
    "AppState",
    "ConversationKey",
    "DatabaseUnavailable",
    "FoundMessage",
    "GuildSettingsRecord",
    "HistoryStore",
    "MemoryStats",
    "PlaceSettings",
    "ServerSettingsStore",
    "StorageUnavailable",
    "StoredImage",
    "StoredMessage",
    "Summary",
    "SummaryDraft",
    "TurnContext",
    "TurnStart",
    "UsageCharge",
    "UsageStore",
    "UsageTotal",
    "conversations",
    "create_engine",
    "describe",
    "downgrade",
    "driver_error",
    "is_login_refused",
    "is_lost_connection",
    "messages",
    "migrate",
    "open_history_store",
    "short_cause",
]


def open_history_store(
    engine: AsyncEngine, window_budget: int = 4096, *, never_sent_engine: str | None
) -> HistoryStore:
    """The store for the engine's database. `window_budget` is the largest history budget a turn asks for; the
    replies of `never_sent_engine` (the last-resort echo) are kept and shown but left out of every window."""
    if engine.dialect.name == "sqlite":
        return SqliteHistoryStore(engine, window_budget, never_sent_engine=never_sent_engine)
    return PostgresHistoryStore(engine, never_sent_engine=never_sent_engine)
