"""messages.images and messages.stopped: the images a user attached, and answers the asker stopped

`images` holds a user message's attached images as a JSON list of references (file name, size, content type and
the Discord CDN URL), never their bytes; NULL for a message without images. A regenerated turn sends them again.
`stopped` marks an answer its asker stopped mid-stream: what was shown by then is what is stored.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("images", sa.Text(), nullable=True))
    op.add_column("messages", sa.Column("stopped", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch copy of the table: the copy would lose the search triggers.
    op.drop_column("messages", "stopped")
    op.drop_column("messages", "images")
