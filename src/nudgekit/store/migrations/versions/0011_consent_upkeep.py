"""Consent upkeep: opt-outs tied to an address (an 080 call, an SMS reply from a number no profile has yet),
the workspace's own secrets (the key signing unsubscribe links), and the consent notices sent (result
notices within 14 days of a change, the two-yearly re-confirmation).

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "address_optouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("evidence", sa.Text()),
        sa.Column("dedupe_key", sa.String(255), unique=True),
    )
    op.create_index("ix_address_optouts_address", "address_optouts", ["address", "channel", "at"])
    op.create_table(
        "consent_notices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("claim", sa.String(255), nullable=False, unique=True),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_index("ix_consent_notices_person", "consent_notices", ["profile_id", "kind", "at"])
    op.create_table(
        "consent_notice_records",
        sa.Column("record_id", sa.Integer(), primary_key=True),
        sa.Column("notice_id", sa.Integer(), sa.ForeignKey("consent_notices.id", ondelete="CASCADE"),
                  nullable=False),
    )


def downgrade() -> None:
    for table in ("consent_notice_records", "consent_notices", "address_optouts", "workspace_secrets"):
        op.drop_table(table)
