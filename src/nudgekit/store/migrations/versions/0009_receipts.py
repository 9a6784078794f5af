"""Delivery receipts on direct sends: what the vendor later said became of each message.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("direct_sends") as table:
        table.add_column(sa.Column("type", sa.String(8)))
        table.add_column(sa.Column("profile_id", sa.String(255)))
        table.add_column(sa.Column("sent_at", UtcDateTime()))
        table.add_column(sa.Column("delivery", sa.String(16)))
        table.add_column(sa.Column("delivery_code", sa.String(64)))
        table.add_column(sa.Column("delivery_detail", sa.Text()))
        table.add_column(sa.Column("delivery_at", UtcDateTime()))
        table.add_column(sa.Column("fallback_requested", sa.Boolean()))
        table.add_column(sa.Column("fallback_delivery", sa.String(16)))
        table.add_column(sa.Column("receipt_checked_at", UtcDateTime()))
    op.create_index("ix_direct_sends_awaiting", "direct_sends", ["delivery", "provider"])
    # messages sent before receipts were read are not asked about: their vendor ids lack what a query needs
    op.execute("UPDATE direct_sends SET delivery = 'unknown', delivery_code = 'before_receipts' "
               "WHERE verdict IN ('accepted', 'uncertain')")


def downgrade() -> None:
    op.drop_index("ix_direct_sends_awaiting", "direct_sends")
    with op.batch_alter_table("direct_sends") as table:
        for column in ("receipt_checked_at", "fallback_delivery", "fallback_requested", "delivery_at",
                       "delivery_detail", "delivery_code",
                       "delivery", "sent_at", "profile_id", "type"):
            table.drop_column(column)
