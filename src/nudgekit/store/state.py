"""The state DB: profiles, contact points, consents (append-only), API keys.

SQLite (WAL, busy timeout) by default so several processes share one workspace;
PostgreSQL when NUDGE_DATABASE_URL says so. The schema is owned by Alembic
migrations in `store/migrations`; these models mirror it.
"""

from __future__ import annotations

import weakref
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state DB; attach a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Profile(Base):
    """One person: a known user (profile_id = user_id) or an anonymous visitor ("anon:" + anonymous_id)."""

    __tablename__ = "profiles"
    profile_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(255))
    merged_into: Mapped[str | None] = mapped_column(String(255))
    """Set on an anonymous profile once an identify linked it to a known user."""
    traits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    language: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    kakao_reachable: Mapped[bool | None] = mapped_column(Boolean)
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    install_source: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TraitDefinition(Base):
    """The type of a custom trait, fixed the first time it is seen (or declared in nudge.toml)."""

    __tablename__ = "trait_definitions"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class PushToken(Base):
    __tablename__ = "push_tokens"
    token: Mapped[str] = mapped_column(String(4096), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(255), ForeignKey("profiles.profile_id"), index=True)
    platform: Mapped[str] = mapped_column(String(16))
    app_id: Mapped[str | None] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="valid")
    status_reason: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime]


class ConsentRecord(Base):
    """One consent change. Append-only: the migration installs triggers refusing UPDATE and DELETE."""

    __tablename__ = "consent_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(String(255), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    change: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    """When the user gave or withdrew consent (as stated by the source)."""
    source: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime]
    """When nudgekit learned of it."""
    evidence: Mapped[str | None] = mapped_column(Text)
    """Free text: form version, call record id, the message id it came in."""
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    """Set from the carrying message id so a retried request records a change once."""

    __table_args__ = (Index("ix_consent_current", "profile_id", "channel", "purpose", "at"),)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """The key's public prefix (shown in `nudge keys list`)."""
    secret_hash: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("secret_hash"),)


class LifecycleStage(Base):
    """A person's current lifecycle stage (written by `nudge lifecycle run` and by at-once resurrection)."""

    __tablename__ = "lifecycle_stages"
    profile_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), index=True)
    since: Mapped[datetime]
    lapsing: Mapped[bool] = mapped_column(Boolean)
    """Current, but the latest activity is older than the usage cycle."""
    first_seen_at: Mapped[datetime | None]
    last_active_at: Mapped[datetime | None]
    as_of: Mapped[date] = mapped_column(Date)
    """The day the classification was made for."""
    updated_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(Integer)
    """The `lifecycle_runs` row that wrote it; None when at-once resurrection did."""

    __table_args__ = (Index("ix_lifecycle_stage_patch", "updated_at", sqlite_where=text("run_id IS NULL"),
                            postgresql_where=text("run_id IS NULL")),)


class LifecycleTransition(Base):
    """One stage change; journeys trigger on these (becoming Churn starts a win-back)."""

    __tablename__ = "lifecycle_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile_id: Mapped[str] = mapped_column(String(255))
    from_stage: Mapped[str | None] = mapped_column(String(16))
    """None for a person's first classification."""
    to_stage: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    """When the new stage began, as far as the data tells."""
    detected_at: Mapped[datetime]
    """When nudgekit noticed (the run, or the event's arrival)."""
    source: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_transition_profile", "profile_id", "at"),
                      Index("ix_transition_detected", "detected_at"), Index("ix_transition_to", "to_stage", "at"))


class LifecycleRun(Base):
    """One `nudge lifecycle run`: when, as of which day, on which engine, with what result."""

    __tablename__ = "lifecycle_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    as_of: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    engine: Mapped[str] = mapped_column(String(32))
    users: Mapped[int] = mapped_column(Integer)
    changed: Mapped[int] = mapped_column(Integer)
    by_stage: Mapped[dict[str, Any]] = mapped_column(JSON)


