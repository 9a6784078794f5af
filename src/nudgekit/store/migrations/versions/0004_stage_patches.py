"""Stages written between runs (at-once resurrections, run_id NULL) found through a small partial index.

Reading the stored stages takes the last run's snapshot plus the rows written since by anything but a
run; without this index that lookup scanned every stored stage (about 0.2 s per 2M people, on every
segment and every run).

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lifecycle_stage_patch", "lifecycle_stages", ["updated_at"],
                    sqlite_where=sa.text("run_id IS NULL"), postgresql_where=sa.text("run_id IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_lifecycle_stage_patch", "lifecycle_stages")
