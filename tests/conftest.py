"""Shared fixtures: a fresh, migrated database per test — a SQLite file, and PostgreSQL when one is given.

PostgreSQL runs when KORTANA_TEST_POSTGRES_URL names a server (CI starts a throwaway one); without it the
PostgreSQL half of each database test is skipped with that reason. With KORTANA_REQUIRE_POSTGRES=1 (CI) a
missing server fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from sqlalchemy import text

import app.storage.sqlite_history
from app.conversation.service import ConversationService
from app.conversation.tokens import TokenCounter
from app.engines import Engine
from app.storage import create_engine, migrate
from tests.helpers import TEST_BUDGET, ServiceFactory, conversation_service, history_store

POSTGRES_URL = os.environ.get("KORTANA_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("KORTANA_REQUIRE_POSTGRES") == "1"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """An empty database's URL (nothing migrated yet)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'kortana.db'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("KORTANA_REQUIRE_POSTGRES=1 but KORTANA_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL: set KORTANA_TEST_POSTGRES_URL to run (CI does)")
    engine = create_engine(POSTGRES_URL)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    yield POSTGRES_URL


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
async def migrated_sqlite_file(tmp_path) -> Path:
    """A migrated SQLite file, for tests about SQLite itself (locks, a full disk, several connections)."""
    path = tmp_path / "kortana.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return path


@pytest.fixture(autouse=True)
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE blocks 127.0.0.1 too, and the tests' chat servers live there; the constant is read at
    import, so patch both."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
async def open_test_service(migrated_url: str) -> AsyncIterator[ServiceFactory]:
    """Opens services on the test's database (several may be open at once, like restarts or processes)."""
    opened: list[ConversationService] = []

    async def open_service(
        engines: list[Engine] | None = None,
        *,
        budget: int = TEST_BUDGET,
        counter: TokenCounter | None = None,
        deadline_s: float = 5.0,
        max_tokens: int = 64,
    ) -> ConversationService:
        service = conversation_service(
            history_store(migrated_url, window_budget=budget),
            engines or (),
            budget=budget,
            counter=counter,
            deadline_s=deadline_s,
            max_tokens=max_tokens,
        )
        opened.append(service)
        return service

    yield open_service
    for service in opened:
        await service.close()


@pytest.fixture
def disk_of_current_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """(SQLite) The writer's connection may not grow the file: SQLite's own SQLITE_FULL, as on a full disk."""
    pragmas = app.storage.sqlite_history.sqlite_pragmas

    def full_disk_pragmas(busy_timeout_s: float):  # type: ignore[no-untyped-def]
        prepare = pragmas(busy_timeout_s)

        def prepare_on_a_full_disk(connection, record=None) -> None:  # type: ignore[no-untyped-def]
            prepare(connection, record)
            connection.execute("PRAGMA max_page_count = 1")  # SQLite raises it to the file's current size

        return prepare_on_a_full_disk

    monkeypatch.setattr(app.storage.sqlite_history, "sqlite_pragmas", full_disk_pragmas)