class SegmentList(Base):
    """A manual list of users (uploaded from a file); segments refer to it with `list: NAME`."""

    __tablename__ = "segment_lists"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SegmentListMember(Base):
    __tablename__ = "segment_list_members"
    list_name: Mapped[str] = mapped_column(String(100), ForeignKey("segment_lists.name"), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    added_at: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(String(255))
    """The file the member came from."""


class SandboxMessage(Base):
    """A message the sandbox provider recorded instead of sending: exactly what would have gone out."""

    __tablename__ = "sandbox_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    """Our id; a repeated send of the same id is recorded once, as a vendor with idempotency would."""
    channel: Mapped[str] = mapped_column(String(16))
    type: Mapped[str | None] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(4096))
    profile_id: Mapped[str | None] = mapped_column(String(255), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The message's fields as the provider would have received them."""
    recorded_at: Mapped[datetime] = mapped_column(index=True)


class Suppression(Base):
    """An address that must not be messaged on a channel again (hard bounce, complaint, invalid number).

    Keyed by the address, not the person: the same address under another profile is suppressed too."""

    __tablename__ = "suppressions"
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(String(4096), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64))
    """hard_bounce, invalid_number, complaint, manual ..."""
    detail: Mapped[str | None] = mapped_column(Text)
    """The provider's words (SMTP reply, result code)."""
    at: Mapped[datetime]


class KakaoTemplate(Base):
    """An AlimTalk template as Kakao approved it (or has not yet): the registry every AlimTalk is checked
    against. Filled from the provider by `nudge kakao templates sync`, or by hand for the sandbox."""

    __tablename__ = "kakao_templates"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The provider's template code (NHN templateCode, Solapi templateId)."""
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)
    """The approved text with its #{variables}."""
    status: Mapped[str] = mapped_column(String(16))
    buttons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)
    """Kakao's review comment (why it was rejected)."""
    source: Mapped[str] = mapped_column(String(32))
    """"local" for a template added by hand, else the provider it was synced from."""
    updated_at: Mapped[datetime]


class BrandMessageDay(Base):
    """Kakao allows one Brand Message per recipient per day: the day is claimed here before the send, so
    two sends racing for the same phone cannot both go out."""

    __tablename__ = "brand_message_days"
    recipient: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    """The calendar day in Korea (Asia/Seoul), the day Kakao counts."""
    message_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]


class BalanceAccount(Base):
    """The workspace's prepaid message points: one row, created by the first top-up. Sends reserve their
    price from it with one conditional UPDATE, so two sends cannot spend the same points. Kept in
    hundredths of a won as an integer: no float drift on SQLite."""

    __tablename__ = "balance_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    balance_cents: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class BalanceEntry(Base):
    """Every change of the balance, append-only: top-ups, reservations for sends, refunds of sends that
    certainly did not go out. A message retried after a refund reserves again as its next attempt."""

    __tablename__ = "balance_entries"
    __table_args__ = (UniqueConstraint("message_id", "kind", "attempt", name="uq_balance_entries_attempt"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """top_up, reserve, refund."""
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    """Positive adds to the balance, negative takes from it."""
    message_id: Mapped[str | None] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    channel: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class DirectSend(Base):
    """A message handed straight to a provider (`nudge message send`, `Workspace.send_now`), written
    before the provider is called: a message id that is pending, accepted or uncertain is never sent again
    by a provider that cannot drop repeats itself."""

    __tablename__ = "direct_sends"
    __table_args__ = (Index("ix_direct_sends_awaiting", "delivery", "provider"),)
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(4096))
    provider: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(20))
    """pending until the provider answers, then the Verdict."""
    code: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    type: Mapped[str | None] = mapped_column(String(8))
    """SMS / LMS / MMS as the check chose."""
    profile_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]
    """When the vendor accepted it (the start of the receipt wait)."""
    delivery: Mapped[str | None] = mapped_column(String(16))
    """The receipt's word (channels.provider.Delivery): None while none has come for an accepted message."""
    delivery_code: Mapped[str | None] = mapped_column(String(64))
    delivery_detail: Mapped[str | None] = mapped_column(Text)
    delivery_at: Mapped[datetime | None]
    fallback_requested: Mapped[bool | None] = mapped_column(Boolean)
    """A Kakao message sent with its fallback text message for the vendor to send when Kakao cannot deliver."""
    fallback_delivery: Mapped[str | None] = mapped_column(String(16))
    """What became of the fallback text message the vendor sent itself (NHN's resend), when it did."""
    receipt_checked_at: Mapped[datetime | None]


