"""What a segment is right now: its size and reach (`preview`), its members (`export`), and whether some
people belong (`membership`, behind `ws.is_member` and `ws.members_among`).

:TRICKY: `membership` answers for a few people at a time (journeys reacting to events). It evaluates the
same expression, but over those people's profile rows and only their events: the events are selected by
the raw ids they arrived with (the user id, or anonymous ids linked to it), a filter the event store
can apply while it scans, instead of resolving every event to its person first.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
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
from nudgekit.store.backend import EventsView
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
            only: list[str] | None = None, declared: dict[str, str] | None = None, snapshot: Path | None = None,
            ) -> tuple[ir.Table, ir.Table | None, dict[str, str]]:
    needs = needs_of(segment) | (extra or Needs())
    table, types = people(engine, needs, zone, only=only, declared=declared)
    staged = view.table(stages(engine, snapshot, only=only)) if needs.stages else None
    return view.table(table), staged, types


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
    """Whether each of these people belongs, now: the single-person check for a batch (a journey checks
    everyone whose events one drain brought in with one scan, not one scan each).

    An id may be an alias of a person (a user id merged into another, a visitor who signed up): it is
    answered for that person. The answer leaves out ids nobody has seen (no profile, no event): they belong
    to no segment, not even one of people who did *not* do something."""
    asked = list(dict.fromkeys(persons))
    if not asked:
        return {}
    person_of, by_user, by_visitor = _ids_of(view, asked)
    wanted = list(dict.fromkeys(person_of.values()))
    people_table, staged, types = _tables(engine, view, segment, zone, only=wanted, declared=declared)
    # :TRICKY: their events are fetched once (two scans) and evaluated from memory: the expression reads
    # them more than once (the aggregates, who was seen), and each read would scan the store again
    spans = _active_spans(view, wanted, [*by_user, *by_visitor], zone)
    events = view.table(view.con.to_pyarrow(_events_of(view, wanted, by_user, by_visitor, spans)))
    theirs = EventsView(view.con, view.engine, events, view.actor_days, False, view.local, view.resolve,
                        keyed_days=None)
    wide = evaluate(segment, theirs, people_table, staged, today=today, zone=zone, trait_types=types,
                    everyone=universe(theirs, people_table))
    found = view.con.to_pyarrow(wide.select("person_id", "member"))
    member = dict(zip(found.column("person_id").to_pylist(), found.column("member").to_pylist(), strict=True))
    return {a: bool(member[p]) for a, p in person_of.items() if p in member}


def _ids_of(view: EventsView, asked: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """asked id -> person; and the raw ids their events arrive with -> person, as user ids and as anonymous
    ids (see the module's :TRICKY:). Outside the workspace's own store an event's id is its person."""
    if not view.local:
        same = {a: a for a in asked}
        return same, same, {}

    def linked(column: str, ids: list[str]) -> list[tuple[str, str]]:  # an alias has one link
        return _lookup(view, f"SELECT alias_id, user_id FROM identity_links WHERE {column} IN ({{}})", ids)

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


def _active_spans(view: EventsView, persons: list[str], raw_ids: list[str], zone: str,
                  ) -> list[tuple[datetime, datetime]] | None:
    """The stretches of time holding these people's events, from the activity rollup's days, or None
    when there is no rollup to ask (then the id scans read every row group).

    :TRICKY: events arrive in time order, so an id scan can skip nothing by the id, but everything outside
    the person's days by the timestamp (one user's lookup: about 400 ms -> 60 ms on 44.6M events). The
    rollup is sorted by person, so finding the days takes milliseconds. Its rows carry the person their
    actor had when written; rows of aliases whose link changed since the last compaction may carry an
    older one, so those aliases are looked up by actor as well."""
    if not view.from_rollup or view.raw is None:
        return None
    pending = {r[0] for r in _lookup(view, "SELECT alias_id FROM link_changes WHERE alias_id IN ({})", raw_ids)}
    sql = f"SELECT DISTINCT day FROM {ROLLUP} WHERE person_id IN ({{}})"
    if pending:
        sql += f" OR actor IN ({', '.join(['?'] * len(pending))})"
    days = sorted(r[0] for r in _lookup(view, sql, persons, list(pending)))
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


def _lookup(view: EventsView, sql: str, ids: list[str], more: list[str] | None = None) -> list[Any]:
    """Rows of a small lookup on the DuckDB file, `{}` in `sql` standing for the ids' placeholders.
    :TRICKY: plain SQL: compiling an Ibis expression costs about 15 ms, more than these lookups."""
    if not ids:
        return []
    return view.raw.execute(sql.format(", ".join(["?"] * len(ids))), [*ids, *(more or [])]).fetchall()


def _events_of(view: EventsView, persons: list[str], by_user: dict[str, str], by_visitor: dict[str, str],
               spans: list[tuple[datetime, datetime]] | None = None) -> ir.Table:
    """These people's events, selected by the raw ids they arrived with (see the module's :TRICKY:), within
    `spans` when given."""
    if not view.local:
        return view.events.filter(view.events.person_id.isin(persons))
    ev = view.con.table("events")
    if spans is not None:
        within = [(ev.timestamp >= ibis.literal(a)) & (ev.timestamp < ibis.literal(b)) for a, b in spans]
        ev = ev.filter(functools.reduce(operator.or_, within) if within else ibis.literal(False))
    parts = [_own(ev.filter(ev.user_id.isin(list(by_user))), ev.user_id, by_user, view)] if by_user else []
    if by_visitor:  # :TRICKY: two scans, not one OR across columns: each can skip what its column rules out
        anonymous = ev.filter(ev.user_id.isnull() & ev.anonymous_id.isin(list(by_visitor)))
        parts.append(_own(anonymous, anonymous.anonymous_id, by_visitor, view))
    return functools.reduce(lambda a, b: a.union(b, distinct=False), parts)


def _own(ev: ir.Table, raw_id: ir.StringValue, owner: dict[str, str], view: EventsView) -> ir.Table:
    """Events keyed by the person their raw id belongs to (`owner`: raw id -> person)."""
    if len(set(owner.values())) == 1:  # one person: a constant, no join
        person: ir.StringValue = ibis.literal(next(iter(owner.values())))
    else:
        mapping = view.table(pa.table({"raw_id": list(owner), "owner": list(owner.values())}))
        ev = ev.join(mapping, raw_id == mapping.raw_id)
        person = ev.owner
    own = ev.select(person_id=person, type=ev.type, event=ev.event, timestamp=ev.timestamp, properties=ev.properties)
    return own.cast(OWN_SCHEMA)  # :TRICKY: a join may drop NOT NULL from a column, and a union wants equal types


OWN_SCHEMA = ibis.schema({"person_id": "string", "type": "string", "event": "string",
                          "timestamp": "timestamp('UTC', 6)", "properties": "string"})
