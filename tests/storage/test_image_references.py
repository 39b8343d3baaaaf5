"""A user message's images are stored by reference (messages.images, JSON), on real, migrated databases: written with
the message, read back by the window (SQLite's cached one and the database's), the export, and after an edit."""

from __future__ import annotations

from app.storage import ConversationKey, StoredImage, StoredMessage
from tests.helpers import history_store

KEY = ConversationKey(user_id=7, scope="dm")
CAT = StoredImage("cat.png", 48_213, "image/png", "https://cdn.example/attachments/1/2/cat.png?ex=1")


async def test_image_references_are_stored_with_the_message_and_read_back_everywhere(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        question = StoredMessage("user", "what is this?", 770, images=(CAT,))
        started = await store.start_turn(conversation, question, 2000)
        await store.finish_turn(conversation, StoredMessage("assistant", "A cat!", 2, "brain"), started.turn_id)

        following = await store.start_turn(conversation, StoredMessage("user", "and its name?", 3), 2000)
        assert [(m.content, m.images) for m in following.history] == [("what is this?", (CAT,)), ("A cat!", ())]
        exported = await store.all_messages(conversation)
        assert [m.images for m in exported] == [(CAT,), (), ()]
        assert exported[0].token_count == 770

        assert await store.edit_message(conversation, started.turn_id, "what is this animal?", 772)
        [edited, *_] = await store.recent(conversation, 2000)
        assert (edited.content, edited.images) == ("what is this animal?", (CAT,)), "an edit keeps the images"
    finally:
        await store.close()

    reopened = history_store(migrated_url)  # nothing cached: from the database itself
    try:
        conversation = await reopened.conversation_id(KEY)
        assert [m.images for m in await reopened.recent(conversation, 2000)][0] == (CAT,)
    finally:
        await reopened.close()


async def test_a_search_finds_a_message_with_its_image_references(migrated_url: str) -> None:
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(KEY)
        started = await store.start_turn(conversation, StoredMessage("user", "my cat Miso", 770, images=(CAT,)), 2000)
        await store.finish_turn(conversation, StoredMessage("assistant", "Lovely!", 2, "brain"), started.turn_id)
        later = await store.start_turn(conversation, StoredMessage("user", "what is my cat called?", 5), 2000)
        [found] = await store.search(conversation, ["miso"], before_turn=later.turn_id, limit=3)
        assert (found.message.content, found.message.images) == ("my cat Miso", (CAT,))
    finally:
        await store.close()
