"""In-app messages and content cards waiting in each person's inbox.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_items",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("ad", sa.Boolean(), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("shown_at", UtcDateTime()),
        sa.Column("clicked_at", UtcDateTime()),
        sa.Column("dismissed_at", UtcDateTime()),
    )
    op.create_index("ix_inbox_items_profile", "inbox_items", ["profile_id", "channel", "expires_at"])


def downgrade() -> None:
    op.drop_table("inbox_items")
