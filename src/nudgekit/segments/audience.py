"""What a segment is right now: its size and reach (`preview`), its members (`export`), and whether one
person belongs (`is_member`).

:TRICKY: `is_member` answers for one person at a time (journeys reacting to one event). It evaluates the
same expression, but over that person's profile row and only their events: the events are selected by
the raw ids they arrived with (the user id, or anonymous ids linked to it), a filter the event store
can apply while it scans, instead of resolving every event to its person first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nudgekit.segments import model as m
from nudgekit.segments.compile import evaluate, needs_of
from nudgekit.segments.people import (
    REACH_CHANNELS,
    Needs,
    consent_column,
    every_channel_purpose,
    people,
    profile_ids,
    stages,
)
from nudgekit.store.backend import EventsView

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
            only: str | None = None, declared: dict[str, str] | None = None, snapshot: Path | None = None,
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


def is_member(engine: Any, view: EventsView, segment: m.Segment, person: str, *, today: date, zone: str,
              declared: dict[str, str] | None = None) -> bool:
    """Does one person belong, now."""
    people_table, staged, types = _tables(engine, view, segment, zone, only=person, declared=declared)
    only_them = _events_of(view, person)
    one = EventsView(view.con, view.engine, only_them, view.actor_days, view.from_rollup, view.local, view.resolve,
                     keyed_days=view.keyed_days)
    everyone = view.table(pa.table({"person_id": pa.array([person], pa.string())}))
    wide = evaluate(segment, one, people_table, staged, today=today, zone=zone, trait_types=types, everyone=everyone)
    found = view.con.to_pyarrow(wide.select("member")).column("member").to_pylist()
    return bool(found and found[0])


def _events_of(view: EventsView, person: str) -> ir.Table:
    """The person's events, selected by the raw ids they arrived with (see the module's :TRICKY:)."""
    if not view.local:
        return view.events.filter(view.events.person_id == person)
    ev, links = view.con.table("events"), view.con.table("identity_links")
    if person.startswith("anon:"):
        anonymous = person.removeprefix("anon:")
        linked = view.con.to_pyarrow(links.filter(links.alias_id == anonymous).count())
        if linked.as_py():
            return view.events.filter(ibis.literal(False))  # folded into a user: no events of its own
        mine = ev.user_id.isnull() & (ev.anonymous_id == anonymous)
    else:
        aliases = view.con.to_pyarrow(links.filter(links.user_id == person).alias_id).to_pylist()
        if view.con.to_pyarrow(links.filter(links.alias_id == person).count()).as_py():
            return view.events.filter(ibis.literal(False))  # an alias of another user
        users = [person, *aliases]
        mine = ev.user_id.isin(users)
        if aliases:  # :TRICKY: two scans, not one OR across columns: each can skip what its column rules out
            return _own(ev.filter(mine), person).union(
                _own(ev.filter(ev.user_id.isnull() & ev.anonymous_id.isin(aliases)), person), distinct=False)
    return _own(ev.filter(mine), person)


def _own(ev: ir.Table, person: str) -> ir.Table:
    return ev.select(person_id=ibis.literal(person), type=ev.type, event=ev.event, timestamp=ev.timestamp,
                     properties=ev.properties)
