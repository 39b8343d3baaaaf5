"""The SQL of the stores, built once: the window query and the writes that a retry cannot double.

Writes are idempotent by the turn's key (`messages.turn_key`, unique with the role): a retry after a lost
reply inserts nothing and finds the first copy. An answer is inserted only while its question still exists
(a reset or an operator's delete wins over an answer still being written), and takes its turn key from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import Insert, bindparam, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.storage.models import conversations, messages
from app.storage.records import StoredMessage

TURN_ORDER = func.coalesce(messages.c.turn_id, messages.c.id)
ENGINE_NAME_LENGTH: int = messages.c.engine.type.length  # type: ignore[attr-defined]
MESSAGE_COLUMNS = ("conversation_id", "turn_id", "role", "content", "token_count", "engine", "latency_ms")
NO_MESSAGE = 0  # an id no message has (ids start at 1): `exclude_id` when nothing is excluded


def _recent_statement():  # type: ignore[no-untyped-def]
    """Newest-first running total of token costs over at most `most_rows` rows, cut where it passes the budget.

    Every message costs at least one token plus the overhead, so `most_rows` bounds the scan of the index
    whatever the length of the stored history. `exclude_id` leaves out the turn's own new message.
    """
    newest = (
        select(
            messages.c.id,
            TURN_ORDER.label("turn"),
            messages.c.role,
            messages.c.content,
            messages.c.token_count,
            messages.c.engine,
            func.sum(messages.c.token_count + bindparam("overhead"))
            .over(order_by=(TURN_ORDER.desc(), messages.c.id.desc()), rows=(None, 0))
            .label("spent"),
        )
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            messages.c.id != bindparam("exclude_id"),
            or_(messages.c.engine.is_(None), messages.c.engine != bindparam("never_sent")),
        )
        .order_by(TURN_ORDER.desc(), messages.c.id.desc())
        .limit(bindparam("most_rows"))
        .subquery()
    )
    return (
        select(newest.c.role, newest.c.content, newest.c.token_count, newest.c.engine)
        .where(newest.c.spent <= bindparam("budget"))
        .order_by(newest.c.turn, newest.c.id)
    )


RECENT = _recent_statement()
DELETE_CONVERSATION = delete(messages).where(messages.c.conversation_id == bindparam("conversation_id"))
# Locked by a reset before it deletes (PostgreSQL): answers being inserted beside these questions commit first,
# so the delete, a statement of its own with a fresh snapshot, sees and erases them.
QUESTIONS_OF_CONVERSATION = (
    select(messages.c.id)
    .where(messages.c.conversation_id == bindparam("conversation_id"), messages.c.role == "user")
    .with_for_update()
)
FIND_BY_TURN_KEY = select(messages.c.id).where(
    messages.c.turn_key == bindparam("turn_key"), messages.c.role == bindparam("role")
)
# The conversation and TURN_ORDER let it walk ix_messages_conversation_turn: turn_id alone has no index.
FIND_ANSWER = select(messages.c.id).where(
    messages.c.conversation_id == bindparam("conversation_id"),
    bindparam("turn_id") == TURN_ORDER,
    messages.c.turn_id == bindparam("turn_id"),
    messages.c.role == bindparam("role"),
)
FIND_CONVERSATION = select(conversations.c.id).where(
    conversations.c.user_id == bindparam("user_id"), conversations.c.scope == bindparam("scope")
)


@dataclass(frozen=True)
class Writes:
    insert_message: Insert  # returns the new id, or no row when the turn key already has this role's message
    insert_answer: Insert  # the same, and no row when the question (turn_id) is gone
    create_conversation: Insert  # does nothing when the conversation exists


@cache
def writes_for(dialect: str) -> Writes:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {name: bindparam(name, type_=messages.c[name].type) for name in MESSAGE_COLUMNS}
    question = messages.alias("question")
    # FOR KEY SHARE (PostgreSQL): a reset that holds the question waits for nothing and wins; one that comes
    # later waits for this insert's commit, then erases the answer too (see QUESTIONS_OF_CONVERSATION).
    answer_source = (
        select(*values.values(), question.c.turn_key)
        .where(
            question.c.id == bindparam("turn_id"),
            question.c.conversation_id == bindparam("conversation_id"),
            question.c.role == "user",
        )
        .with_for_update(read=True, key_share=True, of=question)
    )
    return Writes(
        insert_message=insert(messages)
        .values({**values, "turn_key": bindparam("turn_key", type_=messages.c.turn_key.type)})
        .on_conflict_do_nothing(index_elements=["turn_key", "role"])
        .returning(messages.c.id),
        insert_answer=insert(messages)
        .from_select([*MESSAGE_COLUMNS, "turn_key"], answer_source)
        .on_conflict_do_nothing(index_elements=["turn_key", "role"])
        .returning(messages.c.id),
        create_conversation=insert(conversations)
        .values(user_id=bindparam("user_id"), scope=bindparam("scope"))
        .on_conflict_do_nothing(index_elements=["user_id", "scope"]),
    )


def recent_parameters(
    conversation_id: int, token_budget: int, overhead: int, never_sent: str | None, exclude_id: int = NO_MESSAGE
) -> dict[str, int | str]:
    return {
        "conversation_id": conversation_id,
        "never_sent": never_sent or "",  # no engine is named "": then every stored message counts
        "exclude_id": exclude_id,
        "overhead": overhead,
        "budget": token_budget,
        "most_rows": token_budget // (overhead + 1) + 1,
    }


def message_row(
    conversation_id: int,
    message: StoredMessage,
    *,
    turn_id: int | None = None,
    turn_key: str | None = None,
    latency_ms: int | None = None,
) -> dict:
    return {
        "conversation_id": conversation_id,
        "turn_id": turn_id,
        "turn_key": turn_key,
        "role": message.role,
        "content": message.content,
        "token_count": message.token_count,
        # A plugin brain may have any name; the column has a length (PostgreSQL enforces it, SQLite does not).
        "engine": None if message.engine is None else message.engine[:ENGINE_NAME_LENGTH],
        "latency_ms": latency_ms,
    }
