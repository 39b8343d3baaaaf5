"""Full-text search of one conversation's older messages: each database's query, built from plain keywords.

The caller's terms are words, never query syntax: each becomes a quoted phrase, the phrases OR-ed, and the
result is a bound parameter. Inside a quoted phrase FTS5 and PostgreSQL's `websearch_to_tsquery` only tokenize,
so `"`, `*`, `NEAR`, `-`, `:`, `OR` or parentheses in a term are searched as text and never raise. A term with
no word in it is dropped, and no term left means no query at all.

Both databases hand out the same: the conversation's matching messages older than a turn, without the never-sent
engine's replies, best first (ties go to the newer message), each user message with the first answer that followed
it. `found_messages` makes one result per turn of those rows.

How they rank differs. PostgreSQL ranks the newest `CANDIDATES_PER_TERM` per term of the conversation's matches
with ts_rank. On SQLite, FTS5's bm25 would
count every message of every conversation holding a word (its IDF) on each search, and rank every match of the
conversation: a word a long conversation uses a lot costs tens of milliseconds. So a search takes, for each word,
the newest `CANDIDATES_PER_TERM` of the conversation's messages that hold it (FTS5 walks its index newest first and
stops there, whatever the conversation's length; a rare word's every match is among them), and `rank_candidates`
scores those with BM25 computed over the candidates themselves, from the words FTS5 marked in each (`highlight`):
a word rare among them weighs more. Then the chosen messages are read with their answers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    Select,
    TextClause,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
)

from app.storage._statements import MESSAGE_FIELDS, TURN_ORDER, images_of, sent_to_models, utc
from app.storage.models import SEARCH_CONFIG, SEARCH_VECTOR, SQLITE_SEARCH_TABLE, messages
from app.storage.records import FoundMessage, StoredMessage

_WORD = re.compile(r"\w")
# A turn holds a question and one answer, both of which may match: twice as many rows cover `limit` turns.
ROWS_PER_TURN = 2
CANDIDATES_PER_TERM = 50  # the newest matches of each word that are ranked (see the module's text)
BM25_K1, BM25_B = 1.2, 0.75  # the usual constants, as FTS5's bm25 has them
_MARKED = re.compile("\x01(.*?)\x02", re.DOTALL)
_TOKEN = re.compile(r"\w+")


def fts5_queries(conversation_id: int, terms: Iterable[str]) -> list[str]:
    """For each term, an FTS5 MATCH expression that finds the conversation's messages holding it (a `"` inside the
    phrase is written twice). The conversation is matched inside the index (its id is a token of the index's
    `conversation_id` column), so FTS5 never visits another conversation's rows; the term is matched in `content`
    alone, so a term that is a number never matches a conversation's id."""
    return [
        f'conversation_id : "{int(conversation_id)}" AND content : "{term.replace(chr(34), chr(34) * 2)}"'
        for term in terms
        if _WORD.search(term)
    ]


@cache
def sqlite_candidates(term_count: int) -> TextClause:
    """The newest `per_term` messages older than `before_turn` holding each term (`:q0`, `:q1`, ...), with the
    term's tokens marked in their text."""
    one = (
        "SELECT * FROM (SELECT rowid AS id, highlight({table}, 0, char(1), char(2)) AS marked FROM {table} "
        "WHERE {table} MATCH :q{index} AND rowid < :before_turn ORDER BY rowid DESC LIMIT :per_term)"
    )
    return text(" UNION ".join(one.format(table=SQLITE_SEARCH_TABLE, index=i) for i in range(term_count)))


def rank_candidates(candidates: Sequence[tuple[int, str]], most: int) -> list[int]:
    """The ids of the best `most` candidates (id, text with one term's tokens marked: a message holding several
    terms comes once per term), by BM25 over the candidates: each marked word weighs by how rare it is among them,
    a short message more than a long one."""
    if not candidates:
        return []
    merged: dict[int, tuple[Counter[str], int]] = {}
    for message_id, marked in candidates:
        words, length = merged.get(message_id, (Counter(), max(1, len(_TOKEN.findall(marked)))))
        words.update(word.lower() for word in _MARKED.findall(marked))
        merged[message_id] = (words, length)
    documents = [(message_id, words, length) for message_id, (words, length) in merged.items()]
    total = len(documents)
    average_length = sum(length for _, _, length in documents) / total
    frequency = Counter(word for _, words, _ in documents for word in words)
    idf = {word: math.log((total - count + 0.5) / (count + 0.5) + 1) for word, count in frequency.items()}

    def score(words: Counter[str], length: int) -> float:
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / average_length)
        return sum(idf[word] * tf * (BM25_K1 + 1) / (tf + norm) for word, tf in words.items())

    ranked = sorted(documents, key=lambda doc: (-score(doc[1], doc[2]), -doc[0]))
    return [message_id for message_id, _, _ in ranked[:most]]


