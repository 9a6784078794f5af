"""What counts as activity, written once as an Ibis expression: raw events -> one row per person and day.

Lifecycle stages and behaviour segments never look at single events; they look at *person-days*: for each
person and calendar day (in the workspace time zone) how many events they sent, how many of them were
activity, what they spent, and the first/last moments of activity and of an uninstall signal. The same
expression runs on DuckDB (where it also feeds the rollup kept up to date at ingestion, see
`store/rollup.py`) and on any other Ibis backend (Spark over a lake: warehouse mode).

:TRICKY: the calendar day is `CAST(timestamp AS DATE)` under the backend's *session* time zone, so whoever
runs these expressions sets the session time zone to the workspace's first (`EventsBackend` does).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.types as ir

from nudgekit.config import LifecycleSettings

BEHAVIOUR_TYPES = ("track", "page", "screen")
SEEN_TYPES = ("identify", "track", "page", "screen")
"""Events that show a person exists (first seen). Aliases and groups do not."""

ROLLUP_VERSION = 3
"""Bump when the person-day columns change: stored rollups are then rebuilt."""


def day_start(day: date, zone: str) -> datetime:
    """The first instant of a local calendar day, in UTC."""
    return datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)


def day_end(day: date, zone: str) -> datetime:
    """The last instant of a local calendar day, in UTC."""
    return day_start(day + timedelta(days=1), zone) - timedelta(microseconds=1)


DAY_US = 86_400_000_000
OFFSETS_FROM = datetime(2000, 1, 1, tzinfo=UTC)
"""Offsets are spelled out from here on (ingestion refuses older events); older instants are cast."""


@functools.lru_cache(maxsize=32)
def utc_offsets(zone: str, until: date) -> tuple[tuple[int, int], ...]:
    """The zone's UTC offsets from 2000 to the end of `until`: (first instant in epoch microseconds,
    offset in microseconds), newest first; the last one holds from OFFSETS_FROM.

    Read from the tz database a day at a time; where two days differ, the change is found to the second.
    """
    tz = ZoneInfo(zone)

    def offset(second: int) -> int:
        return int(datetime.fromtimestamp(second, tz).utcoffset().total_seconds())  # type: ignore[union-attr]

    second, end = int(OFFSETS_FROM.timestamp()), int(day_start(until + timedelta(days=1), zone).timestamp())
    changes = [(second, offset(second))]
    while second < end:
        after = min(second + 86_400, end)
        if offset(after) != changes[-1][1]:
            low, high = second, after  # offset(low) is the old one, offset(high) the new one
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(mid) == changes[-1][1] else (low, mid)
            changes.append((high, offset(high)))
        second = after
    return tuple((at * 1_000_000, off * 1_000_000) for at, off in reversed(changes))


@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(moment: datetime) -> int:  # type: ignore[empty-body]
    """DuckDB: microseconds since 1970 of an instant (no time-zone conversion)."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_epoch_us(moment: datetime) -> int:  # type: ignore[empty-body]
    """Spark: microseconds since 1970 of an instant."""


