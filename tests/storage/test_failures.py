"""One rule says "the connection was lost": the stores retry a write once by it, start-up waits for the database
by it. The table holds the errors both met before they shared the rule, and errors that must not count."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy
from alembic.util import CommandError
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.conversation.setup import migrate_when_reachable
from app.storage import (
    ConversationKey,
    DatabaseUnavailable,
    StorageUnavailable,
    StoredMessage,
    create_engine,
    is_login_refused,
    is_lost_connection,
)
from tests.helpers import history_store, settings_for

postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def wrapped(driver: Exception, *, invalidated: bool = False) -> DBAPIError:
    """The driver's error as SQLAlchemy raises it."""
    return DBAPIError.instance("SELECT 1", None, driver, asyncpg.PostgresError, connection_invalidated=invalidated)


def sqlite_cannot_open() -> sqlite3.OperationalError:
    try:
        sqlite3.connect("/nonexistent-directory/kortana.db").execute("SELECT 1")
    except sqlite3.OperationalError as error:
        return error
    raise AssertionError("SQLite opened a file in a directory that does not exist")


LOST = {
    "asyncpg: connection refused": ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
    "connection reset": ConnectionResetError(104, "Connection reset by peer"),
    "connect timed out": TimeoutError(),
    "unknown host": socket.gaierror(-2, "Name or service not known"),
    "the history store is closed": ConnectionError("the history store is closed"),
    "SQLAlchemy: connection_invalidated": InterfaceError(
        "SELECT 1", None, asyncpg.InterfaceError("connection is closed"), connection_invalidated=True
    ),
    "asyncpg: closed in the middle of an operation (08003)": wrapped(
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    ),
    "asyncpg: connection failure (08006)": wrapped(asyncpg.ConnectionFailureError("connection failure")),
    "terminated by an administrator (57P01)": wrapped(
        asyncpg.AdminShutdownError("terminating connection due to administrator command")
    ),
    "server starting up (57P03)": wrapped(asyncpg.CannotConnectNowError("the database system is starting up")),
}
NOT_LOST = {
    "sqlite: unable to open the file": OperationalError("SELECT 1", None, sqlite_cannot_open()),
    "sqlite: syntax error": OperationalError("SELEC 1", None, sqlite3.OperationalError('near "SELEC": syntax error')),
    "sqlite: a table named like a connection": OperationalError(
        "SELECT 1", None, sqlite3.OperationalError("no such table: closed_connections")
    ),
    "asyncpg: syntax error": ProgrammingError("SELEC 1", None, asyncpg.PostgresSyntaxError("syntax error")),
    "asyncpg: foreign key": IntegrityError("INSERT", None, asyncpg.ForeignKeyViolationError("violates key")),
    "alembic: unknown revision": CommandError("Can't locate revision identified by 'nope'"),
}
LOGIN_REFUSED = {
    "asyncpg: wrong password (28P01)": wrapped(asyncpg.InvalidPasswordError("password authentication failed")),
    "asyncpg: unknown role (28000)": wrapped(
        asyncpg.InvalidAuthorizationSpecificationError('role "nobody" does not exist')
    ),
    "asyncpg: unknown database (3D000)": wrapped(asyncpg.InvalidCatalogNameError('database "x" does not exist')),
}
TABLE = [
    *(pytest.param(error, True, False, id=name) for name, error in LOST.items()),
    *(pytest.param(error, False, False, id=name) for name, error in NOT_LOST.items()),
    *(pytest.param(error, False, True, id=name) for name, error in LOGIN_REFUSED.items()),
]


@pytest.mark.parametrize(("error", "lost", "refused"), TABLE)
def test_one_rule_tells_a_lost_connection(error: Exception, lost: bool, refused: bool) -> None:
    assert (is_lost_connection(error), is_login_refused(error)) == (lost, refused)


@pytest.mark.parametrize(("error", "lost", "refused"), TABLE)
async def test_start_up_waits_only_for_a_lost_connection(error: Exception, lost: bool, refused: bool) -> None:
    settings = settings_for(database_url="sqlite+aiosqlite:///unused.db", database_connect_retry_seconds=0)
    attempts = 0

    async def failing_change(_database: AsyncEngine) -> None:
        nonlocal attempts
        attempts += 1
        raise error

    with pytest.raises(DatabaseUnavailable) as failure:
        await migrate_when_reachable(None, settings, failing_change)  # type: ignore[arg-type]
    expected = "Cannot reach" if lost else "refused the login" if refused else "Cannot migrate"
    assert expected in str(failure.value)
    assert attempts == 1


@pytest.mark.parametrize(("error", "lost", "refused"), TABLE)
async def test_a_store_retries_a_step_once_only_after_a_lost_connection(
    migrated_sqlite_file: Path, error: Exception, lost: bool, refused: bool
) -> None:
    database = create_engine(f"sqlite+aiosqlite:///{migrated_sqlite_file}")
    store = history_store(database)
    conversation = await store.conversation_id(ConversationKey(user_id=1, scope="global"))
    await store.append(conversation, StoredMessage("user", "done on a fresh connection", 6))
    attempts = 0

    @event.listens_for(database.sync_engine, "before_cursor_execute")
    def read_fails_first(connection, cursor, statement: str, *args: object) -> None:  # type: ignore[no-untyped-def]
        # Only the reads of `all_messages` go through the engine (SQLite's writes have their own thread).
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise error

    try:
        if lost:
            assert [m.content for m in await store.all_messages(conversation)] == ["done on a fresh connection"]
            assert attempts == 2
        else:
            with pytest.raises((type(error), StorageUnavailable)):
                await store.all_messages(conversation)
            assert attempts == 1
    finally:
        await store.close()


async def test_the_real_driver_errors_are_classified_as_in_the_table(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    refused = await _failure_of(create_engine(f"postgresql+asyncpg://kortana@127.0.0.1:{free_port}/kortana"))
    blocker = tmp_path / "a-file"
    blocker.touch()
    cannot_open = _sync_failure_of(lambda: sqlalchemy.create_engine(f"sqlite:///{blocker}/k.db").connect())
    assert isinstance(refused, ConnectionRefusedError) and is_lost_connection(refused)
    assert isinstance(cannot_open, OperationalError) and not is_lost_connection(cannot_open)


@postgres_only
async def test_postgresqls_own_errors_are_classified_as_in_the_table(migrated_url: str) -> None:
    unknown = sqlalchemy.make_url(migrated_url).set(database="kortana_no_such_database")
    no_database = await _failure_of(create_engine(unknown.render_as_string(hide_password=False)))
    assert is_login_refused(no_database) and not is_lost_connection(no_database)

    database = create_engine(migrated_url)
    plain_dsn = sqlalchemy.make_url(migrated_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(plain_dsn)
    try:
        async with database.connect() as connection:
            pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar()
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(DBAPIError) as terminated:
                await connection.exec_driver_sql("SELECT 1")
        assert is_lost_connection(terminated.value) and not is_login_refused(terminated.value)
    finally:
        await admin.close()
        await database.dispose()


async def _failure_of(engine: AsyncEngine) -> Exception:
    try:
        async with engine.connect():
            pass
    except Exception as error:
        return error
    finally:
        await engine.dispose()
    raise AssertionError("the connection was made")


def _sync_failure_of(connect: Callable[[], object]) -> Exception:
    try:
        connect()
    except Exception as error:
        return error
    raise AssertionError("the connection was made")
