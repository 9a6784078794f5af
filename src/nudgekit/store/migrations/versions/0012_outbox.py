"""Delivery: the outbox (one row per message to send, keyed by its idempotency key), every provider call
made for it, each campaign's sending state and speed, shared rate buckets and provider circuit breakers.

Revision ID: 0012
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("campaign", sa.String(255)),
        sa.Column("profile_id", sa.String(255)),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("to", sa.String(4096)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("lease_until", UtcDateTime()),
        sa.Column("worker", sa.String(128)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("detail", sa.Text()),
        sa.Column("provider", sa.String(32)),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("cost_krw", sa.Float()),
        sa.Column("in_doubt", sa.String(8), nullable=False),
        sa.Column("fallback_of", sa.String(64)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime()),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "due_at"])
    op.create_index("ix_outbox_campaign", "outbox", ["campaign", "state"])
    op.create_table(
        "outbox_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("address", sa.String(4096)),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("detail", sa.Text()),
        sa.Column("retry_after", sa.Float()),
    )
    op.create_index("ix_outbox_attempts_message", "outbox_attempts", ["message_id"])
    op.create_table(
        "campaign_sends",
        sa.Column("campaign", sa.String(255), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("per_minute", sa.Float()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("blocked_until", UtcDateTime()),
    )
    op.create_table(
        "provider_circuits",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("open_until", UtcDateTime()),
        sa.Column("probe_until", UtcDateTime()),
        sa.Column("detail", sa.Text()),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("provider_circuits", "rate_buckets", "campaign_sends", "outbox_attempts", "outbox"):
        op.drop_table(table)
