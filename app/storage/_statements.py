"""The SQL of the stores, built once: the window query and the writes that a retry cannot double.

Writes are idempotent by the turn's key (`messages.turn_key`, unique with the role): a retry after a lost
reply inserts nothing and finds the first copy. An answer is inserted only while its question still exists
(a reset or an operator's delete wins over an answer still being written), and takes its turn key from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Insert, bindparam, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.storage.models import app_state, conversations, messages, summaries, token_usage
from app.storage.records import StoredImage, StoredMessage, Summary, UsageCharge

TURN_ORDER = func.coalesce(messages.c.turn_id, messages.c.id)
ENGINE_NAME_LENGTH: int = messages.c.engine.type.length  # type: ignore[attr-defined]
MESSAGE_COLUMNS = (
    "conversation_id", "turn_id", "role", "content", "token_count", "engine", "latency_ms", "images", "stopped"
)
NO_MESSAGE = 0  # an id no message has (ids start at 1): `exclude_id` when nothing is excluded


def sent_to_models(table: Any = messages) -> ColumnElement[bool]:
    """The message is not a reply of the never-sent engine (`:never_sent`, "" when there is none)."""
    return or_(table.c.engine.is_(None), table.c.engine != bindparam("never_sent"))


def _recent_statement():  # type: ignore[no-untyped-def]
    """Newest-first running total of token costs over at most `most_rows` rows, cut where it passes the budget,
    with the first row that passes it (`spent` > budget: the caller drops it; it tells that older messages exist).

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
            messages.c.images,
            func.sum(messages.c.token_count + bindparam("overhead"))
            .over(order_by=(TURN_ORDER.desc(), messages.c.id.desc()), rows=(None, 0))
            .label("spent"),
        )
        .where(
            messages.c.conversation_id == bindparam("conversation_id"),
            messages.c.id != bindparam("exclude_id"),
            sent_to_models(),
        )
        .order_by(TURN_ORDER.desc(), messages.c.id.desc())
        .limit(bindparam("most_rows"))
        .subquery()
    )
    return (
        select(
            newest.c.role,
            newest.c.content,
            newest.c.token_count,
            newest.c.engine,
            newest.c.id,
            newest.c.turn,
            newest.c.spent,
            newest.c.images,
        )
        .where(newest.c.spent - newest.c.token_count - bindparam("overhead") <= bindparam("budget"))
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
# --- one turn: its user edited or deleted their message ------------------------------------------------
# (An UPDATE's bound names must differ from its columns' names, as in SAVE_SUMMARY.)
EDIT_USER_MESSAGE = (
    update(messages)
    .where(
        messages.c.conversation_id == bindparam("of_conversation"),
        messages.c.id == bindparam("message_id"),
        messages.c.role == "user",
    )
    .values(content=bindparam("new_content"), token_count=bindparam("new_token_count"))
)
# Locked before the delete (PostgreSQL), as QUESTIONS_OF_CONVERSATION for a reset: an answer being inserted
# beside the question commits first, and the delete sees it.
QUESTION_OF_TURN = (
    select(messages.c.id)
    .where(
        messages.c.conversation_id == bindparam("conversation_id"),
        messages.c.id == bindparam("turn_id"),
        messages.c.role == "user",
    )
    .with_for_update()
)
# The question (its own turn) and every answer to it, walking ix_messages_conversation_turn.
DELETE_TURN = delete(messages).where(
    messages.c.conversation_id == bindparam("conversation_id"), bindparam("turn_id") == TURN_ORDER
)
FIND_CONVERSATION = select(conversations.c.id).where(
    conversations.c.user_id == bindparam("user_id"), conversations.c.scope == bindparam("scope")
)
MESSAGE_FIELDS = (
    messages.c.role,
    messages.c.content,
    messages.c.token_count,
    messages.c.engine,
    messages.c.id,
    TURN_ORDER.label("turn"),
    messages.c.created_at,
    messages.c.images,
)
ALL_MESSAGES = (
    select(*MESSAGE_FIELDS, messages.c.stopped)
    .where(messages.c.conversation_id == bindparam("conversation_id"))
    .order_by(TURN_ORDER, messages.c.id)
)
# --- a turn asked again (Regenerate) --------------------------------------------------------------------
TURN_QUESTION = select(*MESSAGE_FIELDS).where(
    messages.c.conversation_id == bindparam("conversation_id"),
    messages.c.id == bindparam("turn_id"),
    messages.c.role == "user",
)
NEWEST_QUESTION = select(func.max(messages.c.id)).where(
    messages.c.conversation_id == bindparam("conversation_id"), messages.c.role == "user"
)
# Newest first, at most `most_rows` (each costs at least a token plus the overhead: the budget bounds the scan).
BEFORE_TURN = (
    select(
        messages.c.role,
        messages.c.content,
        messages.c.token_count,
        messages.c.engine,
        messages.c.id,
        TURN_ORDER.label("turn"),
        messages.c.images,
    )
    .where(
        messages.c.conversation_id == bindparam("conversation_id"),
        bindparam("turn_id") > TURN_ORDER,
        sent_to_models(),
    )
    .order_by(TURN_ORDER.desc(), messages.c.id.desc())
    .limit(bindparam("most_rows"))
)
ENGINE_OF_ANSWER = (
    select(messages.c.engine)
    .where(
        messages.c.conversation_id == bindparam("conversation_id"),
        messages.c.turn_id == bindparam("turn_id"),
        messages.c.role == "assistant",
    )
    .order_by(messages.c.id.desc())
    .limit(1)
)
ANSWERS_OF_TURN = delete(messages).where(
    messages.c.conversation_id == bindparam("conversation_id"),
    messages.c.turn_id == bindparam("turn_id"),
    messages.c.role == "assistant",
)
MEMORY_STATS = select(func.count(), func.min(messages.c.created_at)).where(
    messages.c.conversation_id == bindparam("conversation_id")
)

# --- /forget: every conversation of a user --------------------------------------------------------------
USER_CONVERSATIONS = (
    select(conversations.c.id).where(conversations.c.user_id == bindparam("user_id")).order_by(conversations.c.id)
)
_OF_USER = messages.c.conversation_id.in_(USER_CONVERSATIONS.scalar_subquery())
QUESTIONS_OF_USER = select(messages.c.id).where(_OF_USER, messages.c.role == "user").with_for_update()
# The conversations' rows stay (empty): SQLite hands out a deleted row's id again, and a conversation id that came
# back as someone else's would meet what still held the old one (a summary job that outlived its cancel).
DELETE_MESSAGES_OF_USER = delete(messages).where(_OF_USER)

# --- the rolling summary ----------------------------------------------------------------------------------
_SUMMARY_OF = summaries.c.conversation_id == bindparam("conversation_id")
SUMMARY = select(
    summaries.c.content,
    summaries.c.token_count,
    summaries.c.through_id,
    summaries.c.engine,
    summaries.c.updated_at,
    summaries.c.version,
).where(_SUMMARY_OF)
# (An UPDATE's bound names must differ from its columns' names: the conversation is `of_conversation` here.)
SAVE_SUMMARY = (
    update(summaries)
    .where(summaries.c.conversation_id == bindparam("of_conversation"), summaries.c.version == bindparam("version"))
    .values(
        version=summaries.c.version + 1,
        content=bindparam("content"),
        token_count=bindparam("token_count"),
        through_id=bindparam("through_id"),
        engine=bindparam("engine"),
        updated_at=func.current_timestamp(),
    )
)
# A reset or /forget empties the summary and moves its version on: a job that read it before can no longer save.
# (Deleting the row would not do: a new job creates it again at version 0, the version an old job may hold.)
_EMPTY_SUMMARY = {
    "version": summaries.c.version + 1,
    "content": "",
    "token_count": 0,
    "through_id": 0,
    "engine": None,
    "updated_at": func.current_timestamp(),
}
ERASE_SUMMARY = (
    update(summaries).where(summaries.c.conversation_id == bindparam("of_conversation")).values(_EMPTY_SUMMARY)
)
ERASE_SUMMARIES_OF_USER = (
    update(summaries)
    .where(summaries.c.conversation_id.in_(USER_CONVERSATIONS.scalar_subquery()))
    .values(_EMPTY_SUMMARY)
)
# Walks ix_messages_conversation_newest from the summary's last message: the messages after it that are older
# than the window come first, and the scan ends at the window or the limit.
UNSUMMARISED = (
    select(*MESSAGE_FIELDS)
    .where(
        messages.c.conversation_id == bindparam("conversation_id"),
        messages.c.id > bindparam("after_id"),
        bindparam("before_turn") > TURN_ORDER,
        sent_to_models(),
    )
    .order_by(messages.c.id)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True)
class Writes:
    insert_message: Insert  # returns the new id, or no row when the turn key already has this role's message
    insert_answer: Insert  # the same, and no row when the question (turn_id) is gone
    create_conversation: Insert  # does nothing when the conversation exists
    create_summary: Insert  # an empty summary of version 0, unless the conversation has one
    charge_usage: Insert  # adds an answer's tokens (`charge_parameters`, `engine`) to its user's day
    # PostgreSQL: insert_answer and charge_usage in one statement (a row when the answer was inserted now), so a
    # retried answer is charged once and one round trip still stores it
    insert_charged_answer: Insert | None
    # /readyz's probe: a real write (one app_state row, `value` the time), so a full disk or a read-only
    # database fails it as it fails a turn, and a lock held by another program makes it wait as a turn would
    probe_write: Insert


PROBE_NAME = "readiness_probe"


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
    usage_values = {
        "day": bindparam("day", type_=token_usage.c.day.type),
        "guild_id": bindparam("guild_id", type_=token_usage.c.guild_id.type),
        "user_id": bindparam("user_id", type_=token_usage.c.user_id.type),
        "engine": bindparam("engine", type_=token_usage.c.engine.type),
        "tokens": bindparam("tokens", type_=token_usage.c.tokens.type),
        "answers": literal(1),
    }
    insert_answer = (
        insert(messages)
        .from_select([*MESSAGE_COLUMNS, "turn_key"], answer_source)
        .on_conflict_do_nothing(index_elements=["turn_key", "role"])
        .returning(messages.c.id)
    )
    inserted = insert_answer.cte("inserted_answer")
    charged_answer = insert(token_usage).from_select(
        list(usage_values), select(*usage_values.values()).select_from(inserted)
    )
    return Writes(
        charge_usage=_adding_up(insert(token_usage).values(usage_values)),
        insert_charged_answer=(
            _adding_up(charged_answer).returning(select(inserted.c.id).scalar_subquery())
            if dialect == "postgresql"
            else None
        ),
        insert_message=insert(messages)
        .values({**values, "turn_key": bindparam("turn_key", type_=messages.c.turn_key.type)})
        .on_conflict_do_nothing(index_elements=["turn_key", "role"])
        .returning(messages.c.id),
        insert_answer=insert_answer,
        create_conversation=insert(conversations)
        .values(user_id=bindparam("user_id"), scope=bindparam("scope"))
        .on_conflict_do_nothing(index_elements=["user_id", "scope"]),
        create_summary=insert(summaries)
        .values(conversation_id=bindparam("conversation_id"), version=0, content="", token_count=0, through_id=0)
        .on_conflict_do_nothing(index_elements=["conversation_id"]),
        probe_write=_probe(insert),
    )


def _probe(insert: Any) -> Insert:
    probe = insert(app_state).values(name=PROBE_NAME, value=bindparam("value"))
    return probe.on_conflict_do_update(
        index_elements=["name"], set_={"value": probe.excluded.value, "updated_at": func.current_timestamp()}
    )


def _adding_up(charge: Any) -> Insert:
    """A charge of token_usage that adds to the day's row of the user, server and engine when there is one."""
    return charge.on_conflict_do_update(
        index_elements=["day", "guild_id", "user_id", "engine"],
        set_={"tokens": token_usage.c.tokens + charge.excluded.tokens, "answers": token_usage.c.answers + 1},
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
        "most_rows": token_budget // (overhead + 1) + 2,  # one more: the first that does not fit
    }


def window_of(rows: Sequence[Any], token_budget: int) -> tuple[list[StoredMessage], bool]:
    """The messages of RECENT's rows that fit the budget (oldest first), and whether older ones are stored."""
    fitting = [
        StoredMessage(role, content, token_count, engine, images=images_of(images), id=id_, turn=turn)
        for role, content, token_count, engine, id_, turn, spent, images in rows
        if spent <= token_budget
    ]
    return fitting, len(fitting) < len(rows)


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
        "images": images_json(message.images),
        "stopped": message.stopped,
    }


