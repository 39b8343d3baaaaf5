"""server settings, access rules and token usage: what server admins set from Discord, and what answers cost

`server_settings` holds one row per server (channel_id 0) and per channel that has a setting of its own; a NULL
column is not set there and falls back (channel, server, environment). `access_rules` holds each server's allow and
block rules for users, roles and channels. `token_usage` adds up, per UTC day, server (0: DMs and the terminal),
user and engine, the tokens the stored answers cost, written in the answer's own transaction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _updated_at() -> sa.Column:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()
    )


def upgrade() -> None:
    op.create_table(
        "server_settings",
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("persona", sa.Text(), nullable=True),
        sa.Column("open", sa.Boolean(), nullable=True),
        sa.Column("threads", sa.Boolean(), nullable=True),
        sa.Column("daily_tokens", sa.Integer(), nullable=True),
        sa.Column("cooldown_s", sa.Float(), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("updated_by", sa.BigInteger(), nullable=True),
        _updated_at(),
        sa.PrimaryKeyConstraint("guild_id", "channel_id"),
    )
    op.create_table(
        "access_rules",
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("updated_by", sa.BigInteger(), nullable=True),
        _updated_at(),
        sa.PrimaryKeyConstraint("guild_id", "kind", "target_id"),
    )
    op.create_table(
        "token_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("engine", sa.String(64), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "guild_id", "user_id", "engine"),
    )


def downgrade() -> None:
    op.drop_table("token_usage")
    op.drop_table("access_rules")
    op.drop_table("server_settings")