def insert_missing(session: Session, model: type[Base], rows: list[dict[str, Any]] | None = None,
                   **values: Any) -> None:
    """INSERT the row (or `rows`, in one statement) unless its key is already there (ON CONFLICT DO NOTHING,
    on PostgreSQL and SQLite)."""
    if rows is None:
        session.execute(unless_there(session, model, values))
    elif rows:
        session.connection().execute(unless_there(session, model, None), rows)


def unless_there(session: Session, model: type[Base], values: dict[str, Any] | list[dict[str, Any]] | None) -> Any:
    """The INSERT … ON CONFLICT DO NOTHING statement of the session's database (add `.returning(...)` to
    learn which rows it added: rowcount is -1 on PostgreSQL). Without values, for executemany: many rows
    this way compile once (a multi-row VALUES is compiled again for every size)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).on_conflict_do_nothing()
    return statement if values is None else statement.values(values)


def in_batches(values: list[str], size: int = 5000) -> list[list[str]]:
    """Split the values of an IN (...) list so no backend meets its parameter limit."""
    return [values[i:i + size] for i in range(0, len(values), size)]


def insert_arrow(conn: Connection, model: type[Base], rows: pa.Table, batch: int = 50_000) -> None:
    """Insert many rows (columns named as the model's) straight through the driver, inside `conn`'s
    transaction: COPY on PostgreSQL, executemany of plain tuples on SQLite.

    :TRICKY: SQLAlchemy's executemany turns every value through its type's bind processing: 2M stages and
    2M transitions took 54-90 s on SQLite. Here the values are spelled once per column by Arrow, as
    SQLAlchemy itself stores them (UTC moments as 'YYYY-MM-DD HH:MM:SS.ffffff' on SQLite, with '+00' for
    PostgreSQL's timestamptz; booleans as 0/1 on SQLite), so the ORM reads them back unchanged.
    """
    postgres = conn.dialect.name == "postgresql"
    names = rows.column_names
    unknown = [n for n in names if n not in model.__table__.columns]
    if unknown:
        raise ValueError(f"{model.__tablename__} has no column {', '.join(unknown)}")
    naive = [f.name for f in rows.schema if pa.types.is_timestamp(f.type) and f.type.tz is None]
    if naive:  # as UtcDateTime refuses them: a wall-clock time is no moment
        raise ValueError(f"naive timestamps given to the state DB in {', '.join(naive)}; attach a time zone")
    for start in range(0, rows.num_rows, batch):
        part = rows.slice(start, batch)
        columns = []
        for name in names:
            column = part.column(name)
            if pa.types.is_timestamp(column.type):
                moment = column.cast(pa.timestamp("us", tz="UTC"))
                column = pc.strftime(moment, format="%Y-%m-%d %H:%M:%S" + ("+00" if postgres else ""))
            elif pa.types.is_date(column.type):
                column = pc.strftime(column, format="%Y-%m-%d")
            elif pa.types.is_boolean(column.type) and not postgres:
                column = column.cast(pa.int8())
            columns.append(column.to_pylist())
        values = list(zip(*columns, strict=True))
        if postgres:
            with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
                with cur.copy(f"COPY {model.__tablename__} ({', '.join(names)}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
        else:
            marks = ", ".join(["?"] * len(names))
            conn.exec_driver_sql(f"INSERT INTO {model.__tablename__} ({', '.join(names)}) VALUES ({marks})", values)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


JSON_CODEC = {"json_serializer": _json, "json_deserializer": orjson.loads}
"""JSON columns through orjson: the policy chain writes one record of ten decisions per message, and the
standard library's encoder was a third of that cost."""


def make_engine(url: str) -> Engine:
    """An engine tuned for many processes sharing one workspace."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=False, **JSON_CODEC)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA cache_size=-65536")  # up to 64 MB: large imports touch indexes everywhere
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **JSON_CODEC)


def limit_page_cache(engine: Engine, mib: int) -> None:
    """Keep each of the engine's SQLite connections to a page cache of `mib` MiB (the default, 64 MiB, is
    for large imports): a long-running process with a few pooled connections would otherwise grow by their
    caches as the database grows."""
    if engine.dialect.name != "sqlite" or engine in _PAGE_CACHE_LIMITED:
        return  # once per engine: every transactional send makes a worker, and the server serves many at once
    _PAGE_CACHE_LIMITED.add(engine)

    def small(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.execute(f"PRAGMA cache_size=-{int(mib) * 1024}")

    event.listen(engine, "checkout", small)


_PAGE_CACHE_LIMITED: weakref.WeakSet[Engine] = weakref.WeakSet()


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


class InboxItem(Base):
    """An in-app message or content card waiting in one person's inbox, served by `GET /v1/inapp` and
    `GET /v1/cards` until it is shown (in-app), dismissed (cards) or expires."""

    __tablename__ = "inbox_items"
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    profile_id: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What the app receives (sanitised HTML)."""
    ad: Mapped[bool] = mapped_column(Boolean)
    pinned: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    shown_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]
    dismissed_at: Mapped[datetime | None]


