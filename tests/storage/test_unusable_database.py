"""A database that can't be used now — SQLite locked longer than the busy timeout, a full disk, a read-only
PostgreSQL — is StorageUnavailable with its real cause on every path, and `write_failure` tells health."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from app.storage import (
    ConversationKey,
    HistoryStore,
    StorageUnavailable,
    StoredMessage,
    create_engine,
)
from tests.helpers import history_store

KEY = ConversationKey(user_id=42, scope="dm")
BUSY_TIMEOUT_S = 0.25
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def store(migrated_sqlite_file: Path) -> AsyncIterator[HistoryStore]:
    opened = history_store(create_engine(f"sqlite+aiosqlite:///{migrated_sqlite_file}", timeout_s=BUSY_TIMEOUT_S))
    yield opened
    await opened.close()


@pytest.fixture
def other_program(migrated_sqlite_file: Path) -> Iterator[sqlite3.Connection]:
    """Another program on the file (a backup, the `sqlite3` shell), able to hold the write lock."""
    connection = sqlite3.connect(migrated_sqlite_file, isolation_level=None)
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


async def test_database_timeout_is_sqlites_busy_timeout_on_every_connection(store: HistoryStore) -> None:
    async with store._engine.connect() as connection:
        engine_side = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    writer_side = await store._writer.run(lambda connection: connection.execute("PRAGMA busy_timeout").fetchone()[0])
    assert (engine_side, writer_side) == (BUSY_TIMEOUT_S * 1000, BUSY_TIMEOUT_S * 1000)


async def test_a_file_locked_longer_than_the_timeout_is_unavailable_on_every_path(
    store: HistoryStore, other_program: sqlite3.Connection
) -> None:
    conversation = await store.conversation_id(KEY)
    await store.start_turn(conversation, StoredMessage("user", "before", 2), 1000)
    other_program.execute("BEGIN IMMEDIATE")

    with pytest.raises(StorageUnavailable, match="^database is locked$"):
        await store.start_turn(conversation, StoredMessage("user", "hello?", 2), 1000)
    with pytest.raises(StorageUnavailable, match="^database is locked$"):
        await store.conversation_id(ConversationKey(user_id=43, scope="dm"))  # a new conversation
    with pytest.raises(StorageUnavailable, match="^database is locked$"):
        await store.reset(conversation)
    assert store.write_failure == "database is locked"
    await asyncio.wait_for(store.ping(), 20 * BUSY_TIMEOUT_S)  # /ping does not queue behind the lock

    other_program.execute("ROLLBACK")
    await store.start_turn(conversation, StoredMessage("user", "hello again", 2), 1000)
    assert store.write_failure is None
    assert [m.content for m in await store.all_messages(conversation)] == ["before", "hello again"]


async def test_a_failure_episode_is_one_warning_and_its_end_one_line(
    store: HistoryStore, other_program: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller retrying through a long lock (the service retries a shown answer for 3 timeouts) must not
    write a WARNING per attempt."""
    caplog.set_level(logging.DEBUG, logger="app.storage.history")
    conversation = await store.conversation_id(KEY)
    other_program.execute("BEGIN IMMEDIATE")
    for attempt in range(3):
        with pytest.raises(StorageUnavailable):
            await store.start_turn(conversation, StoredMessage("user", f"attempt {attempt}", 2), 1000)
    other_program.execute("ROLLBACK")
    await store.start_turn(conversation, StoredMessage("user", "stored", 2), 1000)
    await store.start_turn(conversation, StoredMessage("user", "stored too", 2), 1000)

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == [
        ("WARNING", f"A write to conversation {KEY.log_id} failed: database is locked"),
        ("INFO", "Writes to the database work again (they failed: database is locked)"),
    ]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2  # the repeats, for whoever debugs


async def test_a_full_disk_is_unavailable_with_its_cause_and_shows_until_a_write_succeeds(
    disk_of_current_size: None, store: HistoryStore
) -> None:
    conversation = await store.conversation_id(KEY)
    too_big = StoredMessage("user", "x" * 100_000, 2)
    with pytest.raises(StorageUnavailable, match="^database or disk is full$"):
        await store.start_turn(conversation, too_big, 1000)
    assert store.write_failure == "database or disk is full"
    await store.ping()  # reading still works: only write_failure can tell health the truth

    await store.start_turn(conversation, StoredMessage("user", "small", 2), 1000)  # fits in the pages there are
    assert store.write_failure is None
    assert [m.content for m in await store.all_messages(conversation)] == ["small"]


