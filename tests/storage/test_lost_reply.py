"""A write whose reply is lost after PostgreSQL committed it is retried, and stored once.

Between the store and PostgreSQL sits a proxy that reads the server's side of the wire protocol: when armed,
it cuts the connection at the reply of a committed write (ReadyForQuery, idle, after an INSERT or a COMMIT),
before the client sees that reply. The server has committed; the client only sees its connection die.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from datetime import date

import pytest
from sqlalchemy.engine import make_url

from app.storage import ConversationKey, HistoryStore, StoredMessage, UsageCharge, UsageStore, create_engine
from tests.helpers import history_store

KEY = ConversationKey(user_id=42, scope="dm")
postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


class ReplyLosingProxy:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._lose_at: int | None = None  # cut at this many committed-write replies from now
        self.cuts = 0
        self.port = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def lose_reply(self, nth_committed_write: int) -> None:
        self._lose_at = nth_committed_write

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)

        async def client_to_server() -> None:
            while data := await client_reader.read(65536):
                server_writer.write(data)
                await server_writer.drain()

        async def server_to_client() -> None:
            buffer = bytearray()
            started = False
            last_tag = b""
            while data := await server_reader.read(65536):
                buffer += data
                forward = bytearray()
                if not started and buffer[:1] == b"N":  # the one-byte answer to asyncpg's SSL request: no TLS
                    forward += buffer[:1]
                    del buffer[:1]
                started = True
                while len(buffer) >= 5:
                    kind = buffer[:1]
                    (length,) = struct.unpack("!I", buffer[1:5])
                    if len(buffer) < 1 + length:
                        break
                    message, buffer = bytes(buffer[: 1 + length]), buffer[1 + length :]
                    if kind == b"C":
                        last_tag = message[5:].split(b" ")[0].rstrip(b"\x00")
                    elif kind == b"Z" and message[5:6] == b"I" and last_tag in (b"INSERT", b"COMMIT"):
                        last_tag = b""
                        if self._lose_at is not None:
                            self._lose_at -= 1
                            if self._lose_at == 0:
                                self._lose_at = None
                                self.cuts += 1
                                client_writer.write(forward)  # everything before the lost reply
                                client_writer.transport.abort()
                                server_writer.transport.abort()
                                return
                    forward += message
                client_writer.write(forward)
                await client_writer.drain()

        async def until_closed(copy) -> None:  # type: ignore[no-untyped-def]
            try:
                await copy()
            finally:  # one side closed: so does the other (a client closing waits for it)
                client_writer.transport.abort()
                server_writer.transport.abort()

        await asyncio.gather(until_closed(client_to_server), until_closed(server_to_client), return_exceptions=True)


@pytest.fixture
async def proxied(migrated_url: str) -> AsyncIterator[tuple[HistoryStore, ReplyLosingProxy]]:
    """A store whose every connection to PostgreSQL goes through the proxy."""
    url = make_url(migrated_url)
    proxy = ReplyLosingProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.open()
    proxied_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    store = history_store(create_engine(proxied_url))
    try:
        yield store, proxy
    finally:
        await store.close()
        await proxy.close()


@postgres_only
@pytest.mark.parametrize("lost", ["question", "answer"])
async def test_a_write_committed_but_its_reply_lost_is_stored_once(
    proxied: tuple[HistoryStore, ReplyLosingProxy], lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, proxy = proxied
    conversation = await store.conversation_id(KEY)
    first_turn = (await store.start_turn(conversation, StoredMessage("user", "earlier", 2), 1000)).turn_id
    await store.finish_turn(conversation, StoredMessage("assistant", "earlier answer", 2, "brain"), first_turn)

    proxy.lose_reply(1 if lost == "question" else 2)  # the turn's first committed write is its question
    started = await store.start_turn(conversation, StoredMessage("user", "question", 2), 1000)
    history, turn_id = started.history, started.turn_id
    today = date(2026, 12, 1)
    charge = UsageCharge(today, guild_id=7, user_id=KEY.user_id, tokens=30)
    await store.finish_turn(conversation, StoredMessage("assistant", "answer", 2, "brain"), turn_id, charge=charge)

    assert proxy.cuts == 1 and "retrying once" in caplog.text
    assert await UsageStore(store.database).used(today, 7, KEY.user_id) == 30, "the answer is charged once"
    assert [m.content for m in history] == ["earlier", "earlier answer"], "the retry's window is the same"
    assert store.write_failure is None
    assert [m.content for m in await store.all_messages(conversation)] == [
        "earlier", "earlier answer", "question", "answer"
    ]  # fmt: skip


@postgres_only
async def test_a_message_appended_but_its_reply_lost_is_stored_once(
    proxied: tuple[HistoryStore, ReplyLosingProxy], caplog: pytest.LogCaptureFixture
) -> None:
    store, proxy = proxied
    conversation = await store.conversation_id(KEY)
    proxy.lose_reply(1)
    message_id = await store.append(conversation, StoredMessage("user", "a note", 2))

    assert proxy.cuts == 1 and "retrying once" in caplog.text
    assert [m.content for m in await store.all_messages(conversation)] == ["a note"]
    turn_id = (await store.start_turn(conversation, StoredMessage("user", "next", 2), 1000)).turn_id
    assert turn_id > message_id  # the id of the stored copy, not a made-up one
