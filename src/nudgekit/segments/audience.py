"""What a segment is right now: its size and reach (`preview`), its members (`export`), and whether some
people belong (`local_membership` on the workspace's own store, `membership` on a warehouse; behind
`ws.is_member` and `ws.members_among`).

:TRICKY: the membership checks answer for a few people at a time (journeys reacting to events). They
evaluate the same expression, but over those people's profile rows and only their events: on the
workspace's store the events are selected by the raw ids they arrived with (the user id, or anonymous ids
linked to it), a hash join the scan applies row by row within the people's active days, instead of
resolving every event to its person first; and the expression is compiled to SQL once per segment and day.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nudgekit.segments import model as m
from nudgekit.segments.compile import evaluate, needs_of, universe
from nudgekit.segments.people import (
    REACH_CHANNELS,
    Needs,
    consent_column,
    every_channel_purpose,
    people,
    profile_ids,
    stages,
)
from nudgekit.store.activity import day_start
from nudgekit.store.backend import EventsView, LocalStore
from nudgekit.store.rollup import ROLLUP

SAMPLE = 10


@dataclass
class Preview:
    segment: str
    size: int
    everyone: int
    reach: dict[str, dict[str, int]]
    """channel -> {"reachable": n, "with_advertising_consent": n}"""
    by_stage: dict[str, int]
    sample: list[dict[str, Any]]
    engine: str

    def as_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "size": self.size, "everyone": self.everyone, "reach": self.reach,
                "by_stage": self.by_stage, "sample": self.sample, "engine": self.engine}


def _tables(engine: Any, view: EventsView, segment: m.Segment, zone: str, extra: Needs | None = None,
            declared: dict[str, str] | None = None, snapshot: Path | None = None,
            ) -> tuple[ir.Table, ir.Table | None, dict[str, str]]:
    table, staged, types = _people_of(engine, segment, zone, extra=extra, declared=declared, snapshot=snapshot)
    return view.table(table), view.table(staged) if staged is not None else None, types


def _people_of(engine: Any, segment: m.Segment, zone: str, *, extra: Needs | None = None,
               only: list[str] | None = None, declared: dict[str, str] | None = None, snapshot: Path | None = None,
               ) -> tuple[pa.Table, pa.Table | None, dict[str, str]]:
    """The people columns the segment (and `extra`) reads, and the stored stages when it reads those, for
    everyone or `only` these people."""
    needs = needs_of(segment) | (extra or Needs())
    table, types = people(engine, needs, zone, only=only, declared=declared)
    return table, stages(engine, snapshot, only=only) if needs.stages else None, types


def preview(engine: Any, view: EventsView, segment: m.Segment, *, today: date, zone: str,
            declared: dict[str, str] | None = None, snapshot: Path | None = None) -> Preview:
    extra = Needs(consents=every_channel_purpose(), reach=True, stages=True, ids=True)
    people_table, staged, types = _tables(engine, view, segment, zone, extra, declared=declared, snapshot=snapshot)
    wide = evaluate(segment, view, people_table, staged, today=today, zone=zone, trait_types=types)
    sums: dict[str, ir.Value] = {"size": wide.member.sum(), "everyone": wide.count()}
    for channel in REACH_CHANNELS:
        reach = wide[f"reach__{channel}"].fill_null(False) & wide.member
        consent = wide[consent_column(channel, "advertising")].fill_null(False)
        sums[f"{channel}__reach"] = reach.sum()
        sums[f"{channel}__ads"] = (reach & consent).sum()
    totals = view.con.to_pyarrow(wide.aggregate(**sums)).to_pylist()[0]
    members = wide.filter(wide.member)
    stage_rows = view.con.to_pyarrow(members.group_by("stage").aggregate(n=members.count())).to_pylist()
    order = ibis.literal("sample:") + members.person_id
    sample = view.con.to_pyarrow(
        members.order_by(order.hexdigest("md5")).limit(SAMPLE).select("person_id", "user_id", "stage")).to_pylist()
    return Preview(
        segment.name, int(totals["size"] or 0), int(totals["everyone"]),
        {c: {"reachable": int(totals[f"{c}__reach"] or 0), "with_advertising_consent": int(totals[f"{c}__ads"] or 0)}
         for c in REACH_CHANNELS},
        {(r["stage"] or "unclassified"): int(r["n"]) for r in sorted(stage_rows, key=lambda r: -r["n"])},
        sample, view.engine)


EXPORT_COLUMNS = ("person_id", "user_id", "anonymous_id", "stage")


def members(engine: Any, view: EventsView, segment: m.Segment, *, today: date, zone: str,
            declared: dict[str, str] | None = None, snapshot: Path | None = None) -> pa.Table:
    """person_id, user_id, anonymous_id, stage of every member, ordered by person_id.

    :TRICKY: the ids come from the state DB for the members only, after the engine has found them: reading
    every profile's ids to join them in the engine cost more than the whole segment on 2M profiles."""
    people_table, staged, types = _tables(engine, view, segment, zone, Needs(stages=True),
                                          declared=declared, snapshot=snapshot)
    wide = evaluate(segment, view, people_table, staged, today=today, zone=zone, trait_types=types,
                    members_only=True)
    found = view.con.to_pyarrow(wide.filter(wide.member).select("person_id", "stage"))
    ids = profile_ids(engine, found.column("person_id").to_pylist())
    joined = found.join(ids, "person_id", join_type="left outer")
    return joined.select(list(EXPORT_COLUMNS)).sort_by("person_id")


