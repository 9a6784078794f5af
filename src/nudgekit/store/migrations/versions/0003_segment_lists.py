"""Manual segment lists: users uploaded from a file, with members added and removed later.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment_lists",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "segment_list_members",
        sa.Column("list_name", sa.String(100), sa.ForeignKey("segment_lists.name"), primary_key=True),
        sa.Column("profile_id", sa.String(255), primary_key=True),
        sa.Column("added_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(255)),
    )
    op.create_index("ix_list_member_profile", "segment_list_members", ["profile_id"])


def downgrade() -> None:
    op.drop_table("segment_list_members")
    op.drop_table("segment_lists")
