"""a key per turn, so a write retried after a lost reply finds its first copy instead of storing a second

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("turn_key", sa.Uuid(as_uuid=False), nullable=True))
    # An index, not a table constraint: SQLite adds it without copying the table. NULL keys (messages stored
    # before this revision) never collide.
    op.create_index("uq_messages_turn_key_role", "messages", ["turn_key", "role"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_messages_turn_key_role", table_name="messages")
    # On SQLite the batch copies the table, and SQLAlchemy cannot reflect an expression index to copy it:
    # it is dropped before and made again after. PostgreSQL drops the column in place and keeps it.
    copies_table = op.get_bind().dialect.name == "sqlite"
    if copies_table:
        op.drop_index("ix_messages_conversation_turn", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("turn_key")
    if copies_table:
        op.create_index(
            "ix_messages_conversation_turn", "messages", ["conversation_id", sa.text("coalesce(turn_id, id)"), "id"]
        )