def charge_parameters(charge: UsageCharge) -> dict[str, object]:
    """`charge_usage`'s parameters but the engine, which is the answer row's."""
    return {"day": charge.day, "guild_id": charge.guild_id, "user_id": charge.user_id, "tokens": charge.tokens}


def stored_message(row: Sequence[Any]) -> StoredMessage:
    """A message of a MESSAGE_FIELDS row."""
    role, content, token_count, engine, id_, turn, created_at, images = row
    return StoredMessage(
        role, content, token_count, engine, images=images_of(images), id=id_, turn=turn, created_at=utc(created_at)
    )


def images_json(images: Sequence[StoredImage]) -> str | None:
    """messages.images: the references as a JSON list (NULL for none)."""
    if not images:
        return None
    return json.dumps(
        [{"name": i.name, "size": i.size, "content_type": i.content_type, "url": i.url} for i in images],
        ensure_ascii=False,
    )


def images_of(column: str | None) -> tuple[StoredImage, ...]:
    """The references in a messages.images value; a value this code did not write reads as none."""
    if not column:
        return ()
    try:
        items = json.loads(column)
        return tuple(
            StoredImage(str(i["name"]), int(i["size"]), str(i["content_type"]), str(i["url"])) for i in items
        )
    except (ValueError, TypeError, KeyError):
        return ()


def exported_message(row: Sequence[Any]) -> StoredMessage:
    """A message of an ALL_MESSAGES row: MESSAGE_FIELDS, then whether it was stopped."""
    return replace(stored_message(row[:-1]), stopped=bool(row[-1]))


def summary_of(row: Sequence[Any] | None) -> Summary | None:
    """The summary of a SUMMARY row; None for none, or for the empty one a first job starts from."""
    if row is None or not row[0]:
        return None
    content, token_count, through_id, engine, updated_at, _version = row
    return Summary(content, token_count, through_id, engine, utc(updated_at))


def utc(moment: datetime | str | None) -> datetime | None:
    """SQLite keeps CURRENT_TIMESTAMP as UTC text without a zone: read through SQLAlchemy it is a naive datetime,
    through plain sqlite3 a string."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
