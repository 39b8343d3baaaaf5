"""Full-text search of a conversation's older messages, on real migrated databases (SQLite FTS5, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.engines import ECHO
from app.storage import ConversationKey, HistoryStore, StoredMessage, create_engine, downgrade, migrate
from app.storage.search import CANDIDATES_PER_TERM
from tests.helpers import history_store

KEY = ConversationKey(user_id=42, scope="dm")
OTHER_KEY = ConversationKey(user_id=43, scope="dm")
FAR_FUTURE_TURN = 10**12  # older than this: every stored message


async def _turn(
    store: HistoryStore, conversation: int, question: str, answer: str | None, engine: str = "brain"
) -> int:
    """A question and its answer, stored as a turn stores them; returns the turn's id."""
    turn = await store.append(conversation, StoredMessage("user", question, 5))
    if answer is not None:
        await store.append(conversation, StoredMessage("assistant", answer, 5, engine), turn_id=turn)
    return turn


@pytest.fixture
async def store(migrated_url: str):  # type: ignore[no-untyped-def]
    opened = history_store(migrated_url)
    yield opened
    await opened.close()


async def test_a_fact_planted_300_turns_back_is_found_by_its_words_with_its_answer_and_date(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    planted = await _turn(store, conversation, "My dog is called Biscuit", "Biscuit is a lovely name for a dog!")
    for i in range(300):
        last = await _turn(store, conversation, f"What about the weather on day {i}?", f"Day {i} looks sunny.")
    found = await store.search(conversation, ["Biscuit"], before_turn=last, limit=3)
    assert [f.message.id for f in found] == [planted]
    [fact] = found
    assert (fact.message.turn, fact.message.role, fact.message.content) == (planted, "user", "My dog is called Biscuit")
    assert fact.answer == StoredMessage("assistant", "Biscuit is a lovely name for a dog!", 5, "brain")
    assert fact.message.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - fact.message.created_at) < timedelta(minutes=5)


