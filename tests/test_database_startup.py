"""Operations: an unreachable database at start-up, and connections lost while the bot runs."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import aclosing
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.bench.instant_engine import InstantEngine
from app.conversation.service import ConversationService
from app.storage import ConversationKey, StorageUnavailable, create_engine
from tests.helpers import child_environment, conversation_service, history_store

REPO = Path(__file__).resolve().parents[1]
KEY = ConversationKey(user_id=7, scope="global")
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_chat(database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m app chat` on that database, away from this checkout's .env and the caller's settings."""
    env = child_environment(
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        DATABASE_URL=database_url,
        DATABASE_CONNECT_RETRY_SECONDS="1",
        BRAIN="none",
    )
    return subprocess.run(
        [sys.executable, "-m", "app", "chat"],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def only_message(done: subprocess.CompletedProcess[str]) -> str:
    """The one line meant for the operator; no traceback, no password."""
    assert done.returncode == 1
    assert "hunter2-secret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    [line] = [line for line in done.stderr.splitlines() if line.startswith("kortana:")]
    return line


def test_chat_with_an_unreachable_database_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    done = run_chat(f"postgresql+asyncpg://kortana:hunter2-secret@127.0.0.1:{port}/kortana", tmp_path)
    assert time.monotonic() - started < 8
    assert only_message(done) == (
        f"kortana: Cannot reach the database at postgresql+asyncpg://kortana:***@127.0.0.1:{port}/kortana "
        "after 1 s (ConnectionRefusedError)"
    )


@postgres_only
async def test_a_server_that_refuses_the_login_gets_one_clear_line(database_url: str, tmp_path: Path) -> None:
    url = make_url(database_url).set(database="kortana_no_such_database", password="hunter2-secret")
    done = run_chat(url.render_as_string(hide_password=False), tmp_path)
    assert "kortana_no_such_database" in only_message(done)


def test_a_migration_that_fails_stops_start_up_with_one_line_naming_the_cause(tmp_path: Path) -> None:
    database = tmp_path / "from-a-newer-version.db"
    with sqlite3.connect(database) as connection:  # stamped by a Kor'tana with a migration this one lacks
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    done = run_chat(f"sqlite+aiosqlite:///{database}", tmp_path)
    assert only_message(done) == (
        f"kortana: Cannot migrate the database at {database}: "
        "CommandError: Can't locate revision identified by '9999_from_the_future'"
    )


# --- a lost connection during a turn (PostgreSQL) ------------------------------------------------------


def open_service_on(url: str) -> tuple[ConversationService, set[int]]:
    """A service like the bot's, plus the server pids of every connection its pool opens."""
    database = create_engine(url)
    pids: set[int] = set()
    event.listen(
        database.sync_engine, "connect", lambda connection, _: pids.add(connection.driver_connection.get_server_pid())
    )
    service = conversation_service(history_store(database), [InstantEngine()], max_tokens=32)
    return service, pids


async def turn(service: ConversationService, text: str) -> None:
    async with aclosing(service.respond(KEY, "tester", text)) as events:
        async for _ in events:
            pass


async def contents(service: ConversationService) -> list[str]:
    return [m.content for m in await service.export(KEY)]


def plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@postgres_only
async def test_a_connection_lost_between_or_during_turns_is_retried(migrated_url: str, caplog) -> None:
    service, pids = open_service_on(migrated_url)
    admin = await asyncpg.connect(plain_dsn(migrated_url))
    try:
        await turn(service, "first")
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
        await turn(service, "second")  # the pool finds its connection dead and opens another

        # The next turn waits in the database for the conversation's lock (held here), and loses its connection there.
        conversation_id = await admin.fetchval("SELECT id FROM conversations WHERE user_id = $1", KEY.user_id)
        await admin.execute("SELECT pg_advisory_lock($1)", conversation_id)
        third = asyncio.create_task(turn(service, "third"))
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND wait_event_type = 'Lock'"
        async with asyncio.timeout(5):
            while not await admin.fetchval(waiting, list(pids)):
                await asyncio.sleep(0.01)
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(pids))
        await admin.execute("SELECT pg_advisory_unlock($1)", conversation_id)
        async with asyncio.timeout(10):
            await third

        assert "retrying once" in caplog.text
        assert await contents(service) == [
            "first", "reply to: first", "second", "reply to: second", "third", "reply to: third"
        ]  # fmt: skip
    finally:
        await admin.close()
        await service.close()


class CuttableProxy:
    """A TCP forwarder to the database that the test can cut (the server "goes away") and reopen."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._writers += [client_writer, server_writer]
        await asyncio.gather(
            _copy(client_reader, server_writer), _copy(server_reader, client_writer), return_exceptions=True
        )


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@postgres_only
async def test_an_unreachable_database_fails_the_turn_quickly_and_stores_nothing_of_it(migrated_url: str) -> None:
    url = make_url(migrated_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.open()
    service, _ = open_service_on(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    try:
        await turn(service, "before")
        await proxy.cut()
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            async with asyncio.timeout(10):
                await turn(service, "while the database is away")
        assert time.monotonic() - started < 3, "reported at once, not after a hang"

        await proxy.open()  # the same port: the database is back
        await turn(service, "after")
        assert await contents(service) == ["before", "reply to: before", "after", "reply to: after"]
    finally:
        await service.close()
        await proxy.cut()
