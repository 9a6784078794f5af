"""Foundation: profiles, trait definitions, push tokens, consent records, API keys.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from nudgekit.store.state import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "consent_records is append-only: record a new change instead"


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("profile_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), unique=True),
        sa.Column("anonymous_id", sa.String(255)),
        sa.Column("merged_into", sa.String(255)),
        sa.Column("traits", sa.JSON(), nullable=False),
        sa.Column("phone", sa.String(32), index=True),
        sa.Column("email", sa.String(320), index=True),
        sa.Column("language", sa.String(35)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("kakao_reachable", sa.Boolean()),
        sa.Column("utm_source", sa.String(255)),
        sa.Column("utm_medium", sa.String(255)),
        sa.Column("utm_campaign", sa.String(255)),
        sa.Column("install_source", sa.String(255)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "trait_definitions",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "push_tokens",
        sa.Column("token", sa.String(4096), primary_key=True),
        sa.Column("profile_id", sa.String(255), sa.ForeignKey("profiles.profile_id"), nullable=False, index=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("app_id", sa.String(255)),
        sa.Column("device_id", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(255)),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("profile_id", sa.String(255), nullable=False, index=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("evidence", sa.Text()),
        sa.Column("dedupe_key", sa.String(255), unique=True),
    )
    op.create_index("ix_consent_current", "consent_records", ["profile_id", "channel", "purpose", "at"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime()),
    )
    _forbid_consent_rewrites()


def _forbid_consent_rewrites() -> None:
    """The law asks us to prove consent history; the database itself refuses to rewrite it."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER consent_records_no_{action.lower()} BEFORE {action} ON consent_records "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION consent_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER consent_records_append_only BEFORE UPDATE OR DELETE ON consent_records "
            "FOR EACH ROW EXECUTE FUNCTION consent_records_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS consent_records_append_only ON consent_records")
        op.execute("DROP FUNCTION IF EXISTS consent_records_append_only()")
    for table in ("api_keys", "consent_records", "push_tokens", "trait_definitions", "profiles"):
        op.drop_table(table)
