"""HistoryStore on real, migrated databases: windows, echo replies, and writers it did not expect."""

from __future__ import annotations

import asyncio

from app.engines import ECHO
from app.storage import ConversationKey, StoredMessage, create_engine, open_history_store
from tests.helpers import history_store

KEY = ConversationKey(user_id=42, scope="dm")


async def _ten_turns_with_an_echo_reply(store) -> int:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    for i in range(10):
        await store.append(conversation, StoredMessage("user", f"u{i}", 10))
        engine = ECHO if i == 8 else "brain"
        await store.append(conversation, StoredMessage("assistant", f"a{i}", 10, engine))
    return conversation


async def test_window_is_the_newest_that_fit_oldest_first_without_echo(migrated_url: str) -> None:
    store = open_history_store(create_engine(migrated_url), never_sent_engine=ECHO)
    try:
        conversation = await _ten_turns_with_an_echo_reply(store)
        window = await store.recent(conversation, token_budget=60, overhead_per_message=5)
        assert [m.content for m in window] == ["a7", "u8", "u9", "a9"]
        assert [m.content for m in await store.recent(conversation, 30, 5)] == ["u9", "a9"]
        assert [m.content for m in await store.recent(conversation, 29, 5)] == ["a9"]
        await store.append(conversation, StoredMessage("assistant", "a10", 10, ECHO))  # the cached window too
        assert [m.content for m in await store.recent(conversation, 30, 5)] == ["u9", "a9"]
    finally:
        await store.close()


async def test_the_store_leaves_out_only_the_engine_it_is_told_of(migrated_url: str) -> None:
    # Storage knows no engine by name: which replies stay out of windows is the conversation layer's word.
    store = open_history_store(create_engine(migrated_url), never_sent_engine=None)
    try:
        conversation = await _ten_turns_with_an_echo_reply(store)
        assert [m.content for m in await store.recent(conversation, 60, 5)] == ["u8", "a8", "u9", "a9"]
    finally:
        await store.close()


async def test_a_second_store_on_the_same_database_sees_the_other_writes(migrated_url: str) -> None:
    first = history_store(migrated_url)
    second = history_store(migrated_url)
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
    store = history_store(migrated_url)
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
    first = history_store(migrated_url)
    second = history_store(migrated_url)  # another process on the same database
    try:
        conversation = await first.conversation_id(KEY)
        assert await second.conversation_id(KEY) == conversation
        turn_a = (await first.start_turn(conversation, StoredMessage("user", "question A", 2), 1000, 5)).turn_id
        started = await second.start_turn(conversation, StoredMessage("user", "question B", 2), 1000, 5)
        history_b, turn_b = started.history, started.turn_id
        assert [m.content for m in history_b] == ["question A"]
        await second.finish_turn(conversation, StoredMessage("assistant", "answer B", 2, "brain"), turn_b)
        await first.finish_turn(conversation, StoredMessage("assistant", "answer A", 2, "brain"), turn_a)
        expected = ["question A", "answer A", "question B", "answer B"]
        assert [m.content for m in await first.all_messages(conversation)] == expected
        if first.dialect == "postgresql":  # SQLite is one process per file: its windows are cached per process
            assert [m.content for m in await first.recent(conversation, 1000, 5)] == expected
        fresh = history_store(migrated_url)
        try:
            assert [m.content for m in await fresh.recent(conversation, 1000, 5)] == expected
        finally:
            await fresh.close()
    finally:
        await first.close()
        await second.close()