class PolicyEvaluation(Base):
    """One pass of a message through the policy chain at a gate (queue or hand-over): every rule's
    decision, written before anything is sent — what `nudge explain` reads."""

    __tablename__ = "policy_evaluations"
    __table_args__ = (Index("ix_policy_evaluations_person", "profile_id", "campaign", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(255), index=True)
    campaign: Mapped[str | None] = mapped_column(String(255))
    profile_id: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime | None]
    test_user: Mapped[bool] = mapped_column(Boolean)
    decisions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class CapClaim(Base):
    """A message's place under the frequency caps: held when it is queued, spent when it is handed to a
    provider, bumped when a higher-priority message took its place, released when it did not go."""

    __tablename__ = "cap_claims"
    __table_args__ = (Index("ix_cap_claims_person", "profile_id", "at"),)
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    campaign: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(8))
    by: Mapped[str | None] = mapped_column(String(255))
    """For a bumped claim, the message that took its place."""


class CapLock(Base):
    """On SQLite, the row (`*`) every gate writes first, taking the database's write lock before it reads
    any claim (policy.ledger.lock; PostgreSQL uses advisory locks per person instead). Rows per person are
    left from earlier versions and no longer used."""

    __tablename__ = "cap_locks"
    profile_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    claims: Mapped[int] = mapped_column(BigInteger)


class CampaignSpend(Base):
    """What a campaign's messages have taken of its budget (hundredths of a won), raised by one conditional
    UPDATE so two workers cannot both spend the last of it."""

    __tablename__ = "campaign_spend"
    campaign: Mapped[str] = mapped_column(String(255), primary_key=True)
    spent_cents: Mapped[int] = mapped_column(BigInteger)


class BudgetClaim(Base):
    __tablename__ = "budget_claims"
    message_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    campaign: Mapped[str] = mapped_column(String(255))
    cents: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime]
    released: Mapped[bool] = mapped_column(Boolean)


