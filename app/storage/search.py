"""Full-text search of one conversation's older messages: each database's query, built from plain keywords.

The caller's terms are words, never query syntax: each becomes a quoted phrase, the phrases OR-ed, and the
result is a bound parameter. Inside a quoted phrase FTS5 and PostgreSQL's `websearch_to_tsquery` only tokenize,
so `"`, `*`, `NEAR`, `-`, `:`, `OR` or parentheses in a term are searched as text and never raise. A term with
no word in it is dropped, and no term left means no query at all.

Both queries share one shape: the conversation's matching messages older than a turn, without the never-sent
engine's replies, best first (FTS5's bm25, PostgreSQL's ts_rank; ties go to the newer message), each user
message with the first answer that followed it. `found_messages` makes one result per turn of those rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, column, func, literal_column, or_, select, table

from app.storage._statements import TURN_ORDER, utc
from app.storage.models import SEARCH_CONFIG, SEARCH_VECTOR, SQLITE_SEARCH_TABLE, messages
from app.storage.records import FoundMessage, StoredMessage

_WORD = re.compile(r"\w")
# A turn holds a question and one answer, both of which may match: twice as many rows cover `limit` turns.
ROWS_PER_TURN = 2


def fts5_query(conversation_id: int, terms: Iterable[str]) -> str | None:
    """An FTS5 MATCH expression that finds the conversation's messages holding any of the terms (a `"` inside a
    phrase is written twice). The conversation is matched inside the index (its id is a token of the index's
    `conversation_id` column), so FTS5 never visits another conversation's rows; the terms are matched in
    `content` alone, so a term that is a number never matches a conversation's id."""
    phrases = ['"' + term.replace('"', '""') + '"' for term in terms if _WORD.search(term)]
    if not phrases:
        return None
    return f'conversation_id : "{int(conversation_id)}" AND content : ({" OR ".join(phrases)})'


def websearch_query(terms: Iterable[str]) -> str | None:
    """A `websearch_to_tsquery` text that finds any of the terms (a phrase cannot hold a `"`: it becomes a space)."""
    phrases = ['"' + term.replace('"', " ") + '"' for term in terms if _WORD.search(term)]
    return " or ".join(phrases) or None


def search_parameters(
    conversation_id: int, query: str, before_turn: int, limit: int, never_sent: str | None
) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "query": query,
        "before_turn": before_turn,
        "never_sent": never_sent or "",  # no engine is named "": then every stored message counts
        "most_rows": limit * ROWS_PER_TURN,
    }


def _counts(table_: Any) -> ColumnElement[bool]:
    """The message was not written by the never-sent engine."""
    return or_(table_.c.engine.is_(None), table_.c.engine != bindparam("never_sent"))


def _search_statement(matches: Select) -> Select:
    """The shared shape around `matches`, each database's selection of matching messages: their `id` and their
    `score` (lower is better)."""
    found = matches.subquery("found")
    hits = (
        select(
            messages.c.id,
            TURN_ORDER.label("turn"),
            messages.c.role,
            messages.c.content,
            messages.c.token_count,
            messages.c.engine,
            messages.c.created_at,
        )
        .join_from(found, messages, messages.c.id == found.c.id)
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            bindparam("before_turn") > TURN_ORDER,
            _counts(messages),
        )
        .add_columns(found.c.score)
        .order_by(found.c.score, messages.c.id.desc())
        .limit(bindparam("most_rows"))
        .subquery("hits")
    )
    candidate = messages.alias("candidate")
    # The question's first stored answer; FIND_ANSWER's conditions let it walk ix_messages_conversation_turn.
    first_answer = (
        select(func.min(candidate.c.id))
        .where(
            candidate.c.conversation_id == bindparam("conversation_id"),
            func.coalesce(candidate.c.turn_id, candidate.c.id) == hits.c.id,
            candidate.c.turn_id == hits.c.id,
            candidate.c.role == "assistant",
            _counts(candidate),
        )
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
            answer.c.id.label("answer_id"),
            answer.c.created_at.label("answer_created_at"),
            answer.c.content.label("answer_content"),
            answer.c.token_count.label("answer_token_count"),
            answer.c.engine.label("answer_engine"),
        )
        .outerjoin_from(hits, answer, and_(hits.c.role == "user", answer.c.id == first_answer))
        .order_by(hits.c.score, hits.c.id.desc())
    )


def _sqlite_search() -> Select:
    search_table = table(SQLITE_SEARCH_TABLE, column("rowid"))
    whole_table = literal_column(SQLITE_SEARCH_TABLE)  # FTS5 takes the table's name for MATCH and bm25()
    # Negative: lower is better. The conversation's token weighs nothing: every found message has it.
    score = func.bm25(whole_table, literal_column("1.0"), literal_column("0.0"))
    matches = select(search_table.c.rowid.label("id"), score.label("score")).where(
        whole_table.op("MATCH")(bindparam("query"))
    )
    return _search_statement(matches)


def _postgres_search() -> Select:
    query = func.websearch_to_tsquery(SEARCH_CONFIG, bindparam("query"))
    # Higher is better for ts_rank; normalization 1 divides by 1 + log(the message's length), so a short message
    # that states a fact outranks a long one that mentions the word in passing (as bm25 does on SQLite).
    score = -func.ts_rank(SEARCH_VECTOR, query, literal_column("1"))
    # The same expression as ix_messages_search, so the GIN index serves it; the conversation bounds the rest.
    matches = select(messages.c.id, score.label("score")).where(
        messages.c.conversation_id == bindparam("conversation_id"), SEARCH_VECTOR.op("@@")(query)
    )
    return _search_statement(matches)


SQLITE_SEARCH = _sqlite_search()
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
            row.role, row.content, row.token_count, row.engine, id=row.id, turn=row.turn, created_at=utc(row.created_at)
        )
        by_turn[row.turn] = FoundMessage(message, answer)
    return list(by_turn.values())
