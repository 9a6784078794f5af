"""The policy chain: recorded evaluations, frequency-cap claims and per-person locks, campaign budgets.

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_evaluations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("campaign", sa.String(255)),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("until", UtcDateTime()),
        sa.Column("test_user", sa.Boolean(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
    )
    op.create_index("ix_policy_evaluations_message_id", "policy_evaluations", ["message_id"])
    op.create_index("ix_policy_evaluations_person", "policy_evaluations", ["profile_id", "campaign", "at"])
    op.create_table(
        "cap_claims",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("campaign", sa.String(255)),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("by", sa.String(255)),
    )
    op.create_index("ix_cap_claims_person", "cap_claims", ["profile_id", "at"])
    op.create_table(
        "cap_locks",
        sa.Column("profile_id", sa.String(255), primary_key=True),
        sa.Column("claims", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "campaign_spend",
        sa.Column("campaign", sa.String(255), primary_key=True),
        sa.Column("spent_cents", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "budget_claims",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("campaign", sa.String(255), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for table in ("budget_claims", "campaign_spend", "cap_locks", "cap_claims", "policy_evaluations"):
        op.drop_table(table)
