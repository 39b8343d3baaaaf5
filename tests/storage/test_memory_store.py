"""What long-term memory asks of a store, on real migrated databases: whether a window left older messages out,
the rolling summary saved only over the version it started from, and /forget erasing every scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.engines import ECHO
from app.storage import ConversationKey, StoredMessage, Summary
from tests.helpers import history_store

KEY = ConversationKey(user_id=42, scope="dm")
GUILD_KEY = ConversationKey(user_id=42, scope="guild:7")
OTHER_KEY = ConversationKey(user_id=43, scope="dm")
OVERHEAD = 5


@pytest.fixture
async def store(migrated_url: str):  # type: ignore[no-untyped-def]
    opened = history_store(migrated_url)
    yield opened
    await opened.close()


async def _turn(store, conversation: int, question: str, answer: str, engine: str = "brain") -> int:  # type: ignore[no-untyped-def]
    turn = (await store.start_turn(conversation, StoredMessage("user", question, 5), 1000, OVERHEAD)).turn_id
    await store.finish_turn(conversation, StoredMessage("assistant", answer, 5, engine), turn)
    return turn


async def test_a_turn_is_told_whether_older_messages_lie_beyond_its_window(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    first = await _turn(store, conversation, "first question", "first answer")
    started = await store.start_turn(conversation, StoredMessage("user", "second", 5), 1000, OVERHEAD)
    assert not started.has_older
    assert [(m.id, m.turn) for m in started.history] == [(first, first), (first + 1, first)]
    await store.finish_turn(conversation, StoredMessage("assistant", "second answer", 5, "brain"), started.turn_id)

    # 10 tokens a message: 30 holds the newest three of the four, and an older one is stored.
    started = await store.start_turn(conversation, StoredMessage("user", "third", 5), 30, OVERHEAD)
    assert started.has_older
    assert [m.content for m in started.history] == ["first answer", "second", "second answer"]
    assert [m.turn for m in started.history] == [first, started.history[1].id, started.history[1].id]
    # The next turn of the same store (SQLite: its cached window) still knows, and the ids go on.
    again = await store.start_turn(conversation, StoredMessage("user", "fourth", 5), 30, OVERHEAD)
    assert again.has_older
    assert again.history[-1].id == started.turn_id and again.history[-1].content == "third"


async def test_echo_replies_beyond_the_window_do_not_count_as_older_messages(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)  # the service's store: echo's replies are never sent
    await _turn(store, conversation, "hello", "hello", engine=ECHO)
    started = await store.start_turn(conversation, StoredMessage("user", "again", 5), 10, OVERHEAD)
    assert [m.content for m in started.history] == ["hello"]
    assert not started.has_older


async def test_a_summary_is_saved_only_over_the_version_it_started_from(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    assert await store.summary(conversation) is None
    draft = await store.start_summary(conversation)
    assert draft.summary is None
    assert await store.summary(conversation) is None, "the empty row a job starts from is no summary"

    first = Summary("Sam has a dog named Biscuit.", 8, through_id=12, engine="brain")
    assert await store.save_summary(conversation, draft.version, first)
    saved = await store.summary(conversation)
    assert (saved.content, saved.token_count, saved.through_id, saved.engine) == (first.content, 8, 12, "brain")
    assert abs(datetime.now(UTC) - saved.updated_at) < timedelta(minutes=5)

    # A second job that started from the same version lost the race: its result is thrown away.
    assert not await store.save_summary(conversation, draft.version, Summary("stale", 1, through_id=9))
    assert (await store.summary(conversation)).content == first.content
    newer = await store.start_summary(conversation)
    assert newer.summary == saved and newer.version != draft.version


async def test_a_reset_erases_the_summary_and_a_running_job_cannot_bring_it_back(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    await _turn(store, conversation, "my secret is 1234", "noted")
    draft = await store.start_summary(conversation)
    await store.reset(conversation)
    assert not await store.save_summary(conversation, draft.version, Summary("their secret is 1234", 5, 2))
    assert await store.summary(conversation) is None
    # Nor once a new job started after the reset: the version moved on, it did not start again.
    fresh = await store.start_summary(conversation)
    assert fresh.summary is None and fresh.version != draft.version
    assert not await store.save_summary(conversation, draft.version, Summary("their secret is 1234", 5, 2))
    assert await store.save_summary(conversation, fresh.version, Summary("a fresh start", 3, 0))
    assert (await store.memory_stats(conversation)).messages == 0


async def test_unsummarised_is_what_fell_out_after_the_last_summary_in_order_without_echo(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    turns = [await _turn(store, conversation, f"question {i}", f"answer {i}") for i in range(6)]
    await _turn(store, conversation, "question echoed", "question echoed", engine=ECHO)
    window_start = await _turn(store, conversation, "in the window", "also in the window")
    covered_through = turns[1] + 1  # the summary covers turns 0 and 1, answers included
    found = await store.unsummarised(conversation, after_id=covered_through, before_turn=window_start, limit=100)
    assert [m.content for m in found] == [
        *(text for i in range(2, 6) for text in (f"question {i}", f"answer {i}")),
        "question echoed",
    ]
    assert all(m.id is not None and m.created_at is not None for m in found)
    limited = await store.unsummarised(conversation, after_id=0, before_turn=window_start, limit=3)
    assert [m.content for m in limited] == ["question 0", "answer 0", "question 1"]


async def test_forget_erases_every_scope_of_the_user_and_nothing_of_anyone_else(store, migrated_url: str) -> None:  # type: ignore[no-untyped-def]
    mine_dm, mine_guild, theirs = [await store.conversation_id(key) for key in (KEY, GUILD_KEY, OTHER_KEY)]
    await _turn(store, mine_dm, "my dog is called Biscuit", "lovely")
    await _turn(store, mine_guild, "Biscuit barked at the mailman", "oh no")
    await _turn(store, theirs, "Biscuit is my cat's name", "cute")
    draft = await store.start_summary(mine_dm)
    assert await store.save_summary(mine_dm, draft.version, Summary("Sam's dog is Biscuit", 5, 2))

    assert await store.forget_user(42) == 4
    assert await store.forget_user(42) == 0

    assert await store.summary(mine_dm) is None
    assert not await store.save_summary(mine_dm, draft.version + 1, Summary("Sam's dog is Biscuit", 5, 2))
    for key, forgotten_id in ((KEY, mine_dm), (GUILD_KEY, mine_guild)):
        # The conversation's row stays, empty: its id is never handed to someone else's conversation.
        assert await store.conversation_id(key) == forgotten_id
        assert await store.all_messages(forgotten_id) == []
        assert await store.search(forgotten_id, ["Biscuit"], before_turn=10**12, limit=5) == []
        started = await store.start_turn(forgotten_id, StoredMessage("user", "hello again", 5), 1000, OVERHEAD)
        assert started.history == [] and not started.has_older
    assert [m.content for m in await store.all_messages(theirs)] == ["Biscuit is my cat's name", "cute"]
    assert await _indexed_rows_matching(migrated_url, store, "biscuit") == 1, "the search index forgot them too"


async def _indexed_rows_matching(url: str, store, word: str) -> int:  # type: ignore[no-untyped-def]
    """How many messages the full-text index itself holds the word for (SQLite: the FTS5 table; PostgreSQL: the
    rows its GIN index covers)."""
    async with store._engine.connect() as connection:
        if url.startswith("sqlite"):
            query = text("SELECT count(*) FROM messages_search WHERE messages_search MATCH :word")
        else:
            query = text(
                "SELECT count(*) FROM messages WHERE to_tsvector('english'::regconfig, content) @@ to_tsquery(:word)"
            )
        return (await connection.execute(query, {"word": word})).scalar_one()


async def test_memory_stats_count_the_messages_since_the_first(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    empty = await store.memory_stats(conversation)
    assert (empty.messages, empty.first_at, empty.summary) == (0, None, None)
    await _turn(store, conversation, "hi", "hello")
    stats = await store.memory_stats(conversation)
    assert stats.messages == 2
    assert abs(datetime.now(UTC) - stats.first_at) < timedelta(minutes=5)
    exported = await store.all_messages(conversation)
    assert [(m.role, m.engine) for m in exported] == [("user", None), ("assistant", "brain")]
    assert all(m.created_at.tzinfo is not None for m in exported)
