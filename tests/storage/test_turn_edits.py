"""Editing a stored user message and erasing one turn (a Discord user edited or deleted their message while
Kor'tana answered it), on real, migrated databases: the window, the search index and a late answer follow."""

from __future__ import annotations

from app.storage import ConversationKey, StoredMessage
from tests.helpers import history_store

KEY = ConversationKey(user_id=7, scope="dm")
FAR_FUTURE_TURN = 10**9


async def test_an_edited_message_is_what_the_window_the_search_and_the_export_hold(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        started = await store.start_turn(conversation, StoredMessage("user", "my cat is called Biscuit", 6), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "Lovely name!", 3, "brain"), started.turn_id)
        before = await store.recent(conversation, 1000)
        assert [m.content for m in before] == ["my cat is called Biscuit", "Lovely name!"]

        assert await store.edit_message(conversation, started.turn_id, "my dog is called Pepper", 9)

        window = await store.recent(conversation, 1000)  # the cached window (SQLite) is not the old text
        assert [(m.content, m.token_count) for m in window] == [("my dog is called Pepper", 9), ("Lovely name!", 3)]
        assert await store.search(conversation, ["Biscuit"], before_turn=FAR_FUTURE_TURN, limit=3) == []
        [found] = await store.search(conversation, ["Pepper"], before_turn=FAR_FUTURE_TURN, limit=3)
        assert found.message.content == "my dog is called Pepper"
        assert [m.content for m in await store.all_messages(conversation)][0] == "my dog is called Pepper"
        # A turn started after the edit reads the edited text in its window.
        following = await store.start_turn(conversation, StoredMessage("user", "and now?", 2), 1000)
        assert [m.content for m in following.history] == ["my dog is called Pepper", "Lovely name!"]
    finally:
        await store.close()


async def test_only_a_user_message_of_that_conversation_is_edited(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        other = await store.conversation_id(ConversationKey(user_id=8, scope="dm"))
        started = await store.start_turn(conversation, StoredMessage("user", "hello", 1), 1000)
        answer = StoredMessage("assistant", "hi", 1, "brain")
        answer_id = await store.append(conversation, answer, turn_id=started.turn_id)

        assert not await store.edit_message(other, started.turn_id, "not yours", 2)
        assert not await store.edit_message(conversation, answer_id, "not an answer", 3)
        assert not await store.edit_message(conversation, started.turn_id + 1000, "nobody", 1)
        assert [m.content for m in await store.all_messages(conversation)] == ["hello", "hi"]
    finally:
        await store.close()


async def test_a_deleted_turn_goes_with_its_answer_and_a_late_answer_is_not_stored(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        first = await store.start_turn(conversation, StoredMessage("user", "first question", 2), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "first answer", 2, "brain"), first.turn_id)
        second = await store.start_turn(conversation, StoredMessage("user", "second question about Zebras", 4), 1000)
        await store.finish_turn(conversation, StoredMessage("assistant", "second answer", 2, "brain"), second.turn_id)
        third = await store.start_turn(conversation, StoredMessage("user", "third question", 2), 1000)

        assert await store.delete_turn(conversation, second.turn_id) == 2
        assert await store.delete_turn(conversation, third.turn_id) == 1  # asked, not answered yet
        await store.finish_turn(conversation, StoredMessage("assistant", "too late", 2, "brain"), third.turn_id)

        assert [m.content for m in await store.all_messages(conversation)] == ["first question", "first answer"]
        assert [m.content for m in await store.recent(conversation, 1000)] == ["first question", "first answer"]
        assert await store.search(conversation, ["Zebras"], before_turn=FAR_FUTURE_TURN, limit=3) == []
        assert await store.delete_turn(conversation, second.turn_id) == 0
    finally:
        await store.close()


async def test_a_second_store_sees_an_edit_and_a_deleted_turn(migrated_url: str) -> None:
    first = history_store(migrated_url)
    second = history_store(migrated_url)
    try:
        conversation = await first.conversation_id(KEY)
        kept = await first.start_turn(conversation, StoredMessage("user", "keep me", 2), 1000)
        gone = await first.start_turn(conversation, StoredMessage("user", "delete me", 2), 1000)
        assert [m.content for m in await first.recent(conversation, 1000)] == ["keep me", "delete me"]

        assert await second.edit_message(conversation, kept.turn_id, "kept, edited", 3)
        assert await second.delete_turn(conversation, gone.turn_id) == 1

        assert [m.content for m in await first.recent(conversation, 1000)] == ["kept, edited"]
    finally:
        await first.close()
        await second.close()