def export(table: pa.Table, out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        pq.write_table(table, out)
        return "parquet"
    if suffix == ".csv":
        pacsv.write_csv(table, out)
        return "csv"
    raise m.SegmentError(f"{out}: write .csv or .parquet")


def membership(engine: Any, view: EventsView, segment: m.Segment, persons: Sequence[str], *, today: date,
               zone: str, declared: dict[str, str] | None = None) -> dict[str, bool]:
    """Whether each of these people belongs, now, reading a warehouse (or any Ibis backend): the
    single-person check for a batch (a journey checks everyone whose events one drain brought in with one
    scan, not one scan each). There an event's id is its person. The answer leaves out ids nobody has seen
    (no profile, no event): they belong to no segment, not even one of people who did *not* do something.

    :TRICKY: their events are fetched once and evaluated from memory: the expression reads them more than
    once (the aggregates, who was seen), and each read would scan the source again."""
    asked = list(dict.fromkeys(persons))
    if not asked:
        return {}
    people_rows, staged_rows, types = _people_of(engine, segment, zone, only=asked, declared=declared)
    events = view.table(view.con.to_pyarrow(
        view.events.filter(view.events.person_id.isin(asked)).select(*OWN_SCHEMA.names).cast(OWN_SCHEMA)))
    theirs = EventsView(view.con, view.engine, events, view.actor_days, False)
    people_table = view.table(people_rows)
    wide = evaluate(segment, theirs, people_table, view.table(staged_rows) if staged_rows is not None else None,
                    today=today, zone=zone, trait_types=types, everyone=universe(theirs, people_table))
    return _answers({a: a for a in asked}, view.con.to_pyarrow(wide.select("person_id", "member")))


def local_membership(engine: Any, store: LocalStore, segment: m.Segment, persons: Sequence[str], *, today: date,
                     zone: str, declared: dict[str, str] | None = None) -> dict[str, bool]:
    """`membership` on the workspace's own store, in milliseconds a person (see the module's :TRICKY:).

    An id may be an alias of a person (a user id merged into another, a visitor who signed up): it is
    answered for that person. The connection's time zone must be the workspace's."""
    asked = list(dict.fromkeys(persons))
    if not asked:
        return {}
    person_of, by_user, by_visitor = _ids_of(store, asked)
    people_rows, staged_rows, types = _people_of(engine, segment, zone, only=list(dict.fromkeys(person_of.values())),
                                                 declared=declared)
    events = _fetch_events(store, by_user, by_visitor, zone)
    sql = _member_sql(segment, today, zone, ibis.Schema.from_pyarrow(people_rows.schema),
                      None if staged_rows is None else ibis.Schema.from_pyarrow(staged_rows.schema), types)
    with _registered(store.raw, dict(zip(MEMBER_TABLES, (events, people_rows, staged_rows), strict=True))):
        found = store.raw.sql(sql).to_arrow_table()
    return _answers(person_of, found)


@contextmanager
def _registered(raw: Any, tables: dict[str, pa.Table | None]) -> Iterator[None]:
    """Arrow tables readable by name on a DuckDB connection for the length of the block (None: left out)."""
    named = {name: table for name, table in tables.items() if table is not None}
    for name, table in named.items():
        raw.register(name, table)
    try:
        yield
    finally:
        for name in named:
            raw.unregister(name)


def _answers(person_of: dict[str, str], found: pa.Table) -> dict[str, bool]:
    member = dict(zip(found.column("person_id").to_pylist(), found.column("member").to_pylist(), strict=True))
    return {a: bool(member[p]) for a, p in person_of.items() if p in member}


MEMBER_TABLES = ("nudge_member_events", "nudge_member_people", "nudge_member_stages")
"""The names a check's rows are registered under on the DuckDB connection, for the compiled SQL to read."""
WANTED = "nudge_member_ids"
"""The name the ids whose events a check reads are registered under."""

_COMPILED: dict[tuple[Any, ...], str] = {}
COMPILED_KEPT = 128
"""Compiled checks kept (a segment's SQL changes each day; a journey checks a handful of segments)."""


def _member_sql(segment: m.Segment, today: date, zone: str, people_schema: ibis.Schema,
                staged_schema: ibis.Schema | None, types: dict[str, str]) -> str:
    """The segment as SQL over the MEMBER_TABLES, compiled once for a segment, day, zone and table columns.

    :TRICKY: building and compiling the Ibis expression took about 40 ms a check, more than everything
    else together."""
    key = (segment.model_dump_json(), today, zone, people_schema, staged_schema, tuple(sorted(types.items())))
    if key not in _COMPILED:
        if len(_COMPILED) >= COMPILED_KEPT:
            _COMPILED.clear()
        _COMPILED[key] = _compile_member_sql(segment, today, zone, people_schema, staged_schema, types)
    return _COMPILED[key]


def _compile_member_sql(segment: m.Segment, today: date, zone: str, people_schema: ibis.Schema,
                        staged_schema: ibis.Schema | None, types: dict[str, str]) -> str:
    events_name, people_name, staged_name = MEMBER_TABLES
    events = ibis.table(OWN_SCHEMA, name=events_name)
    people_table = ibis.table(people_schema, name=people_name)
    staged = None if staged_schema is None else ibis.table(staged_schema, name=staged_name)
    theirs = EventsView(None, "duckdb", events, events, False)
    wide = evaluate(segment, theirs, people_table, staged, today=today, zone=zone, trait_types=types,
                    everyone=universe(theirs, people_table))
    return str(ibis.to_sql(wide.select("person_id", "member"), dialect="duckdb"))


def _ids_of(store: LocalStore, asked: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """asked id -> person; and the raw ids their events arrive with -> person, as user ids and as anonymous
    ids (see the module's :TRICKY:)."""

    def linked(column: str, ids: list[str]) -> list[tuple[str, str]]:  # an alias has one link
        return _lookup(store, f"SELECT alias_id, user_id FROM identity_links WHERE {column} IN ({{}})", ids)

    raw = {a: a.removeprefix("anon:") for a in asked}
    link = dict(linked("alias_id", list(set(raw.values()))))
    person_of = {a: link.get(r, a) for a, r in raw.items()}
    users = [p for p in set(person_of.values()) if not p.startswith("anon:")]
    by_user = {p: p for p in users}
    by_visitor = {p.removeprefix("anon:"): p for p in set(person_of.values()) if p.startswith("anon:")}
    for alias, user in linked("user_id", users):  # events that arrived with an alias of a person are theirs
        by_user[alias] = by_visitor[alias] = user
    return person_of, by_user, by_visitor


MAX_SPANS = 32
"""At most this many time spans narrow an id scan; closer spans are merged first."""


def _active_spans(store: LocalStore, persons: list[str], raw_ids: list[str], zone: str,
                  ) -> list[tuple[datetime, datetime]] | None:
    """The stretches of time holding these people's events, from the activity rollup's days, or None
    when there is no rollup to ask (then the id scan reads every row group).

    :TRICKY: events arrive in time order, so an id scan can skip nothing by the id, but everything outside
    the person's days by the timestamp (one user's lookup: about 400 ms -> 60 ms on 44.6M events). The
    rollup is sorted by person, so finding the days takes milliseconds. Its rows carry the person their
    actor had when written; rows of aliases whose link changed since the last compaction may carry an
    older one, so those aliases are looked up by actor as well."""
    if not store.rollup_current:
        return None
    pending = {r[0] for r in _lookup(store, "SELECT alias_id FROM link_changes WHERE alias_id IN ({})", raw_ids)}
    sql = f"SELECT DISTINCT day FROM {ROLLUP} WHERE person_id IN ({{}})"
    if pending:
        sql += f" OR actor IN ({', '.join(['?'] * len(pending))})"
    days = sorted(r[0] for r in _lookup(store, sql, persons, list(pending)))
    spans: list[list[date]] = []
    for day in days:
        if spans and (day - spans[-1][1]).days <= 1:
            spans[-1][1] = day
        else:
            spans.append([day, day])
    while len(spans) > MAX_SPANS:  # merge the two spans with the shortest gap between them
        i = min(range(len(spans) - 1), key=lambda k: (spans[k + 1][0] - spans[k][1]).days)
        spans[i : i + 2] = [[spans[i][0], spans[i + 1][1]]]
    return [(day_start(a, zone), day_start(b + timedelta(days=1), zone)) for a, b in spans]


def _lookup(store: LocalStore, sql: str, ids: list[str], more: list[str] | None = None) -> list[Any]:
    """Rows of a small lookup on the DuckDB file, `{}` in `sql` standing for the ids' placeholders.
    :TRICKY: plain SQL: compiling an Ibis expression costs about 15 ms, more than these lookups."""
    if not ids:
        return []
    return store.raw.execute(sql.format(", ".join(["?"] * len(ids))), [*ids, *(more or [])]).fetchall()


def _fetch_events(store: LocalStore, by_user: dict[str, str], by_visitor: dict[str, str], zone: str) -> pa.Table:
    """The events of the people in `by_user` / `by_visitor` (raw id -> person), from the workspace's own
    store, keyed by person (OWN_SCHEMA): one scan, within the people's active days when the rollup knows
    them (see `_active_spans`).

    :TRICKY: an index on user ids found one user's events in 1 ms instead of a scan's 10-100 ms, but the
    whole check only went from 74 to 63 ms (median; opening the file and the rest stay) for a store a
    gigabyte larger on 44.6M events and inserts three times slower: not worth it (docs/performance.md)."""
    schema = OWN_SCHEMA.to_pyarrow()
    if not by_user and not by_visitor:
        return schema.empty_table()
    persons = list({*by_user.values(), *by_visitor.values()})
    spans = _active_spans(store, persons, list({*by_user, *by_visitor}), zone)
    if spans == []:
        return schema.empty_table()
    wanted = pa.table({"is_anon": [False] * len(by_user) + [True] * len(by_visitor),
                       "raw_id": [*by_user, *by_visitor], "person_id": [*by_user.values(), *by_visitor.values()]})
    sql = ("SELECT w.person_id, e.type, e.event, e.timestamp, e.properties FROM events e "
           f"JOIN {WANTED} w ON w.raw_id = coalesce(e.user_id, e.anonymous_id) AND w.is_anon = (e.user_id IS NULL)")
    params: list[datetime] = []
    if spans is not None:
        sql += " WHERE " + " OR ".join(["(e.timestamp >= ? AND e.timestamp < ?)"] * len(spans))
        params = [moment for span in spans for moment in span]
    with _registered(store.raw, {WANTED: wanted}):
        rows = store.raw.sql(sql, params=params).to_arrow_table()
    return pa.table([rows.column(n).cast(schema.field(n).type) for n in schema.names], schema=schema)


OWN_SCHEMA = ibis.schema({"person_id": "string", "type": "string", "event": "string",
                          "timestamp": "timestamp('UTC', 6)", "properties": "string"})
