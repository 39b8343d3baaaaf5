"""HistoryStore on real, migrated databases: windows, echo replies, and writers it did not expect."""

from __future__ import annotations

import asyncio

import pytest

from app.storage.database import create_engine
from app.storage.history import ConversationKey, StorageUnavailable, StoredMessage, open_history_store

KEY = ConversationKey(user_id=42, scope="dm")


async def test_window_is_the_newest_that_fit_oldest_first_without_echo(migrated_url: str) -> None:
    store = open_history_store(create_engine(migrated_url))
    try:
        conversation = await store.conversation_id(KEY)
        for i in range(10):
            await store.append(conversation, StoredMessage("user", f"u{i}", 10))
            engine = "echo" if i == 8 else "brain"
            await store.append(conversation, StoredMessage("assistant", f"a{i}", 10, engine))
        window = await store.recent(conversation, token_budget=60, overhead_per_message=5)
        assert [m.content for m in window] == ["a7", "u8", "u9", "a9"]
        assert [m.content for m in await store.recent(conversation, 30, 5)] == ["u9", "a9"]
        assert [m.content for m in await store.recent(conversation, 29, 5)] == ["a9"]
    finally:
        await store.close()


async def test_a_second_store_on_the_same_database_sees_the_other_writes(migrated_url: str) -> None:
    first = open_history_store(create_engine(migrated_url))
    second = open_history_store(create_engine(migrated_url))
    try:
        conversation = await first.conversation_id(KEY)
        await first.append(conversation, StoredMessage("user", "from first", 3))
        assert [m.content for m in await first.recent(conversation, 1000)] == ["from first"]
        assert await second.conversation_id(KEY) == conversation
        await second.append(conversation, StoredMessage("user", "from second", 3))
        assert [m.content for m in await first.recent(conversation, 1000)] == ["from first", "from second"]
        assert await second.reset(conversation) == 2
        assert await first.recent(conversation, 1000) == []
    finally:
        await first.close()
        await second.close()


async def test_concurrent_appends_of_many_conversations_are_all_committed(migrated_url: str) -> None:
    store = open_history_store(create_engine(migrated_url))
    try:
        ids = [await store.conversation_id(ConversationKey(n, "global")) for n in range(50)]
        await asyncio.gather(
            *(store.append(c, StoredMessage("user", f"hello {c}-{i}", 2)) for c in ids for i in range(4))
        )
        for c in ids:
            assert sorted(m.content for m in await store.all_messages(c)) == [f"hello {c}-{i}" for i in range(4)]
    finally:
        await store.close()


async def test_interleaved_turns_store_each_answer_right_after_its_question(migrated_url: str) -> None:
    first = open_history_store(create_engine(migrated_url))
    second = open_history_store(create_engine(migrated_url))  # another process on the same database
    try:
        conversation = await first.conversation_id(KEY)
        assert await second.conversation_id(KEY) == conversation
        _, turn_a = await first.start_turn(conversation, StoredMessage("user", "question A", 2), 1000, 5)
        history_b, turn_b = await second.start_turn(conversation, StoredMessage("user", "question B", 2), 1000, 5)
        assert [m.content for m in history_b] == ["question A"]
        await second.finish_turn(conversation, StoredMessage("assistant", "answer B", 2, "brain"), turn_b)
        await first.finish_turn(conversation, StoredMessage("assistant", "answer A", 2, "brain"), turn_a)
        expected = ["question A", "answer A", "question B", "answer B"]
        assert [m.content for m in await first.all_messages(conversation)] == expected
        if first.dialect == "postgresql":  # SQLite is one process per file: its windows are cached per process
            assert [m.content for m in await first.recent(conversation, 1000, 5)] == expected
        fresh = open_history_store(create_engine(migrated_url))
        try:
            assert [m.content for m in await fresh.recent(conversation, 1000, 5)] == expected
        finally:
            await fresh.close()
    finally:
        await first.close()
        await second.close()


async def test_a_sqlite_file_locked_too_long_is_storage_unavailable(tmp_path, monkeypatch) -> None:
    import sqlite3

    import app.storage.database as database
    from app.storage.database import migrate

    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 200)
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
    engine = create_engine(url)
    await migrate(engine)
    store = open_history_store(engine)
    try:
        conversation = await store.conversation_id(KEY)
        other_process = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        other_process.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StorageUnavailable):
                await store.start_turn(conversation, StoredMessage("user", "hello?", 2), 1000)
        finally:
            other_process.execute("ROLLBACK")
            other_process.close()
        await store.start_turn(conversation, StoredMessage("user", "hello again", 2), 1000)
        assert [m.content for m in await store.all_messages(conversation)] == ["hello again"]
    finally:
        await store.close()


def test_the_store_knows_the_echo_engine_by_its_name() -> None:
    from app.engines.echo import EchoEngine
    from app.storage.messages import ECHO_ENGINE

    assert EchoEngine.name == ECHO_ENGINE
