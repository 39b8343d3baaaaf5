"""messages.id AUTOINCREMENT on SQLite: an erased message's id is never given to a later one

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one, so after a /reset or /forget
that erased the newest messages, the next question got an id an erased one had. Ids name turns outside the
database (the Regenerate and Stop buttons under an answer carry their turn's id), so an old button would reach
a newer turn. SQLite can only declare AUTOINCREMENT when it creates a table: the table is created again, from its
own stored definition, the rows copied with their ids (sqlite_sequence starts from the largest), and its indexes
and search triggers created again from theirs. The search index (an FTS5 table over `messages` by rowid) stays as
it is: the ids do not change.

PostgreSQL's identity column never reuses a value: nothing to do there. The downgrade leaves the table as it is:
ids that are never reused break nothing in revision 0009.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID_COLUMN = re.compile(r"\bid INTEGER NOT NULL,")
_PRIMARY_KEY = re.compile(r",\s*PRIMARY KEY \(id\)")
_TABLE_NAME = re.compile(r'^CREATE TABLE\s+(?:"messages"|messages)(?=\s*\()')  # quoted once a batch copy made it


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    bind = op.get_bind()
    schema = bind.execute(
        sa.text("SELECT type, sql FROM sqlite_master WHERE tbl_name = 'messages' AND sql IS NOT NULL")
    ).all()
    [table] = [sql for kind, sql in schema if kind == "table"]
    if "AUTOINCREMENT" in table:
        return
    companions = [sql for kind, sql in schema if kind in ("index", "trigger")]
    new_table, ids = _ID_COLUMN.subn("id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,", table)
    new_table, keys = _PRIMARY_KEY.subn("", new_table)
    new_table, names = _TABLE_NAME.subn("CREATE TABLE messages_autoincrement", new_table)
    if (ids, keys, names) != (1, 1, 1):
        raise RuntimeError("the messages table is not as revision 0009 left it")
    op.execute(new_table)
    op.execute("INSERT INTO messages_autoincrement SELECT * FROM messages")
    op.execute("DROP TABLE messages")  # its indexes and triggers go with it; a DROP fires no trigger
    op.execute("ALTER TABLE messages_autoincrement RENAME TO messages")
    for sql in companions:
        op.execute(sql)


def downgrade() -> None:
    pass
