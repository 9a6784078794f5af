"""Where lifecycle and segments read behaviour: the workspace's DuckDB file, or any Ibis backend in place.

Both give the same Ibis tables, so one definition runs everywhere:

* `events` — one row per event: person_id, type, event, timestamp, properties (JSON text);
* `person_days` — person-day rows (see `store/activity.py`); when `person_keyed` they come keyed by person
  at the source and are aggregated as they are, otherwise they are `actor_days` (keyed by the id events
  *arrived with*: actor, is_anon) resolved per row;
* `resolve()`, which maps any table keyed by (actor, is_anon) to the person.

On the DuckDB file the person-days are the rollup (kept up to date at ingestion, keyed by person) and
`events` the `events_resolved` view. In warehouse mode (`NUDGE_EVENTS_URL`, or a connection handed in)
both come from the events table named in `[warehouse]`, read in place through its column mapping: nothing
is copied, and the actor is the person.

:TRICKY: resolving identities (a join with `identity_links`) on every event costs four times a plain
scan; resolving after aggregating per actor joins a few million rows instead of tens of millions. So
lifecycle aggregates per actor, resolves, then merges per person (every fact is a min, max, sum or
bit-or, so the merge is exact).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from nudgekit.config import Settings
from nudgekit.store.activity import ActivitySpec, event_pieces
from nudgekit.store.events import EventStore
from nudgekit.store.rollup import ROLLUP


class BackendError(ValueError):
    """The events backend cannot be reached or does not look as configured (the CLI says so, exit 2)."""


def same_person(t: ir.Table) -> ir.Table:
    """Warehouse mode: the id an event carries is the person."""
    return t.mutate(person_id=t.actor)


@dataclass
class EventsView:
    """An open connection and the tables read through it."""

    con: Any
    engine: str
    """"duckdb", "pyspark", ...: the Ibis backend's name."""
    events: ir.Table
    actor_days: ir.Table
    from_rollup: bool
    local: bool = False
    """Reading the workspace's own DuckDB file (its raw `events` and `identity_links` tables are there)."""
    resolve: Callable[[ir.Table], ir.Table] = same_person
    """Adds person_id to a table keyed by (actor, is_anon)."""
    actor_events: ir.Table | None = None
    """Events keyed by (actor, is_anon) instead of person_id: aggregate these, then resolve."""
    keyed_days: ir.Table | None = None
    """Person-day rows already keyed by person at the source (the rollup; warehouse mode)."""
    raw: Any = None
    """The DuckDB connection itself, on the workspace's own file (for lookups too small to compile)."""
    temporary: list[str] = field(default_factory=list)

    @property
    def person_keyed(self) -> bool:
        """Aggregate `person_days` directly (True), or per actor, then resolve and merge (False)."""
        return self.keyed_days is not None

    @property
    def person_days(self) -> ir.Table:
        if self.keyed_days is not None:
            return self.keyed_days
        return self.resolve(self.actor_days).drop("actor", "is_anon")

    def table(self, data: pa.Table) -> ir.Table:
        """An Arrow table (people, stages, signals from the state DB) as a table of this backend.

        :TRICKY: on Spark, `ibis.memtable` goes through pandas, where a missing number becomes NaN (which
        Spark orders above every number) and a missing text may not stay missing; Spark reads Arrow itself.
        """
        if self.engine != "pyspark":
            return ibis.memtable(data)
        name = f"nudge_{uuid.uuid4().hex}"
        self.con._session.createDataFrame(data).createOrReplaceTempView(name)
        self.temporary.append(name)
        return self.con.table(name)

    def close(self) -> None:
        for name in self.temporary:
            self.con._session.catalog.dropTempView(name)
        self.temporary.clear()


@dataclass
class LocalStore:
    """The workspace's own DuckDB file, read without Ibis: its connection (for lookups and SQL compiled
    once) and whether its activity rollup is current."""

    raw: Any
    rollup_current: bool