def calendar_age(moment: ir.TimestampValue, as_of: date, zone: str, engine: str) -> ir.IntegerValue:
    """How many local calendar days before `as_of` the moment's day is (0 on the as-of day itself).

    :TRICKY: computed from the instant's epoch and the zone's offset, not by casting the timestamp to a
    date in the session time zone: the cast costs 1.3 s on 44.6M rows, the arithmetic about nothing. The
    offset is a CASE over the zone's offset changes since 2000, newest first, so a recent moment takes one
    test; an older moment (warehouse data) and engines without an epoch function here take the cast, which
    reads the session time zone (`set_session_zone`).
    """
    cast = ibis.literal(as_of).delta(moment.date(), unit="day").cast("int32")
    if engine not in ("duckdb", "pyspark"):
        return cast
    micros = (_duckdb_epoch_us if engine == "duckdb" else _spark_epoch_us)(moment)
    today = (as_of - date(1970, 1, 1)).days
    branches = [(micros >= at, (today - (micros + off) // DAY_US).cast("int32")) for at, off in utc_offsets(zone, as_of)]
    return ibis.cases(*branches, else_=cast)


@dataclass(frozen=True)
class ActivitySpec:
    """The settings the person-day rows depend on; a change means rebuilding the rollup."""

    timezone: str
    activity_events: tuple[str, ...]
    ignore_events: tuple[str, ...]
    uninstall_events: tuple[str, ...]
    revenue_event: str
    revenue_property: str

    @classmethod
    def from_settings(cls, timezone: str, lifecycle: LifecycleSettings) -> ActivitySpec:
        return cls(timezone, tuple(lifecycle.activity_events), tuple(lifecycle.ignore_events),
                   tuple(lifecycle.uninstall_events), lifecycle.revenue_event, lifecycle.revenue_property)

    def fingerprint(self) -> str:
        return json.dumps({"rollup": ROLLUP_VERSION, **self.__dict__}, sort_keys=True, ensure_ascii=False)


def _glob(name: ir.StringValue, pattern: str) -> ir.BooleanValue:
    """`message_*` style patterns: `*` matches any text, everything else itself."""
    parts = pattern.split("*")
    if len(parts) == 2 and not parts[1]:
        return name.startswith(parts[0])
    if len(parts) == 2 and not parts[0]:
        return name.endswith(parts[1])
    return name.re_search("^" + ".*".join(re.escape(p) for p in parts) + "$")


def _matches(name: ir.StringValue, patterns: tuple[str, ...]) -> ir.BooleanValue:
    exact = [p for p in patterns if "*" not in p]
    wild = [p for p in patterns if "*" in p]
    tests: list[ir.BooleanValue] = []
    if exact:
        tests.append(name.isin(exact))
    tests += [_glob(name, p) for p in wild]
    if not tests:
        return ibis.literal(False)
    out = tests[0]
    for test in tests[1:]:
        out = out | test
    return out


def is_activity(t: ir.Table, spec: ActivitySpec) -> ir.BooleanValue:
    name = t.event.fill_null("")
    test = t.type.isin(BEHAVIOUR_TYPES) & ~_matches(name, spec.ignore_events)
    if spec.activity_events:
        test = test & _matches(name, spec.activity_events)
    return test


def is_uninstall(t: ir.Table, spec: ActivitySpec) -> ir.BooleanValue:
    return (t.type == "track") & _matches(t.event.fill_null(""), spec.uninstall_events)


@ibis.udf.scalar.builtin
def json_extract_string(text: str, path: str) -> str:  # type: ignore[empty-body]
    """DuckDB's JSON text extraction: one parse of the text, no JSON value in between."""


@ibis.udf.scalar.builtin
def get_json_object(text: str, path: str) -> str:  # type: ignore[empty-body]
    """Spark's JSON text extraction (Ibis would run a Python UDF for JSON `.str` there)."""


def json_text(properties: ir.StringValue, key: str, engine: str = "duckdb") -> ir.StringValue:
    """A property of a JSON text column as text: strings without their quotes, numbers as written.

    :TRICKY: `properties.cast("json")[key].str` compiles to two JSON parses per row on DuckDB and to a
    Python UDF on Spark; each backend's own function is several times faster."""
    if engine == "pyspark":
        return get_json_object(properties, f"$.{key}" if key.isidentifier() else "$['" + key.replace("'", "") + "']")
    if engine == "duckdb":
        quoted = key.replace("\\", "\\\\").replace('"', '\\"')
        return json_extract_string(properties, f"$.{key}" if key.isidentifier() else f'$."{quoted}"')
    return properties.cast("json")[key].str


def revenue(t: ir.Table, spec: ActivitySpec, engine: str = "duckdb") -> ir.FloatingValue:
    """The revenue property of revenue events, as a number (text that is not a number counts as nothing)."""
    if "properties" not in t.columns:
        return ibis.null("float64")
    amount = json_text(t.properties, spec.revenue_property, engine).try_cast("float64")
    return ibis.ifelse((t.type == "track") & (t.event == spec.revenue_event), amount, ibis.null("float64"))


def event_pieces(events: ir.Table, spec: ActivitySpec, keys: tuple[str, ...] = ("person_id",),
                 engine: str = "duckdb") -> ir.Table:
    """Every event as a one-event piece of a person-day, without grouping.

    Everything read from person-days is a min, max, sum or bit-or, so pieces give the same answers as
    grouped rows; reading raw events this way costs one aggregation instead of two (warehouse mode, and
    the DuckDB store before its rollup exists).
    """
    seen = events.filter(events.type.isin(SEEN_TYPES))
    active, uninstall = is_activity(seen, spec), is_uninstall(seen, spec)
    ts = seen.timestamp
    none = ibis.null("timestamp('UTC')") if ts.type().timezone else ibis.null("timestamp")
    return seen.select(
        *[seen[k] for k in keys],
        day=ts.date(),
        active=active.cast("int64"),
        revenue=revenue(seen, spec, engine),
        first_ts=ts,
        last_active_ts=ibis.ifelse(active, ts, none),
        first_uninstall_ts=ibis.ifelse(uninstall, ts, none),
        last_uninstall_ts=ibis.ifelse(uninstall, ts, none),
    )


def person_days(events: ir.Table, spec: ActivitySpec, keys: tuple[str, ...] = ("person_id",),
                engine: str = "duckdb") -> ir.Table:
    """Raw events (keys..., type, event, timestamp[, properties]) -> one row per person and local day."""
    p = event_pieces(events, spec, keys, engine)
    return p.group_by([*keys, "day"]).aggregate(
        active=p.active.sum(),
        revenue=p.revenue.sum(),
        first_ts=p.first_ts.min(),
        last_active_ts=p.last_active_ts.max(),
        first_uninstall_ts=p.first_uninstall_ts.min(),
        last_uninstall_ts=p.last_uninstall_ts.max(),
    )
