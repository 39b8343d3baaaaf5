"""index messages.turn_id: a recalled question's answer is found by it

A search hands out each found question with the answer stored after it (the messages whose turn_id is the
question's id). Without an index on turn_id, SQLite walked the conversation's whole turn index for each found
question (its planner does not match the coalesce(turn_id, id) expression there): milliseconds per search in a
long conversation. Questions (turn_id NULL) are most of the rows that have none, so the index stays small.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-17
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_turn", "messages", ["turn_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_turn", table_name="messages")
