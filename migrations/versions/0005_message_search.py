"""full-text search over messages.content, for recalling older turns of a conversation

SQLite: `messages_search`, an FTS5 table with external content (content='messages', content_rowid='id'): it
stores only the index, the text stays in `messages`. Triggers keep it in step with every insert, delete and
update of a message, in whatever connection writes (the history store's writer thread included); the 'delete'
command takes the old text, so the index forgets exactly the tokens the row had. 'rebuild' indexes the messages
already stored. The porter tokenizer over unicode61 matches "dogs" to "dog"; remove_diacritics 2 matches "cafe"
to "café".
Its second column, `conversation_id`, makes each message's conversation a token of the index: a search MATCHes
`conversation_id : "<id>" AND content : (...)`, so FTS5 walks only that conversation's rows however many other
conversations hold the words (bm25 gives that column no weight). A conversation filter applied after the MATCH
would first find and rank every matching message of every conversation.

PostgreSQL: a GIN index on the expression to_tsvector('english', content), not a generated tsvector column:
- adding a STORED generated column rewrites the whole messages table under an exclusive lock, and keeps a
  second copy of every message's words in the heap; the index is built from the rows as they are;
- the models stay the same on both databases (a column only PostgreSQL has would make them differ);
- the cost: ts_rank computes the tsvector again for each match, and searches are scoped to one conversation,
  so that is a few rows. A query must spell the expression exactly as here (the regconfig a literal, not a
  parameter) for the planner to use the index.

A later migration that copies `messages` on SQLite (batch_alter_table) drops its triggers with the old table: it
must create them again, then 'rebuild'.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-15
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE_UPGRADE = (
    """
    CREATE VIRTUAL TABLE messages_search USING fts5(
        content, conversation_id,
        content='messages', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_search (rowid, content, conversation_id) VALUES (new.id, new.content, new.conversation_id);
    END
    """,
    """
    CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_search (messages_search, rowid, content, conversation_id)
            VALUES ('delete', old.id, old.content, old.conversation_id);
    END
    """,
    """
    CREATE TRIGGER messages_search_update AFTER UPDATE OF id, content, conversation_id ON messages BEGIN
        INSERT INTO messages_search (messages_search, rowid, content, conversation_id)
            VALUES ('delete', old.id, old.content, old.conversation_id);
        INSERT INTO messages_search (rowid, content, conversation_id) VALUES (new.id, new.content, new.conversation_id);
    END
    """,
    "INSERT INTO messages_search (messages_search) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER messages_search_update",
    "DROP TRIGGER messages_search_delete",
    "DROP TRIGGER messages_search_insert",
    "DROP TABLE messages_search",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_UPGRADE:
            op.execute(statement)
        return
    op.execute("CREATE INDEX ix_messages_search ON messages USING gin (to_tsvector('english'::regconfig, content))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
        return
    op.drop_index("ix_messages_search", table_name="messages")
