"""Templates: message templates and snippets, every saved version kept; the outbox says which version a
message was rendered from.

Revision ID: 0013
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_templates",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16)),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.add_column("outbox", sa.Column("template", sa.String(120)))
    op.add_column("outbox", sa.Column("source", sa.JSON()))


def downgrade() -> None:
    op.drop_column("outbox", "source")
    op.drop_column("outbox", "template")
    op.drop_table("message_templates")