class WorkspaceSecret(Base):
    """A key the workspace made for itself (the one signing unsubscribe links), kept in the state DB so
    every worker and server of the workspace shares it."""

    __tablename__ = "workspace_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class AddressOptout(Base):
    """An advertising refusal tied to an address rather than a profile: an 080 call or an SMS reply names
    only a number, and must hold for whoever has that number, now or later. Append-only like consent."""

    __tablename__ = "address_optouts"
    __table_args__ = (Index("ix_address_optouts_address", "address", "channel", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    """The consent channel refused (sms, kakao, email)."""
    address: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime]
    evidence: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class ConsentNotice(Base):
    """A consent notice sent to a person (or being sent: state `sending` until the provider answered):
    the result of their consent changes (kind `result`) or the two-yearly re-confirmation (`reconfirm`)."""

    __tablename__ = "consent_notices"
    __table_args__ = (Index("ix_consent_notices_person", "profile_id", "kind", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    claim: Mapped[str] = mapped_column(String(255), unique=True)
    """What the notice is for, unique, so two runs cannot both send it."""
    profile_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    """The message channel it went by, or `page` when the unsubscribe page showed it."""
    message_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)


class TrackedLink(Base):
    """A link in a message that goes through `/c/{token}` (or an email's open pixel, position 0), written with
    its outbox row (tracking/__init__.py)."""

    __tablename__ = "tracked_links"
    __table_args__ = (Index("ix_tracked_links_message", "message_id"),)
    token: Mapped[str] = mapped_column(String(24), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(Text)
    """The link as written (with its UTM parameters); None for the open pixel."""
    created_at: Mapped[datetime]


class ConsentNoticeRecord(Base):
    """Which consent change a result notice told the person about (each change is told once)."""

    __tablename__ = "consent_notice_records"
    record_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(Integer, ForeignKey("consent_notices.id", ondelete="CASCADE"))


class OutboxMessage(Base):
    """One message to one person (or address) that a campaign, a journey step or the API wants sent, keyed
    by a deterministic message id made from its idempotency key: planning the same send twice adds nothing.

    Written before any I/O; workers claim it (`lease_until`), mark it `handing` just before the provider
    call, and write the outcome after (delivery/outbox.py)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "due_at"), Index("ix_outbox_campaign", "campaign", "state"))
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    """The idempotency key as the caller gave it (campaign or journey step, user, occurrence)."""
    campaign: Mapped[str | None] = mapped_column(String(255))
    profile_id: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The message's fields as the channel's model takes them."""
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The policy options (priority, night, window, once_per_hours, budget_krw, goods)."""
    to: Mapped[str | None] = mapped_column(String(4096))
    """A fixed address (the API's `to`); None: the person's own at send time."""
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Provider calls made for it."""
    failures: Mapped[int] = mapped_column(Integer, default=0)
    """Passing faults met (5xx, timeouts, refused connections): `[delivery] max_attempts` bounds them; a 429
    does not count."""
    reason: Mapped[str | None] = mapped_column(String(64))
    """Why it was skipped, deferred, failed or is in doubt (a reason code)."""
    detail: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    cost_krw: Mapped[float | None]
    in_doubt: Mapped[str] = mapped_column(String(8))
    """What a crash mid-send does to it on a provider that cannot drop repeats: `hold` (never resend, the
    advertising default) or `resend` (the informational default)."""
    fallback_of: Mapped[str | None] = mapped_column(String(64))
    """For a fallback text message: the Kakao message it replaces."""
    template: Mapped[str | None] = mapped_column(String(120))
    """The saved template its fields were rendered from, as name@version."""
    variant: Mapped[str | None] = mapped_column(String(64))
    """The campaign's A/B variant it belongs to (campaigns/run.py); None: the campaign has one message."""
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """For a rendered message: what was asked for before rendering (the template's name or the fields as
    written, and the event), so a repeated request is known for the same one."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class OutboxAttempt(Base):
    """Every provider call made for an outbox message, one row per address it went to."""

    __tablename__ = "outbox_attempts"
    __table_args__ = (Index("ix_outbox_attempts_message", "message_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    worker: Mapped[str | None] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(4096))
    verdict: Mapped[str] = mapped_column(String(20))
    code: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    retry_after: Mapped[float | None]


class CampaignSend(Base):
    """How a campaign's messages go out: running, paused or cancelled, and at what speed."""

    __tablename__ = "campaign_sends"
    campaign: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    per_minute: Mapped[float | None]
    """Delivery speed: at most this many of its messages a minute (None: as fast as providers allow)."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RateBucket(Base):
    """A token bucket shared by every worker (a provider's rate, a campaign's speed), and a provider's
    Retry-After: nobody calls it before `blocked_until`."""

    __tablename__ = "rate_buckets"
    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    tokens: Mapped[float]
    at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class ProviderCircuit(Base):
    """A provider's circuit breaker, shared by every worker: open (paused) after repeated failed calls, and
    tried again by one probe once `open_until` has passed."""

    __tablename__ = "provider_circuits"
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    """Failed calls in a row."""
    trips: Mapped[int] = mapped_column(Integer)
    """Times it opened in a row without a success between (each pause is longer)."""
    open_until: Mapped[datetime | None]
    probe_until: Mapped[datetime | None]
    """While set and in the future, one worker is probing it; others wait."""
    detail: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class MessageTemplate(Base):
    """One saved version of a message template or a snippet (templates/store.py): saving changed content adds
    a version, old versions stay, so a campaign can say which version it sent and a mistake can be undone."""

    __tablename__ = "message_templates"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    """`message` (fields for one channel, per language) or `snippet` (a text other templates include)."""
    channel: Mapped[str | None] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    """As written: `language`, `message`, `languages` (a message) or `text` (a snippet)."""
    digest: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class CouponCode(Base):
    """One code of a coupon pool (templates/coupons.py): free until a message takes it (`message_id`), given
    back when that message does not go out, so no two people ever hold the same code."""

    __tablename__ = "coupon_codes"
    __table_args__ = (UniqueConstraint("pool", "code", name="uq_coupon_codes_pool_code"),
                      Index("ix_coupon_codes_free", "pool", "message_id", "id"),
                      Index("ix_coupon_codes_message", "message_id"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    """Load order: codes are given out in the order they were loaded."""
    pool: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    loaded_at: Mapped[datetime]
    message_id: Mapped[str | None] = mapped_column(String(200))
    profile_id: Mapped[str | None] = mapped_column(String(255))
    taken_at: Mapped[datetime | None]


class Campaign(Base):
    """A campaign or journey applied from its file (campaigns/): the version that is live, where it stands and
    when the scheduler launches its next run."""

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_due", "next_run_at"),)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(24))
    next_run_at: Mapped[datetime | None]
    """When the scheduler launches its next run (None: nothing more is scheduled)."""
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    cursor: Mapped[str | None] = mapped_column(String(255))
    """A journey's place in what it watches: the last lifecycle transition read, the last day dated entries
    were made for."""


class CampaignVersion(Base):
    """One applied version of a campaign: its spec as stored (segment files and template versions resolved),
    who applied it and, for one that needs it, who approved exactly this version."""

    __tablename__ = "campaign_versions"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(Text)
    applied_by: Mapped[str | None] = mapped_column(String(255))
    applied_at: Mapped[datetime]
    approved_by: Mapped[str | None] = mapped_column(String(255))
    approved_at: Mapped[datetime | None]


class CampaignRun(Base):
    """One occurrence of a campaign (the one send of a one-off, each firing of a recurring one): claimed
    once by whichever scheduler gets it, with what its queueing did."""

    __tablename__ = "campaign_runs"
    campaign: Mapped[str] = mapped_column(String(100), primary_key=True)
    occurrence: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    release_at: Mapped[datetime | None]
    """For a canary run: when its guardrails are read and the rest released."""
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(Text)


class JourneyEntry(Base):
    """One person's walk through a journey, from entering to finishing or leaving: the version they entered
    (they finish on it), the step they are on and, while waiting, when the wait is over. The due index is
    the journeys' timer wheel."""

    __tablename__ = "journey_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    journey: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    profile_id: Mapped[str] = mapped_column(String(255))
    entry_key: Mapped[str] = mapped_column(String(255))
    """What started it (the event's id, the API call's key, the transition, the day): the same trigger
    seen twice enters once."""
    state: Mapped[str] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(64))
    waiting: Mapped[bool] = mapped_column(Boolean, default=False)
    """In its wait step, until `due_at` (or the event it waits for)."""
    waiting_for: Mapped[str | None] = mapped_column(String(255))
    due_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    entered_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The trigger (event name, properties, time): what the messages read as `event`."""
    path: Mapped[list[Any]] = mapped_column(JSON)
    """The steps taken, with when."""
    exit_reason: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ux_journey_entry_key", "journey", "entry_key", unique=True),
        Index("ux_journey_in_flight", "journey", "profile_id", unique=True,
              sqlite_where=text("state = 'active'"), postgresql_where=text("state = 'active'")),
        Index("ix_journey_due", "state", "due_at"),
        Index("ix_journey_person", "profile_id", "state"),
    )


class JourneyMember(Base):
    """Who was in a segment-entry journey's segment at its last check: joining it is entering."""

    __tablename__ = "journey_members"
    journey: Mapped[str] = mapped_column(String(100), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(255), primary_key=True)
