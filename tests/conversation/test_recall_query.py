"""The words a turn searches its older history for: a recall question's own words never drown the ranking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.conversation.recall_query import MAX_TERMS, STOP_WORDS, recall_terms
from app.storage import ConversationKey, HistoryStore, StoredMessage
from tests.helpers import history_store


@pytest.mark.parametrize(
    ("message", "terms"),
    [
        ("what was the name of my dog again?", ["dog"]),
        ("Did I tell you where I live?", ["live"]),
        ("What's my sister's birthday again?", ["sister", "birthday"]),
        ("Remind me, which book did you recommend?", ["book", "recommend"]),
        ("WHAT CAR DO I DRIVE", ["car", "drive"]),
        ("dog, Dog, DOG!", ["dog"]),
    ],
)
def test_a_recall_question_keeps_only_what_it_asks_about(message: str, terms: list[str]) -> None:
    assert recall_terms(message) == terms


@pytest.mark.parametrize(
    "message",
    ["What did I tell you again?", "Do you remember what I said?", "ok thanks!", "?!…", "", "   \n  "],
)
def test_a_message_of_stop_words_only_searches_nothing(message: str) -> None:
    assert recall_terms(message) == []


def test_words_are_unicode_and_lower_cased() -> None:
    assert recall_terms("Café CRÈME für Jürgen") == ["café", "crème", "jürgen"]  # over the cap: the longest
    assert recall_terms("Ёлка and ÉCOLE") == ["ёлка", "école"]
    assert recall_terms("東京に住んでいます") == [
        "東京に住んでいます"
    ]  # a run without spaces is one word, as FTS5 sees it


def test_query_syntax_comes_out_as_plain_words() -> None:
    assert recall_terms('dog* OR "cat" NEAR(x, y) AND NOT -fish') == ["dog", "cat", "fish"]
    assert recall_terms("content:tank^2 {bird}") == ["content", "tank", "bird"]
    assert recall_terms("snake_case and kebab-case") == ["snake", "case", "kebab"]
    assert recall_terms("my partner's name, y'know") == ["partner"]


def test_the_question_of_a_long_message_keeps_its_words() -> None:
    day = (
        "Ugh, long day. The weather turned gloomy and the traffic was exhausting, then the neighbours started "
        "renovating the apartment downstairs. By the way, what is my dog named?"
    )
    assert "dog" in recall_terms(day)
    assert len(recall_terms(day)) == MAX_TERMS
    assert "dog" in recall_terms("What is my dog named? " + day.removesuffix(" By the way, what is my dog named?"))


@given(st.text())
def test_terms_are_few_distinct_words_of_the_message_in_its_order(text: str) -> None:
    terms = recall_terms(text)
    assert len(terms) <= MAX_TERMS
    words_in_order = list(dict.fromkeys(re.findall(r"[^\W_]+", text.lower())))
    assert terms == [word for word in words_in_order if word in terms]
    assert all(len(term) > 1 and term not in STOP_WORDS for term in terms)


async def test_the_terms_find_a_planted_fact_among_chatter_made_of_the_questions_words(migrated_url: str) -> None:
    """On each database, through the real search: chatter full of the question's frame ("what was the name ...
    again? do you remember ...") never outranks the turn that says it."""
    store = history_store(migrated_url)
    try:
        conversation = await store.conversation_id(ConversationKey(user_id=7, scope="dm"))
        planted = await _turn(store, conversation, "By the way, my dog is named Rex.", "Rex is a great name!")
        for day in range(40):
            await _turn(
                store,
                conversation,
                f"What was the name of that song again, the one from day {day}? Do you remember what I told you?",
                "I remember you said it was catchy, but you never told me its name again.",
            )
        newest = await _turn(store, conversation, "Anyway, enough about that.", "Sure!")
        terms = recall_terms("what was the name of my dog again?")
        found = await store.search(conversation, terms, before_turn=newest, limit=3)
        assert found and found[0].message.id == planted
        assert found[0].answer is not None and found[0].answer.content == "Rex is a great name!"
    finally:
        await store.close()


async def _turn(store: HistoryStore, conversation: int, question: str, answer: str) -> int:
    turn = await store.append(conversation, StoredMessage("user", question, 5))
    await store.append(conversation, StoredMessage("assistant", answer, 5, "brain"), turn_id=turn)
    return turn
