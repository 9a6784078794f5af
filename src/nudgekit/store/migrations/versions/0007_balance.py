"""The prepaid message balance (one account row and its append-only ledger, in hundredths of a won), and the
log of messages handed straight to a provider.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "balance_accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("balance_cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "balance_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("channel", sa.String(16)),
        sa.Column("note", sa.Text()),
        sa.UniqueConstraint("message_id", "kind", "attempt", name="uq_balance_entries_attempt"),
    )
    op.create_index("ix_balance_entries_at", "balance_entries", ["at"])
    op.create_table(
        "direct_sends",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(4096), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("code", sa.String(64)),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("direct_sends")
    op.drop_table("balance_entries")
    op.drop_table("balance_accounts")