def connect_url(url: str) -> Any:
    """An Ibis connection for NUDGE_EVENTS_URL. `pyspark://` starts (or joins) a local Spark session."""
    if url.startswith("pyspark://"):
        from pyspark.sql import SparkSession

        master = url.removeprefix("pyspark://") or "local[*]"
        session = (SparkSession.builder.master(master).appName("nudgekit")
                   .config("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable)).getOrCreate())
        return ibis.pyspark.connect(session)
    try:
        return ibis.connect(url)
    except Exception as exc:  # the URL's own backend explains what is wrong
        raise BackendError(f"cannot open NUDGE_EVENTS_URL {url!r}: {exc}") from exc


def set_session_zone(con: Any, zone: str) -> None:
    """Calendar days are cast in the session time zone; make it the workspace's."""
    name = con.name
    if name == "duckdb":
        con.raw_sql(f"SET TimeZone = '{zone}'")
    elif name == "pyspark":
        con._session.conf.set("spark.sql.session.timeZone", zone)
    else:
        raise BackendError(f"the {name} backend is not supported for lifecycle and segments yet "
                           "(DuckDB and Spark are); see docs/lifecycle.md#warehouse-mode")


class EventsBackend:
    """Opens the event source the settings name; `open()` yields an EventsView for one job."""

    def __init__(self, settings: Settings, store: EventStore, connection: Any = None) -> None:
        self.settings = settings
        self.store = store
        self.connection = connection
        self.spec = ActivitySpec.from_settings(settings.timezone, settings.lifecycle)

    @property
    def warehouse(self) -> bool:
        return self.connection is not None or self.settings.events_url is not None

    def prepare(self, now: datetime) -> str | None:
        """Bring the rollup up to date and the store's indexes in place (a short write). Returns what was done to the
        rollup, or None in warehouse mode."""
        if self.warehouse:
            return None
        with self.store.lease(hold_seconds=3600) as lease:
            self.store.ensure_index(lease.connection())
            return self.store.rollup.ensure(lease.connection(), now) if self.store.rollup else None

    @contextmanager
    def local(self) -> Iterator[LocalStore]:
        """The workspace's own store through its DuckDB connection, in the workspace's time zone."""
        with self.store.reader() as raw:
            raw.execute(f"SET TimeZone = '{self.settings.timezone}'")
            rollup = self.store.rollup
            yield LocalStore(raw, rollup is not None and rollup.is_current(raw))

    @contextmanager
    def open(self, *, use_rollup: bool = True) -> Iterator[EventsView]:
        if self.warehouse:
            con = self.connection or connect_url(self.settings.events_url or "")
            set_session_zone(con, self.settings.timezone)
            events = self._warehouse_events(con)
            actors = events.rename(actor="person_id").mutate(is_anon=ibis.literal(False))
            days = event_pieces(actors, self.spec, keys=("actor", "is_anon"), engine=con.name)
            view = EventsView(con, con.name, events, days, False, actor_events=actors,
                              keyed_days=same_person(days).drop("actor", "is_anon"))
            try:
                yield view
            finally:
                view.close()
            return
        with self.store.reader() as raw:
            con = ibis.duckdb.from_connection(raw)
            set_session_zone(con, self.settings.timezone)
            try:
                events = con.table("events_resolved").select("person_id", "type", "event", "timestamp", "properties")
                current = use_rollup and self.store.rollup is not None and self.store.rollup.is_current(raw)
                raw_events = con.table("events")
                actors = raw_events.filter(raw_events.user_id.notnull() | raw_events.anonymous_id.notnull()).select(
                    actor=ibis.coalesce(raw_events.user_id, raw_events.anonymous_id),
                    is_anon=raw_events.user_id.isnull(),
                    type=raw_events.type, event=raw_events.event,
                    timestamp=raw_events.timestamp, properties=raw_events.properties)
                keyed = _rollup_days(con, raw) if current else None
                days = keyed.drop("person_id") if keyed is not None else event_pieces(
                    actors, self.spec, keys=("actor", "is_anon"))
                yield EventsView(con, "duckdb", events, days, current, local=True, resolve=_linker(con),
                                 actor_events=actors, raw=raw,
                                 keyed_days=keyed.drop("actor", "is_anon") if keyed is not None else None)
            finally:
                raw.execute("SET TimeZone = 'UTC'")

    def _warehouse_events(self, con: Any) -> ir.Table:
        mapping = self.settings.warehouse
        try:
            *database, name = mapping.table.split(".")
            table = con.table(name, database=".".join(database) or None)
        except Exception as exc:
            raise BackendError(f'the events table "{mapping.table}" was not found in the warehouse: {exc}') from exc
        wanted = [c for c in (mapping.user_id, mapping.event, mapping.timestamp, mapping.properties, mapping.type) if c]
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            raise BackendError(f'the events table "{mapping.table}" has no column {", ".join(missing)}; '
                               f'set the [warehouse] mapping in nudge.toml (it has {", ".join(table.columns[:20])})')
        return table.select(
            person_id=table[mapping.user_id].cast("string"),
            type=table[mapping.type].cast("string") if mapping.type else ibis.literal("track"),
            event=table[mapping.event].cast("string"),
            timestamp=_as_timestamp(table[mapping.timestamp]),
            properties=table[mapping.properties].cast("string") if mapping.properties else ibis.null("string"),
        ).filter(ibis._.person_id.notnull())


def _as_timestamp(column: ir.Column) -> ir.TimestampValue:
    """Timestamps stay as they are (an instant); text and epoch numbers are read as UTC."""
    if column.type().is_timestamp():
        return column  # type: ignore[return-value]
    if column.type().is_numeric():
        return column.as_timestamp("s")  # type: ignore[attr-defined]
    return column.cast("timestamp('UTC')")  # type: ignore[return-value]


def _rollup_days(con: Any, raw: Any) -> ir.Table:
    """The rollup's rows with their person; rows of aliases linked since the last `ensure()` corrected."""
    days = con.table(ROLLUP).drop("compacted")
    if not raw.execute("SELECT count(*) FROM link_changes").fetchall()[0][0]:
        return days
    links = con.table("identity_links")
    pending = links.semi_join(con.table("link_changes"), "alias_id").select(
        pending_alias=links.alias_id, pending_user=links.user_id)
    joined = days.left_join(pending, days.actor == pending.pending_alias)
    return joined.mutate(person_id=ibis.coalesce(joined.pending_user, joined.person_id)).drop(
        "pending_alias", "pending_user")


def _linker(con: Any) -> Callable[[ir.Table], ir.Table]:
    """person_id for rows keyed by (actor, is_anon), through identity_links (as `events_resolved` does)."""
    links = con.table("identity_links").select("alias_id", linked_user="user_id")

    def resolve(t: ir.Table) -> ir.Table:
        joined = t.left_join(links, t.actor == links.alias_id)
        own = ibis.ifelse(joined.is_anon, "anon:" + joined.actor, joined.actor)
        return joined.mutate(person_id=ibis.coalesce(joined.linked_user, own)).drop("alias_id", "linked_user")

    return resolve
