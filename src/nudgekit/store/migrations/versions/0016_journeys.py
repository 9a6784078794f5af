"""Journeys: each person's walk through a journey (version, step, timer), the members a segment-entry
journey last saw, and a journey's place in the lifecycle transitions and dated entries it reads.

Revision ID: 0016
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("cursor", sa.String(255)))
    op.create_table(
        "journey_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("journey", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("entry_key", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64)),
        sa.Column("waiting", sa.Boolean(), nullable=False),
        sa.Column("waiting_for", sa.String(255)),
        sa.Column("due_at", UtcDateTime()),
        sa.Column("claimed_until", UtcDateTime()),
        sa.Column("entered_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("context", sa.JSON()),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("exit_reason", sa.String(255)),
    )
    op.create_index("ux_journey_entry_key", "journey_entries", ["journey", "entry_key"], unique=True)
    op.create_index("ux_journey_in_flight", "journey_entries", ["journey", "profile_id"], unique=True,
                    sqlite_where=sa.text("state = 'active'"), postgresql_where=sa.text("state = 'active'"))
    op.create_index("ix_journey_due", "journey_entries", ["state", "due_at"])
    op.create_index("ix_journey_person", "journey_entries", ["profile_id", "state"])
    op.create_table(
        "journey_members",
        sa.Column("journey", sa.String(100), primary_key=True),
        sa.Column("profile_id", sa.String(255), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("journey_members")
    op.drop_table("journey_entries")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("cursor")
