"""A turn asked again (Regenerate) and an answer its asker stopped, on real, migrated databases: the turn's
context is what it was asked with, its answer is replaced in one write (charged once more), and a stopped
answer is stored as stopped."""

from __future__ import annotations

from datetime import date

from app.storage import ConversationKey, StoredMessage, UsageCharge, UsageStore
from tests.helpers import history_store

KEY = ConversationKey(user_id=7, scope="dm")


async def test_the_turn_context_is_the_question_and_the_history_before_it(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        first = await store.start_turn(conversation, StoredMessage("user", "first question", 2), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "first answer", 2, "brain"), first.turn_id)
        second = await store.start_turn(conversation, StoredMessage("user", "second question", 2), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "second answer", 2, "brain"), second.turn_id)

        context = await store.turn_context(conversation, second.turn_id, 1000)
        assert context is not None and context.newest
        assert context.question.content == "second question"
        assert [m.content for m in context.history] == ["first question", "first answer"]
        assert not context.has_older

        older = await store.turn_context(conversation, first.turn_id, 1000)
        assert older is not None and not older.newest and older.history == []

        small = await store.turn_context(conversation, second.turn_id, 3)  # room for one message only
        assert small is not None
        assert [m.content for m in small.history] == ["first answer"] and small.has_older

        assert await store.turn_context(conversation, second.turn_id + 1000, 1000) is None
    finally:
        await store.close()


async def test_a_replaced_answer_is_the_turns_only_answer_and_is_charged(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        turn = await store.start_turn(conversation, StoredMessage("user", "tell me a joke", 4), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "a bad joke", 3, "brain"), turn.turn_id)
        charge = UsageCharge(date(2026, 1, 2), guild_id=1, user_id=7, tokens=11)

        await store.replace_answer(
            conversation, StoredMessage("assistant", "a better joke", 3, "hf"), turn.turn_id, charge=charge
        )

        stored = await store.all_messages(conversation)
        assert [(m.role, m.content, m.engine) for m in stored] == [
            ("user", "tell me a joke", None),
            ("assistant", "a better joke", "hf"),
        ]
        window = await store.recent(conversation, 1000)  # SQLite's cached window follows
        assert [m.content for m in window] == ["tell me a joke", "a better joke"]
        assert await UsageStore(store.database).used(date(2026, 1, 2), guild_id=1, user_id=7) == 11
    finally:
        await store.close()


async def test_an_answer_is_not_replaced_once_its_question_is_erased(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        turn = await store.start_turn(conversation, StoredMessage("user", "a question", 2), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "an answer", 2, "brain"), turn.turn_id)
        await store.reset(conversation)

        await store.replace_answer(conversation, StoredMessage("assistant", "too late", 2, "brain"), turn.turn_id)

        assert await store.all_messages(conversation) == []
    finally:
        await store.close()


async def test_a_stopped_answer_is_read_back_as_stopped(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        turn = await store.start_turn(conversation, StoredMessage("user", "a long story please", 4), 1000)
        stopped = StoredMessage("assistant", "Once upon a", 3, "brain", stopped=True)
        await store.finish_turn(conversation, stopped, turn.turn_id)

        [question, answer] = await store.all_messages(conversation)
        assert not question.stopped
        assert answer.stopped and answer.content == "Once upon a"
    finally:
        await store.close()