def websearch_query(terms: Iterable[str]) -> str | None:
    """A `websearch_to_tsquery` text that finds any of the terms (a phrase cannot hold a `"`: it becomes a space)."""
    phrases = ['"' + term.replace('"', " ") + '"' for term in terms if _WORD.search(term)]
    return " or ".join(phrases) or None


def search_parameters(conversation_id: int, before_turn: int, limit: int, never_sent: str | None) -> dict[str, Any]:
    """What both databases' statements take (each adds its query's own)."""
    return {
        "conversation_id": conversation_id,
        "before_turn": before_turn,
        "never_sent": never_sent or "",  # no engine is named "": then every stored message counts
        "most_rows": limit * ROWS_PER_TURN,
    }


def _search_statement(matches: Select) -> Select:
    """The shared shape around `matches`, each database's selection of matching messages: their `id` and their
    `score` (lower is better)."""
    found = matches.subquery("found")
    hits = (
        select(*MESSAGE_FIELDS)
        .join_from(found, messages, messages.c.id == found.c.id)
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            bindparam("before_turn") > TURN_ORDER,
            sent_to_models(),
        )
        .add_columns(found.c.score)
        .order_by(found.c.score, messages.c.id.desc())
        .limit(bindparam("most_rows"))
        .subquery("hits")
    )
    candidate = messages.alias("candidate")
    # The question's first stored answer, looked up by ix_messages_turn.
    first_answer = (
        select(func.min(candidate.c.id))
        .where(candidate.c.turn_id == hits.c.id, candidate.c.role == "assistant", sent_to_models(candidate))
        .scalar_subquery()
    )
    answer = messages.alias("answer")
    return (
        select(
            hits.c.id,
            hits.c.turn,
            hits.c.role,
            hits.c.content,
            hits.c.token_count,
            hits.c.engine,
            hits.c.created_at,
            hits.c.images,
            answer.c.id.label("answer_id"),
            answer.c.created_at.label("answer_created_at"),
            answer.c.content.label("answer_content"),
            answer.c.token_count.label("answer_token_count"),
            answer.c.engine.label("answer_engine"),
        )
        .outerjoin_from(hits, answer, and_(hits.c.role == "user", answer.c.id == first_answer))
        .order_by(hits.c.score, hits.c.id.desc())
    )


def _sqlite_chosen() -> Select:
    """The messages `rank_candidates` chose (`:ids`), in the shared shape; the caller orders them by its ranking."""
    chosen = select(messages.c.id, literal_column("0").label("score")).where(
        messages.c.id.in_(bindparam("ids", expanding=True))
    )
    return _search_statement(chosen)


def _postgres_search() -> Select:
    query = func.websearch_to_tsquery(SEARCH_CONFIG, bindparam("query"))
    # Higher is better for ts_rank; normalization 1 divides by 1 + log(the message's length), so a short message
    # that states a fact outranks a long one that mentions the word in passing (as bm25 does on SQLite).
    # The same expression as ix_messages_search, so the GIN index serves it; the conversation bounds the rest, and
    # only the newest matches are ranked (ts_rank reads each one's text again), as on SQLite.
    newest = (
        select(messages.c.id, messages.c.content)
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            SEARCH_VECTOR.op("@@")(query),
            bindparam("before_turn") > messages.c.id,
        )
        # `id + 0`, not `id`: ordered by the column itself, the planner may walk the conversation's index newest
        # first, computing every message's tsvector until enough match (36 ms in a 2,000-message conversation
        # for a rare word, measured); this way it takes the GIN index's matches and sorts those.
        .order_by((messages.c.id + 0).desc())
        .limit(bindparam("candidates"))
        .subquery("newest")
    )
    score = -func.ts_rank(func.to_tsvector(SEARCH_CONFIG, newest.c.content), query, literal_column("1"))
    return _search_statement(select(newest.c.id, score.label("score")))


SQLITE_CHOSEN = _sqlite_chosen()
POSTGRES_SEARCH = _postgres_search()


def found_messages(rows: Sequence[Any], limit: int) -> list[FoundMessage]:
    """One result per turn, best first, at most `limit`. A turn whose question and answer both matched is its
    question with the answer, at the place of the better of the two."""
    by_turn: dict[int, FoundMessage] = {}  # keeps the order in which turns first appear
    for row in rows:
        earlier = by_turn.get(row.turn)
        if earlier is None and len(by_turn) == limit:
            continue
        if earlier is not None and (earlier.message.role == "user" or row.role != "user"):
            continue
        answer = None
        if row.answer_id is not None:
            answer = StoredMessage(
                "assistant",
                row.answer_content,
                row.answer_token_count,
                row.answer_engine,
                id=row.answer_id,
                turn=row.turn,
                created_at=utc(row.answer_created_at),
            )
        message = StoredMessage(
            row.role, row.content, row.token_count, row.engine,
            images=images_of(row.images), id=row.id, turn=row.turn, created_at=utc(row.created_at),
        )  # fmt: skip
        by_turn[row.turn] = FoundMessage(message, answer)
    return list(by_turn.values())
