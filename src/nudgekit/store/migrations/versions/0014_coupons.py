"""Coupon pools: codes loaded in advance, each given to one message.

Revision ID: 0014
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupon_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("loaded_at", UtcDateTime(), nullable=False),
        sa.Column("message_id", sa.String(200)),
        sa.Column("profile_id", sa.String(255)),
        sa.Column("taken_at", UtcDateTime()),
        sa.UniqueConstraint("pool", "code", name="uq_coupon_codes_pool_code"),
    )
    op.create_index("ix_coupon_codes_free", "coupon_codes", ["pool", "message_id", "id"])
    op.create_index("ix_coupon_codes_message", "coupon_codes", ["message_id"])


def downgrade() -> None:
    op.drop_table("coupon_codes")
