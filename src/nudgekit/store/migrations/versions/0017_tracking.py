"""Tracked links: each link of a message that goes through `/c/{token}`, and an email's open pixel.

Revision ID: 0017
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracked_links",
        sa.Column("token", sa.String(24), primary_key=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_tracked_links_message", "tracked_links", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_tracked_links_message", "tracked_links")
    op.drop_table("tracked_links")
