"""order messages by turn, so an answer follows its question even when processes interleave

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("turn_id", BigId, nullable=True))
    op.create_index(
        "ix_messages_conversation_turn",
        "messages",
        ["conversation_id", sa.text("coalesce(turn_id, id)"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_messages_conversation_turn", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("turn_id")
