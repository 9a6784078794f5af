"""Where lifecycle and segments read behaviour: the workspace's DuckDB file, or any Ibis backend in place.

Both give the same two Ibis tables, so one definition runs everywhere:

* `events()` — one row per event: person_id, type, event, timestamp, properties (JSON text);
* `person_days()` — one row per person and local calendar day (see `store/activity.py`).

On the DuckDB file `person_days()` reads the rollup (kept up to date at ingestion) and `events()` the
`events_resolved` view. In warehouse mode (`NUDGE_EVENTS_URL`, or a connection handed in) both come from
the events table named in `[warehouse]`, read in place through its column mapping: nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir

from nudgekit.config import Settings
from nudgekit.store.activity import ActivitySpec, person_days
from nudgekit.store.events import EventStore
from nudgekit.store.rollup import ROLLUP


class BackendError(RuntimeError):
    """The events backend cannot be reached or does not look as configured."""


@dataclass
class EventsView:
    """An open connection and the two tables read through it."""

    con: Any
    engine: str
    """"duckdb", "pyspark", ...: the Ibis backend's name."""
    events: ir.Table
    person_days: ir.Table
    from_rollup: bool
    local: bool = False
    """Reading the workspace's own DuckDB file (its raw `events` and `identity_links` tables are there)."""

    def execute_arrow(self, expr: ir.Expr) -> Any:
        return self.con.to_pyarrow(expr)


def connect_url(url: str) -> Any:
    """An Ibis connection for NUDGE_EVENTS_URL. `pyspark://` starts (or joins) a local Spark session."""
    if url.startswith("pyspark://"):
        from pyspark.sql import SparkSession

        master = url.removeprefix("pyspark://") or "local[*]"
        session = SparkSession.builder.master(master).appName("nudgekit").getOrCreate()
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
        """Bring the rollup up to date (a short write). Returns what was done, or None in warehouse mode."""
        if self.warehouse or self.store.rollup is None:
            return None
        with self.store.lease(hold_seconds=3600) as lease:
            return self.store.rollup.ensure(lease.connection(), now)

    @contextmanager
    def open(self, *, use_rollup: bool = True) -> Iterator[EventsView]:
        if self.warehouse:
            con = self.connection or connect_url(self.settings.events_url or "")
            set_session_zone(con, self.settings.timezone)
            events = self._warehouse_events(con)
            yield EventsView(con, con.name, events, person_days(events, self.spec), False)
            return
        with self.store.reader() as raw:
            con = ibis.duckdb.from_connection(raw)
            set_session_zone(con, self.settings.timezone)
            try:
                events = con.table("events_resolved").select("person_id", "type", "event", "timestamp", "properties")
                current = use_rollup and self.store.rollup is not None and self.store.rollup.is_current(raw)
                days = _rollup_person_days(con) if current else person_days(events, self.spec)
                yield EventsView(con, "duckdb", events, days, current, local=True)
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


def _rollup_person_days(con: Any) -> ir.Table:
    r = con.table(ROLLUP)
    links = con.table("identity_links")
    joined = r.left_join(links, r.actor == links.alias_id)
    own = ibis.ifelse(joined.is_anon, "anon:" + joined.actor, joined.actor)
    return joined.select(
        person_id=ibis.coalesce(joined.user_id, own), day=joined.day, events=joined.events, active=joined.active,
        revenue=joined.revenue, first_ts=joined.first_ts, first_active_ts=joined.first_active_ts,
        last_active_ts=joined.last_active_ts, first_uninstall_ts=joined.first_uninstall_ts,
        last_uninstall_ts=joined.last_uninstall_ts,
    )