async def test_stemming_finds_a_plural_for_its_singular(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    turn = await _turn(store, conversation, "I walked both dogs in the running rain", None)
    assert [f.message.id for f in await store.search(conversation, ["dog"], before_turn=FAR_FUTURE_TURN, limit=5)] == [
        turn
    ]
    assert [f.message.id for f in await store.search(conversation, ["runs"], before_turn=FAR_FUTURE_TURN, limit=5)] == [
        turn
    ]


async def test_results_are_ranked_the_message_with_more_of_the_terms_first(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    one_term = await _turn(store, conversation, "A bicycle went past this morning", None)
    three_terms = await _turn(store, conversation, "Someone stole my red bicycle from the garage", None)
    two_terms = await _turn(store, conversation, "The red paint on the old bicycle is fading", None)
    await _turn(store, conversation, "Nothing to see here", None)
    found = await store.search(conversation, ["red", "bicycle", "garage"], before_turn=FAR_FUTURE_TURN, limit=10)
    assert [f.message.id for f in found] == [three_terms, two_terms, one_term]
    assert [
        f.message.id
        for f in await store.search(conversation, ["red", "bicycle", "garage"], before_turn=FAR_FUTURE_TURN, limit=2)
    ] == [three_terms, two_terms]


async def test_a_search_never_returns_another_conversations_messages(store) -> None:  # type: ignore[no-untyped-def]
    mine = await store.conversation_id(KEY)
    theirs = await store.conversation_id(OTHER_KEY)
    await _turn(store, theirs, "My secret password hint is pineapple", "Noted: pineapple.")
    assert await store.search(mine, ["pineapple"], before_turn=FAR_FUTURE_TURN, limit=5) == []
    own = await _turn(store, mine, "My secret password hint is pineapple", None)
    assert [f.message.id for f in await store.search(mine, ["pineapple"], before_turn=FAR_FUTURE_TURN, limit=5)] == [
        own
    ]


async def test_a_number_is_searched_in_the_text_and_never_matches_the_conversation_itself(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    await _turn(store, conversation, "Nothing but words here", "Indeed, only words.")
    assert await store.search(conversation, [str(conversation)], before_turn=FAR_FUTURE_TURN, limit=5) == []
    numbered = await _turn(store, conversation, f"My locker is number {conversation}", None)
    found = await store.search(conversation, [str(conversation)], before_turn=FAR_FUTURE_TURN, limit=5)
    assert [f.message.id for f in found] == [numbered]


async def test_echo_replies_are_never_found_nor_brought_as_an_answer(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    question = await _turn(store, conversation, "Tell me about zebras", "zebras zebras zebras", engine=ECHO)
    found = await store.search(conversation, ["zebras"], before_turn=FAR_FUTURE_TURN, limit=5)
    assert [(f.message.id, f.message.role, f.answer) for f in found] == [(question, "user", None)]
    await store.append(conversation, StoredMessage("assistant", "Only echo speaks of okapis", 5, ECHO))
    assert await store.search(conversation, ["okapis"], before_turn=FAR_FUTURE_TURN, limit=5) == []


async def test_nothing_at_or_after_before_turn_is_found(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    older = await _turn(store, conversation, "I planted tulips", None)
    window_start = await _turn(store, conversation, "The tulips came up", "Lovely tulips.")
    await _turn(store, conversation, "The tulips faded", "Tulips do.")
    # An answer stored late but belonging to the older turn is of that turn: older than the window.
    await store.append(conversation, StoredMessage("assistant", "Tulips need a cold winter", 5, "brain"), turn_id=older)
    found = await store.search(conversation, ["tulips"], before_turn=window_start, limit=10)
    assert [(f.message.id, f.message.turn) for f in found] == [(older, older)]
    assert found[0].answer == StoredMessage("assistant", "Tulips need a cold winter", 5, "brain")
    assert await store.search(conversation, ["tulips"], before_turn=older, limit=10) == []


async def test_one_result_per_turn_a_found_answer_alone_or_with_its_question(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    both = await _turn(store, conversation, "Which lighthouse did we visit?", "The lighthouse at Hook Head.")
    answer_only = await _turn(store, conversation, "Where should we go next?", "Another lighthouse, maybe Fanad.")
    found = await store.search(conversation, ["lighthouse"], before_turn=FAR_FUTURE_TURN, limit=10)
    assert sorted(f.message.turn for f in found) == [both, answer_only]
    by_turn = {f.message.turn: f for f in found}
    assert by_turn[both].message.content == "Which lighthouse did we visit?"
    assert by_turn[both].answer == StoredMessage("assistant", "The lighthouse at Hook Head.", 5, "brain")
    alone = by_turn[answer_only]
    assert (alone.message.role, alone.message.content, alone.answer) == (
        "assistant",
        "Another lighthouse, maybe Fanad.",
        None,
    )
    assert alone.message.id != answer_only and alone.message.turn == answer_only
    assert len(await store.search(conversation, ["lighthouse"], before_turn=FAR_FUTURE_TURN, limit=1)) == 1


async def _fts_rows(store: HistoryStore, term: str) -> int:
    async with store._engine.connect() as connection:
        await connection.exec_driver_sql("INSERT INTO messages_search (messages_search) VALUES ('integrity-check')")
        query = text("SELECT count(*) FROM messages_search WHERE messages_search MATCH :term")
        return (await connection.execute(query, {"term": term})).scalar_one()


async def test_a_reset_leaves_nothing_findable_even_when_row_ids_are_reused(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    await _turn(store, conversation, "My bank is Sparrow Savings", "Sparrow Savings, noted.")
    assert await store.reset(conversation) == 2
    assert await store.search(conversation, ["Sparrow"], before_turn=FAR_FUTURE_TURN, limit=5) == []
    # SQLite hands out the erased ids again: an index row left behind would now point at the new message.
    reused = await _turn(store, conversation, "Something else entirely", "Indeed.")
    assert await store.search(conversation, ["Sparrow"], before_turn=FAR_FUTURE_TURN, limit=5) == []
    assert [f.message.id for f in await store.search(conversation, ["else"], before_turn=FAR_FUTURE_TURN, limit=5)] == [
        reused
    ]
    if store.dialect == "sqlite":  # the index itself, not only what the store's query returns
        assert await _fts_rows(store, "sparrow") == 0
        assert await _fts_rows(store, "entirely") == 1


async def test_an_edited_message_is_found_by_its_new_words_only(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    turn = await _turn(store, conversation, "My favourite colour is teal", None)
    async with store._engine.begin() as connection:  # an operator's fix: the update trigger keeps the index
        await connection.execute(
            text("UPDATE messages SET content = 'My favourite colour is amber' WHERE id = :id"), {"id": turn}
        )
    assert await store.search(conversation, ["teal"], before_turn=FAR_FUTURE_TURN, limit=5) == []
    assert [
        f.message.id for f in await store.search(conversation, ["amber"], before_turn=FAR_FUTURE_TURN, limit=5)
    ] == [turn]


SYNTAX = [
    '"',
    '""',
    "*",
    "NEAR",
    "NEAR(gate wire)",
    "-",
    "-gate",
    ":",
    "content:gate",
    "OR",
    "AND",
    "NOT",
    "(",
    ")",
    "(gate",
    'gate"',
    "gate*",
    "^gate",
    "gate OR",
    "x & y | !z",
    "<->",
    "'",
    "\\",
    "{gate}",
    "+",
    "",
]


async def test_terms_with_query_syntax_are_searched_as_plain_text_and_never_raise(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    turn = await _turn(store, conversation, "NEAR the gate: a wire (copper) - not OR", None)
    for term in SYNTAX:
        found = await store.search(conversation, [term], before_turn=FAR_FUTURE_TURN, limit=5)
        assert [f.message.id for f in found] in ([], [turn]), term
    # A term of several words is a phrase: these words are in the message, but not in this order. And
    # "content:gate" is no column filter (FTS5) or weight (PostgreSQL): the message has no word "content".
    for phrase in ["NEAR(gate wire)", "content:gate"]:
        assert await store.search(conversation, [phrase], before_turn=FAR_FUTURE_TURN, limit=5) == [], phrase
    for term in ["NEAR", "NEAR(the gate)", "-gate", "gate:", "(gate", 'gate"', "gate*", "^gate", "{gate}"]:
        found = await store.search(conversation, [term], before_turn=FAR_FUTURE_TURN, limit=5)
        assert [f.message.id for f in found] == [turn], term
    # "-gate" is the word, not "without gate": a message without it is not found by it
    await _turn(store, conversation, "Nothing relevant", None)
    assert [
        f.message.id for f in await store.search(conversation, ["-gate"], before_turn=FAR_FUTURE_TURN, limit=5)
    ] == [turn]
    assert await store.search(conversation, SYNTAX, before_turn=FAR_FUTURE_TURN, limit=5) != []
    assert await store.search(conversation, [], before_turn=FAR_FUTURE_TURN, limit=5) == []


async def test_the_migration_indexes_messages_stored_before_it_and_downgrade_removes_the_index(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine, "0004")
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO conversations (user_id, scope) VALUES (42, 'dm')"))
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content, token_count)"
                    " VALUES (1, 'user', 'Before the index: my cat is Marmalade', 8)"
                )
            )
        await migrate(engine)
        store = history_store(database_url)
        try:
            conversation = await store.conversation_id(KEY)
            found = await store.search(conversation, ["marmalade"], before_turn=FAR_FUTURE_TURN, limit=5)
            assert [f.message.content for f in found] == ["Before the index: my cat is Marmalade"]
        finally:
            await store.close()
        assert await _search_objects(engine) != set()
        await downgrade(engine, "0004")
        assert await _search_objects(engine) == set()
        async with engine.begin() as connection:  # no trigger left behind refers to the dropped table
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, role, content, token_count) VALUES (1, 'user', 'after', 1)"
                )
            )
            await connection.execute(text("DELETE FROM messages"))
    finally:
        await engine.dispose()


async def _search_objects(engine) -> set[str]:  # type: ignore[no-untyped-def]
    """The names of the full-text index's objects in the database."""
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            listed = await connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE name LIKE 'messages_search%'"
            )
        else:
            listed = await connection.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_messages_search'"
            )
        return set(listed.scalars().all())


async def test_a_short_message_that_states_the_fact_outranks_a_long_one_that_mentions_the_word(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    stated = await _turn(store, conversation, "My dog is named Rex", None)
    chatter = (
        "Long day today: I went to the market, then to the park where a man was walking a huge dog, then I "
        "cooked dinner, watched a film, read a chapter of my book and finally went to bed rather late again."
    )
    await _turn(store, conversation, chatter, None)
    found = await store.search(conversation, ["dog"], before_turn=FAR_FUTURE_TURN, limit=2)
    assert [f.message.id for f in found][0] == stated


async def test_an_old_message_with_a_rare_word_is_found_among_more_newer_matches_than_are_ranked(store) -> None:  # type: ignore[no-untyped-def]
    conversation = await store.conversation_id(KEY)
    planted = await _turn(store, conversation, "My dog is called Nimbus", None)
    for i in range(CANDIDATES_PER_TERM + 30):
        await _turn(store, conversation, f"Walked the dog again, day {i}", None)
    found = await store.search(conversation, ["dog", "nimbus"], before_turn=FAR_FUTURE_TURN, limit=3)
    assert found[0].message.id == planted, "each word brings its own newest matches: the rare one is among them"
    only_dog = await store.search(conversation, ["dog"], before_turn=FAR_FUTURE_TURN, limit=3)
    assert planted not in [f.message.id for f in only_dog]  # the bound: a word's older matches are not ranked