async def test_a_full_disk_fails_a_write_with_the_real_cause_whatever_else_shares_its_commit(
    disk_of_current_size: None, store: HistoryStore
) -> None:
    conversation = await store.conversation_id(KEY)
    small, big = await asyncio.gather(  # one batch: they share a transaction
        store.append(conversation, StoredMessage("user", "small", 2)),
        store.append(conversation, StoredMessage("user", "x" * 100_000, 2)),
        return_exceptions=True,
    )
    assert isinstance(big, StorageUnavailable) and big.cause == "database or disk is full"
    # SQLite undoes either the statement or the whole transaction; a write it undid reports the same cause.
    if isinstance(small, BaseException):
        assert isinstance(small, StorageUnavailable) and small.cause == "database or disk is full"
        assert await store.all_messages(conversation) == []
    else:
        assert [m.content for m in await store.all_messages(conversation)] == ["small"]


@postgres_only
async def test_a_read_only_postgresql_is_unavailable_and_shows_until_a_write_succeeds(migrated_url: str) -> None:
    engine = create_engine(migrated_url)
    read_only = True

    @event.listens_for(engine.sync_engine, "connect")
    def like_a_standby(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        if read_only:
            dbapi_connection.run_async(lambda driver: driver.execute("SET default_transaction_read_only = on"))

    store = history_store(engine)
    try:
        with pytest.raises(StorageUnavailable, match="^read-only transaction$"):
            await store.conversation_id(KEY)
        assert store.write_failure == "read-only transaction"
        await store.ping()

        read_only = False
        await engine.dispose()  # new connections: the database is writable again
        conversation = await store.conversation_id(KEY)
        await store.start_turn(conversation, StoredMessage("user", "hello", 2), 1000)
        assert store.write_failure is None
    finally:
        await store.close()


async def test_reading_a_whole_history_from_an_unreadable_file_is_unavailable(
    store: HistoryStore, migrated_sqlite_file: Path
) -> None:
    conversation = await store.conversation_id(KEY)
    await store.close()
    migrated_sqlite_file.write_bytes(b"this is not a database file, someone overwrote it" * 100)
    reader = history_store(create_engine(f"sqlite+aiosqlite:///{migrated_sqlite_file}"))
    try:
        with pytest.raises(StorageUnavailable, match="^file is not a database$"):
            await reader.all_messages(conversation)
    finally:
        await reader.close()


async def test_the_write_probe_waits_for_the_lock_as_a_turn_does_and_ends_the_episode_once_it_is_gone(
    store: HistoryStore, other_program: sqlite3.Connection
) -> None:
    await store.probe_write()
    other_program.execute("BEGIN IMMEDIATE")
    with pytest.raises(StorageUnavailable, match="^database is locked$"):
        await store.probe_write()
    assert store.write_failure == "database is locked"
    other_program.execute("ROLLBACK")
    await store.probe_write()  # no turn since: the probe's own write tells writes work again
    assert store.write_failure is None
    assert await store.conversation_id(KEY) > 0  # it touched no conversation


@postgres_only
async def test_the_write_probe_fails_on_a_read_only_postgresql_and_passes_once_it_is_writable(
    migrated_url: str,
) -> None:
    engine = create_engine(migrated_url)
    read_only = True

    @event.listens_for(engine.sync_engine, "connect")
    def like_a_standby(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        if read_only:
            dbapi_connection.run_async(lambda driver: driver.execute("SET default_transaction_read_only = on"))

    store = history_store(engine)
    try:
        with pytest.raises(StorageUnavailable, match="^read-only transaction$"):
            await store.probe_write()
        assert store.write_failure == "read-only transaction"
        read_only = False
        await engine.dispose()
        await store.probe_write()
        assert store.write_failure is None
    finally:
        await store.close()
