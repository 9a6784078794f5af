"""What the sandbox provider recorded instead of sending, and the addresses providers told us are dead.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(255), nullable=False, unique=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("type", sa.String(16)),
        sa.Column("recipient", sa.String(4096), nullable=False),
        sa.Column("profile_id", sa.String(255)),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_sandbox_messages_profile_id", "sandbox_messages", ["profile_id"])
    op.create_index("ix_sandbox_messages_recorded_at", "sandbox_messages", ["recorded_at"])
    op.create_table(
        "suppressions",
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("address", sa.String(4096), primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_table("sandbox_messages")
