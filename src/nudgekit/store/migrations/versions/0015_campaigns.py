"""Campaigns as code: every applied version of a campaign, its runs (one per occurrence) and the A/B variant
each outbox message belongs to.

Revision ID: 0015
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("next_run_at", UtcDateTime()),
        sa.Column("detail", sa.Text()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_campaigns_due", "campaigns", ["next_run_at"])
    op.create_table(
        "campaign_versions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("applied_by", sa.String(255)),
        sa.Column("applied_at", UtcDateTime(), nullable=False),
        sa.Column("approved_by", sa.String(255)),
        sa.Column("approved_at", UtcDateTime()),
    )
    op.create_table(
        "campaign_runs",
        sa.Column("campaign", sa.String(100), primary_key=True),
        sa.Column("occurrence", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime()),
        sa.Column("finished_at", UtcDateTime()),
        sa.Column("release_at", UtcDateTime()),
        sa.Column("result", sa.JSON()),
        sa.Column("detail", sa.Text()),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("variant", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("variant")
    op.drop_table("campaign_runs")
    op.drop_table("campaign_versions")
    op.drop_index("ix_campaigns_due", "campaigns")
    op.drop_table("campaigns")
