"""AppState on real, migrated databases: a value kept survives a new connection, a second put replaces it, and
a database that cannot be used now is StorageUnavailable, and a missing table is not that."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from app.storage import AppState, StorageUnavailable, create_engine


async def test_a_kept_value_is_read_back_by_another_engine_and_a_second_put_replaces_it(migrated_url: str) -> None:
    first, second = create_engine(migrated_url), create_engine(migrated_url)
    try:
        assert await AppState(first).get("commands:global") is None
        await AppState(first).put("commands:global", "abc")
        await AppState(first).put("commands:guild:1", "other")
        assert await AppState(second).get("commands:global") == "abc"
        await AppState(second).put("commands:global", "def")  # an upsert: no conflict on the name
        assert await AppState(first).get("commands:global") == "def"
        assert await AppState(first).get("commands:guild:1") == "other"
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_locked_database_is_storage_unavailable_with_its_short_cause(migrated_sqlite_file: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{migrated_sqlite_file}", timeout_s=0.1)
    holder = sqlite3.connect(migrated_sqlite_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock longer than SQLite waits
    try:
        with pytest.raises(StorageUnavailable) as raised:
            await AppState(engine).put("commands:global", "abc")
        assert raised.value.cause == "database is locked"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()


async def test_a_database_without_the_table_is_a_bug_not_an_unavailable_database(database_url: str) -> None:
    # Start-up migrates first, so a missing table is a broken deployment: it must say so, not pass for "busy".
    engine = create_engine(database_url)  # not migrated
    try:
        with pytest.raises(DBAPIError) as raised:
            await AppState(engine).get("commands:global")
        assert not isinstance(raised.value, StorageUnavailable)
    finally:
        await engine.dispose()
