"""The tables of Kor'tana: one conversation per (user, scope), its messages and summary; what server admins set
(settings per server and channel, access rules); the tokens each answer cost; and named app state.

The schema is created by the Alembic migrations in `migrations/`; these models describe it for queries and
for the migration test that checks both agree. The full-text index of the messages differs by database: on
PostgreSQL it is the GIN index below; on SQLite the FTS5 table `SQLITE_SEARCH_TABLE` with its triggers, which
SQLAlchemy cannot describe: `described_by_models` leaves it and its shadow tables out of comparisons.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SQLITE_SEARCH_TABLE = "messages_search"
# FTS5 keeps the index itself in these tables of its own (no _content: the text is in `messages`).
SQLITE_SEARCH_SHADOW_TABLES = tuple(f"{SQLITE_SEARCH_TABLE}_{part}" for part in ("data", "idx", "docsize", "config"))
# The text search configuration of PostgreSQL's index, a literal: a query must repeat the index's expression.
SEARCH_CONFIG = text("'english'::regconfig")

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("user_id", "scope", name="uq_conversations_user_scope"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    scope: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()
    )


class Message(Base):
    """A message of a conversation. `turn_id` is the id of the user message an answer belongs to (NULL on
    user messages): history is ordered by (coalesce(turn_id, id), id), so an answer follows its question.
    `turn_key` names the turn (the question and its answer share it; a message stored outside a turn has
    its own; NULL before revision 0003): a write retried after its reply was lost finds the first copy by it."""

    __tablename__ = "messages"
    __table_args__ = {"sqlite_autoincrement": True}  # an erased message's id is never reused (revision 0010)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    token_count: Mapped[int] = mapped_column(Integer, nullable=False)
    engine: Mapped[str | None] = mapped_column(String(64), nullable=True)
    turn_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    turn_key: Mapped[str | None] = mapped_column(Uuid(as_uuid=False), nullable=True)
    images: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON references (revision 0009)
    stopped: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()
    )


class ConversationSummary(Base):
    """A conversation's rolling summary (see migration 0006): `version` changes with every save and erase, so a
    job that started from another version saves nothing; an erased summary is the empty one."""

    __tablename__ = "summaries"

    conversation_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    token_count: Mapped[int] = mapped_column(Integer, nullable=False)
    through_id: Mapped[int] = mapped_column(BigId, nullable=False)
    engine: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()
    )


class AppStateEntry(Base):
    """A small value the application keeps across restarts (e.g. the hash of the slash commands last synced)."""

    __tablename__ = "app_state"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()
    )


class ServerSetting(Base):
    """What a server's admins set with /settings, for the whole server (`channel_id` SERVER_WIDE) or one channel.
    A NULL column is not set there: the channel's value, else the server's, else the environment's applies."""

    __tablename__ = "server_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    persona: Mapped[str | None] = mapped_column(Text, nullable=True)
    open: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    threads: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    daily_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cooldown_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()
    )


class AccessRuleRow(Base):
    """A server's allow or block rule for one user, role or channel (/settings allow|block)."""

    __tablename__ = "access_rules"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # user | role | channel
    target_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rule: Mapped[str] = mapped_column(String(16), nullable=False)  # allow | block
    updated_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()
    )


class TokenUsageRow(Base):
    """The tokens one user's answers cost in one server (guild 0: DMs and the terminal) on one UTC day, per engine."""

    __tablename__ = "token_usage"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    engine: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    answers: Mapped[int] = mapped_column(Integer, nullable=False)


conversations = Conversation.__table__
messages = Message.__table__
app_state = AppStateEntry.__table__
summaries = ConversationSummary.__table__
server_settings = ServerSetting.__table__
access_rules = AccessRuleRow.__table__
token_usage = TokenUsageRow.__table__
SERVER_WIDE = 0  # server_settings.channel_id of the row for the whole server (no channel has id 0)

Index("ix_messages_conversation_newest", messages.c.conversation_id, messages.c.id)
Index(
    "ix_messages_conversation_turn",
    messages.c.conversation_id,
    func.coalesce(messages.c.turn_id, messages.c.id),
    messages.c.id,
)
Index("uq_messages_turn_key_role", messages.c.turn_key, messages.c.role, unique=True)
Index("ix_messages_turn", messages.c.turn_id)  # a question's answers (see migration 0007)


def described_by_models(name: str | None, type_: str, _parents: object = None) -> bool:
    """Whether a table of the database is one these models describe (Alembic's `include_name` hook)."""
    return type_ != "table" or name not in (SQLITE_SEARCH_TABLE, *SQLITE_SEARCH_SHADOW_TABLES)


# PostgreSQL only: SQLite's autogenerate comparison skips expression indexes, and the migration creates this one
# on PostgreSQL alone (SQLite's full-text index is SQLITE_SEARCH_TABLE).
SEARCH_VECTOR = func.to_tsvector(SEARCH_CONFIG, messages.c.content)
Index("ix_messages_search", SEARCH_VECTOR, postgresql_using="gin")
