"""What the store keeps under an operator's or another process's hands: long engine names, a conversation row
deleted while the bot runs, a reset while an answer is being written, and windows cached over a shared file."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import aclosing
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.bench.instant_engine import InstantEngine
from app.conversation.service import ConversationService
from app.storage import ConversationKey, HistoryStore, StoredMessage, create_engine
from tests.helpers import ServiceFactory, history_store

KEY = ConversationKey(user_id=42, scope="dm")


class Operator:
    """Someone working on the database by hand, outside Kor'tana: the `sqlite3` shell or `psql`."""

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: asyncpg.Connection | None = None

    async def open(self) -> Operator:
        if self._url.get_backend_name() == "sqlite":
            self._sqlite = sqlite3.connect(Path(self._url.database or ""), isolation_level=None)
            self._sqlite.execute("PRAGMA foreign_keys = ON")
        else:
            dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._postgres = await asyncpg.connect(dsn)
        return self

    async def execute(self, sql: str, *arguments: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute(sql.replace("$1", "?"), arguments)
        else:
            assert self._postgres is not None
            await self._postgres.execute(sql, *arguments)

    async def close(self) -> None:
        if self._sqlite is not None:
            if self._sqlite.in_transaction:
                self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()


async def turn(service: ConversationService, text: str, key: ConversationKey = KEY) -> None:
    async with aclosing(service.respond(key, "tester", text)) as events:
        async for _ in events:
            pass


async def contents(store: HistoryStore, conversation_id: int) -> list[str]:
    return [m.content for m in await store.all_messages(conversation_id)]


async def test_an_engine_name_longer_than_its_column_is_stored_cut_to_it(migrated_url: str) -> None:
    store = history_store(create_engine(migrated_url))
    long_name = "my_company.brains.experimental:" + "very_long_plugin_brain_name_" * 4
    try:
        conversation = await store.conversation_id(KEY)
        turn_id = (await store.start_turn(conversation, StoredMessage("user", "hi", 2), 1000)).turn_id
        await store.finish_turn(conversation, StoredMessage("assistant", "hello", 2, long_name), turn_id)
        [_, answer] = await store.all_messages(conversation)
        assert (answer.content, answer.engine) == ("hello", long_name[:64])
    finally:
        await store.close()


async def test_a_conversation_deleted_while_the_bot_runs_is_created_again_at_the_next_turn(
    migrated_url: str, open_test_service: ServiceFactory
) -> None:
    service = await open_test_service([InstantEngine()])
    operator = await Operator(migrated_url).open()
    try:
        await turn(service, "remember this")
        await operator.execute("DELETE FROM conversations WHERE user_id = $1", KEY.user_id)  # erasing the user

        await turn(service, "hello again")
        await turn(service, "and again")
        assert [m.content for m in await service.export(KEY)] == [
            "hello again", "reply to: hello again", "and again", "reply to: and again"
        ]  # fmt: skip
    finally:
        await operator.close()


async def test_a_conversation_deleted_during_a_turn_loses_that_turn_only(migrated_url: str) -> None:
    store = history_store(create_engine(migrated_url))
    operator = await Operator(migrated_url).open()
    try:
        conversation = await store.conversation_id(KEY)
        turn_id = (await store.start_turn(conversation, StoredMessage("user", "erased", 2), 1000)).turn_id
        await operator.execute("DELETE FROM conversations WHERE id = $1", conversation)
        await store.finish_turn(conversation, StoredMessage("assistant", "answer to erased", 2, "brain"), turn_id)

        started = await store.start_turn(conversation, StoredMessage("user", "next", 2), 1000)
        history, next_turn = started.history, started.turn_id
        await store.finish_turn(conversation, StoredMessage("assistant", "answer to next", 2, "brain"), next_turn)
        assert history == []
        assert await contents(store, await store.conversation_id(KEY)) == ["next", "answer to next"]
    finally:
        await operator.close()
        await store.close()


async def test_an_answer_whose_question_was_reset_meanwhile_is_not_stored(migrated_url: str) -> None:
    answering = history_store(create_engine(migrated_url))
    resetting = history_store(create_engine(migrated_url))  # another process, the user's /reset there
    try:
        conversation = await answering.conversation_id(KEY)
        turn_id = (await answering.start_turn(conversation, StoredMessage("user", "my secret", 2), 1000)).turn_id
        assert await resetting.reset(await resetting.conversation_id(KEY)) == 1
        await answering.finish_turn(conversation, StoredMessage("assistant", "about your secret", 2, "brain"), turn_id)
        assert await contents(answering, conversation) == []
        assert await answering.recent(conversation, 1000) == []
    finally:
        await answering.close()
        await resetting.close()


async def test_an_answer_written_while_a_reset_is_in_progress_is_not_stored(migrated_url: str) -> None:
    """The reset has deleted but not committed yet when the answer's write begins: the answer must wait for it,
    then find its question gone (without the lock it would see the question and outlive the reset)."""
    store = history_store(create_engine(migrated_url, timeout_s=10))
    operator = await Operator(migrated_url).open()
    try:
        conversation = await store.conversation_id(KEY)
        turn_id = (await store.start_turn(conversation, StoredMessage("user", "my secret", 2), 1000)).turn_id
        if store.dialect == "postgresql":
            await operator.execute("BEGIN")
            await operator.execute("SELECT pg_advisory_xact_lock($1)", conversation)  # what a reset takes
        else:
            await operator.execute("BEGIN IMMEDIATE")
        await operator.execute("DELETE FROM messages WHERE conversation_id = $1", conversation)
        answer = asyncio.create_task(
            store.finish_turn(conversation, StoredMessage("assistant", "about your secret", 2, "brain"), turn_id)
        )
        await asyncio.sleep(0.3)  # the answer's write is waiting for the reset's lock
        assert not answer.done()
        await operator.execute("COMMIT")
        await asyncio.wait_for(answer, 10)
        assert await contents(store, conversation) == []
    finally:
        await operator.close()
        await store.close()


async def test_a_reset_that_comes_while_an_answer_is_being_written_erases_it_too(migrated_url: str) -> None:
    """The other order: the answer's insert holds its question (another process, not committed yet) when the
    reset begins. The reset must wait for it and erase the answer with the rest, not delete from a snapshot
    taken before the answer existed."""
    if not migrated_url.startswith("postgresql"):
        pytest.skip("SQLite's file lock orders a reset and an answer whole")
    store = history_store(create_engine(migrated_url, timeout_s=10))
    answering_process = await Operator(migrated_url).open()
    try:
        conversation = await store.conversation_id(KEY)
        turn_id = (await store.start_turn(conversation, StoredMessage("user", "my secret", 2), 1000)).turn_id
        await answering_process.execute("BEGIN")
        await answering_process.execute(
            "INSERT INTO messages (conversation_id, turn_id, role, content, token_count, engine, turn_key) "
            "SELECT conversation_id, id, 'assistant', 'about your secret', 2, 'brain', turn_key "
            "FROM messages WHERE id = $1 FOR KEY SHARE",
            turn_id,
        )
        reset = asyncio.create_task(store.reset(conversation))
        await asyncio.sleep(0.3)
        assert not reset.done(), "the reset must wait for the answer being written"
        await answering_process.execute("COMMIT")
        await asyncio.wait_for(reset, 10)
        assert await contents(store, conversation) == []
    finally:
        await answering_process.close()
        await store.close()


async def test_a_window_cached_before_another_process_reset_the_file_is_read_again(
    migrated_sqlite_file: Path,
) -> None:
    """SQLite hands out row ids again after a reset: the other process's new messages get the very ids the
    cached window ended with, so comparing ids would serve the erased history."""
    url = f"sqlite+aiosqlite:///{migrated_sqlite_file}"
    first, second = history_store(create_engine(url)), history_store(create_engine(url))

    async def whole_turn(store: HistoryStore, conversation: int, text: str) -> list[str]:
        started = await store.start_turn(conversation, StoredMessage("user", text, 2), 1000, 5)
        history, turn_id = started.history, started.turn_id
        await store.finish_turn(conversation, StoredMessage("assistant", f"re: {text}", 2, "brain"), turn_id)
        return [m.content for m in history]

    try:
        conversation = await first.conversation_id(KEY)
        await whole_turn(first, conversation, "old one")
        await whole_turn(first, conversation, "old two")  # first caches a window ending at id 4
        assert await second.conversation_id(KEY) == conversation
        await second.reset(conversation)
        await whole_turn(second, conversation, "new one")
        await whole_turn(second, conversation, "new two")  # ids 1 to 4 again

        expected = ["new one", "re: new one", "new two", "re: new two"]
        assert [m.content for m in await first.recent(conversation, 1000, 5)] == expected
        assert await whole_turn(first, conversation, "three") == expected
    finally:
        await first.close()
        await second.close()


async def test_a_turn_started_right_after_a_reset_in_the_same_process_sees_nothing_erased(migrated_url: str) -> None:
    """The store's own guarantee, not the service's lock: the reset and the turn may share one SQLite commit,
    and the turn's job runs after the delete; its window must not be the one cached before it."""
    store = history_store(create_engine(migrated_url))
    try:
        conversation = await store.conversation_id(KEY)
        turn_id = (await store.start_turn(conversation, StoredMessage("user", "my secret", 2), 1000)).turn_id
        await store.finish_turn(conversation, StoredMessage("assistant", "about your secret", 2, "brain"), turn_id)

        forgotten, started = await asyncio.gather(
            store.reset(conversation), store.start_turn(conversation, StoredMessage("user", "fresh start", 2), 1000)
        )
        assert forgotten == 2
        assert started.history == []
        assert not started.has_older
        assert await store.recent(conversation, 1000) == [StoredMessage("user", "fresh start", 2)]
    finally:
        await store.close()


async def test_a_turn_cancelled_while_its_message_is_written_leaves_no_stale_window(migrated_sqlite_file: Path) -> None:
    """SQLite's writer thread commits a job even when its caller was cancelled meanwhile: the next turn's window
    must still hold that message, though the cached window never heard of it."""
    store = history_store(create_engine(f"sqlite+aiosqlite:///{migrated_sqlite_file}", timeout_s=5))
    try:
        conversation = await store.conversation_id(KEY)
        turn_id = (await store.start_turn(conversation, StoredMessage("user", "first", 1), 1000)).turn_id
        await store.finish_turn(conversation, StoredMessage("assistant", "answer", 1, "brain"), turn_id)

        holder = sqlite3.connect(migrated_sqlite_file, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the writer's job waits in the thread for this lock
        cut = asyncio.create_task(store.start_turn(conversation, StoredMessage("user", "cut short", 2), 1000))
        await asyncio.sleep(0.3)
        cut.cancel()
        await asyncio.gather(cut, return_exceptions=True)
        holder.execute("ROLLBACK")
        holder.close()

        history = (await store.start_turn(conversation, StoredMessage("user", "next", 1), 1000)).history
        stored = [m.content for m in await store.all_messages(conversation)]
        assert stored == ["first", "answer", "cut short", "next"], "the cancelled caller's job did not commit"
        assert [m.content for m in history] == stored[:-1]
    finally:
        await store.close()
