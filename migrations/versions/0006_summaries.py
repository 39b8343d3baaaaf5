"""summaries: each conversation's rolling summary of what fell out of its recent window

One row per conversation at most, deleted with it (ON DELETE CASCADE). A reset or /forget empties it and moves its
`version` on, as every save does: a summary job saves only if the version it started from is still there, so a
job that finds its conversation reset, forgotten, or summarised by another process meanwhile throws its result
away. `through_id` is the newest message the summary covers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-16
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "summaries",
        sa.Column(
            "conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("through_id", BigId, nullable=False),
        sa.Column("engine", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    )


def downgrade() -> None:
    op.drop_table("summaries")
