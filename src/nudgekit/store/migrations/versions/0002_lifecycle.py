"""Lifecycle: the current stage per person and every transition.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lifecycle_stages",
        sa.Column("profile_id", sa.String(255), primary_key=True),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("lapsing", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", UtcDateTime()),
        sa.Column("last_active_at", UtcDateTime()),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("run_id", sa.Integer()),
    )
    op.create_index("ix_lifecycle_stage", "lifecycle_stages", ["stage"])
    op.create_table(
        "lifecycle_transitions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("from_stage", sa.String(16)),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("detected_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("ix_transition_profile", "lifecycle_transitions", ["profile_id", "at"])
    op.create_index("ix_transition_detected", "lifecycle_transitions", ["detected_at"])
    op.create_index("ix_transition_to", "lifecycle_transitions", ["to_stage", "at"])
    op.create_table(
        "lifecycle_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("by_stage", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lifecycle_runs")
    op.drop_table("lifecycle_transitions")
    op.drop_table("lifecycle_stages")
