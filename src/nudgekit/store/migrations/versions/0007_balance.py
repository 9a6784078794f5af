"""The prepaid message balance: one account row and its append-only ledger.

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
        sa.Column("balance_krw", sa.Numeric(14, 2), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "balance_entries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_krw", sa.Numeric(14, 2), nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("channel", sa.String(16)),
        sa.Column("note", sa.Text()),
        sa.UniqueConstraint("message_id", "kind", name="uq_balance_entries_message_kind"),
    )
    op.create_index("ix_balance_entries_at", "balance_entries", ["at"])


def downgrade() -> None:
    op.drop_table("balance_entries")
    op.drop_table("balance_accounts")
