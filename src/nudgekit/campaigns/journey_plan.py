"""What `nudge plan` shows for a journey, and what preflight reads: how people enter and may enter again,
how they leave, each step in words, how many would enter as it goes live (a segment's members with
`existing: true`, today's dated entries) and how many triggered it lately, who is still on older versions
(they finish there) — and every send step's message queued on a dry copy for a sample of people, through the
same chain, so render faults, links, labels and cost show before anyone enters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from nudgekit.campaigns import engine, live, preflight
from nudgekit.campaigns import journey as journeys
from nudgekit.campaigns.dry import dry_copy
from nudgekit.campaigns.journey import JourneySpec, clock_time
from nudgekit.campaigns.preflight import NIGHT_FROM, NIGHT_UNTIL, Check
from nudgekit.campaigns.run import Outcome, choose, prepare_messages
from nudgekit.delivery import plan as planning
from nudgekit.policy import people
from nudgekit.store.state import Campaign, Profile
from nudgekit.vocabulary import CampaignState

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

SAMPLE_PEOPLE = 50
RECENT = timedelta(days=7)


@dataclass
class JourneyPlan:
    entry: str
    reentry: str
    exits: str
    steps: list[str]
    entering_now: dict[str, Any] | None = None
    recent_triggers: int | None = None
    in_flight: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"entry": self.entry, "reentry": self.reentry, "exits": self.exits, "steps": self.steps,
                "entering_now": self.entering_now, "recent_triggers": self.recent_triggers,
                "in_flight": self.in_flight}


def describe_entry(spec: JourneySpec) -> str:
    e = spec.entry
    if e.event:
        where = f" where {', '.join(f'{f.property} {f.op.value} {f.value!r}' for f in e.where)}" if e.where else ""
        return f"when a person does {e.event}{where} (events older than {e.max_age} on arrival start nothing)"
    if e.stage:
        frm = f" from {', '.join(s.value for s in e.from_stage)}" if e.from_stage else ""
        return f"when a person's lifecycle stage becomes {', '.join(s.value for s in e.stage)}{frm}"
    if e.segment is not None:
        return (f"when a person joins the segment (checked every {e.every})"
                + ("; its members when it goes live enter too" if e.existing else
                   "; those in it when it goes live do not enter"))
    if e.api:
        return f"by a call: POST /api/v1/journeys/{spec.name}/entries"
    d = e.date
    assert d is not None
    base = f"the date in trait {d.trait}" if d.trait else f"each {d.event}"
    shift = f"{abs(d.days)} days {'after' if d.days >= 0 else 'before'} " if d.days else "on "
    return f"{shift}{base}{' every year' if d.yearly else ''}, at {d.at} in each person's zone"


def describe_steps(spec: JourneySpec) -> list[str]:
    out = []
    for step in spec.steps:
        targets = dict(spec.targets(step))
        if step.send is not None:
            what = f"send: first of {', '.join(c.value for c in step.send.order)} that reaches them"
        elif step.wait is not None:
            what = step.wait.said()
            if step.wait.event:
                what += f"; if it comes go to {targets['next']}, if not to {targets['wait.on_timeout']}"
        elif step.branch is not None:
            what = (f"branch on {step.branch.if_}: yes -> {targets['branch.then']}, "
                    f"no -> {targets['branch.else']}")
        elif step.split is not None:
            what = "split: " + ", ".join(f"{a.percent:g}% -> {a.next}" for a in step.split)
        else:
            what = "end"
        if step.next and step.branch is None and step.split is None:
            what += f" (then {step.next})"
        out.append(f"{step.id}: {what}")
    return out


def describe_exits(spec: JourneySpec) -> str:
    parts = [f"doing {e}" for e in spec.exit.events]
    if spec.goal is not None and spec.exit.on_goal:
        parts.append(f"reaching the goal ({spec.goal.events[0]})")
    return ("They leave at once on " + " or ".join(parts) + ".") if parts else "They leave only at the end."


def _recent(ws: Workspace, spec: JourneySpec) -> int | None:
    name = spec.entry.event
    if name is None:
        return None
    ws.flush()
    rows = ws.events.query("SELECT count(DISTINCT person_id) AS n FROM events_resolved WHERE event = ? "
                           "AND timestamp >= ?", [name, ws.clock() - RECENT])
    return int(rows[0]["n"]) if rows else 0


def _sample(ws: Workspace, spec: JourneySpec) -> list[str]:
    """Who the sample sends go to: recent triggerers, else the journey's audience, else anyone."""
    ids: list[str] = []
    if spec.entry.event:
        ids = [r["person_id"] for r in ws.events.query(
            "SELECT DISTINCT person_id FROM events_resolved WHERE event = ? AND person_id NOT LIKE 'anon:%' "
            "ORDER BY person_id LIMIT ?", [spec.entry.event, SAMPLE_PEOPLE])]
    if not ids:
        with ws.sessions() as session:
            ids = list(session.scalars(select(Profile.profile_id).where(
                Profile.merged_into.is_(None), Profile.user_id.isnot(None)).order_by(Profile.profile_id)
                .limit(SAMPLE_PEOPLE)))
    return ids


def plan(ws: Workspace, spec: JourneySpec, stored: dict[str, Any], digest: str, keep: int) -> tuple[JourneyPlan, Outcome]:
    """The journey's plan, and its send steps queued for a sample of people on a dry copy."""
    result = JourneyPlan(describe_entry(spec), spec.reentry.said(), describe_exits(spec), describe_steps(spec),
                         recent_triggers=_recent(ws, spec))
    result.in_flight = engine.standing(ws, spec.name)["versions"]
    outcome = Outcome(keep=keep)
    now = ws.clock()
    ws.flush()  # the copy shares the event store: nothing of ours may be flushed from inside it
    with dry_copy(ws, now) as copy:
        with copy.sessions.begin() as session:
            live.store(session, spec.name, stored, digest, None, None, now, CampaignState.LIVE, None)
            session.execute(update(Campaign).where(Campaign.name == spec.name).values(
                cursor=engine.start_cursor(ws, spec)))
        if spec.entry.kind in ("segment", "date"):
            went = engine.went_live(copy, spec)
            result.entering_now = went.get("entered")
        sample = _sample(copy, spec)
        outcome.audience = len(sample)
        _sample_sends(copy, spec, sample, outcome)
    return result, outcome


def _triggers(ws: Workspace, spec: JourneySpec, sample: list[str]) -> dict[str, dict[str, Any]]:
    """Each sampled person's latest trigger event, as the walk would give it to the messages (`event`)."""
    name = spec.entry.event
    if name is None or not sample:
        return {}
    marks = ", ".join("?" for _ in sample)
    rows = ws.events.query(
        f"SELECT person_id, event, properties, timestamp FROM events_resolved WHERE event = ? AND person_id IN "
        f"({marks}) ORDER BY timestamp DESC", [name, *sample])
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        properties = engine.properties_of(r["properties"])
        if r["person_id"] not in found and journeys.matches(spec.entry.where, properties):
            found[r["person_id"]] = {"event": r["event"], "properties": properties,
                                     "timestamp": r["timestamp"].isoformat()}
    return found


def _sample_sends(ws: Workspace, spec: JourneySpec, sample: list[str], outcome: Outcome) -> None:
    with ws.sessions() as session:
        persons = people.load_many(session, ws.settings, sample)
    triggers = _triggers(ws, spec, sample)
    options = spec.options()
    for step in spec.steps:
        if step.send is None:
            continue
        ready = prepare_messages(ws, spec.purpose, step.send.messages, f"steps.{step.id}.send.messages")
        requests = []
        for profile_id in sample:
            person = persons.get(profile_id)
            channel = choose(step.send.order, person, spec.advertising)
            fields, prepared = ready[channel]
            requests.append((planning.Request(f"plan/{spec.name}/{step.id}/{profile_id}", channel, fields, options,
                                              spec.name, None, spec.in_doubt, None, prepared,
                                              triggers.get(profile_id), step.id, False),
                             profile_id if person is not None else None))
        planning.plan(ws, requests, campaign=spec.name, tally=outcome)


def night(spec: JourneySpec) -> Check:
    """An advertising journey's fixed times (a wait until a time of day, a dated entry's hour) must not be in
    the night window; sends at the moment of a trigger at night wait for the morning (the night rule)."""
    if not spec.advertising:
        return Check("night", "ok", "informational: any hour")
    times: list[tuple[str, time]] = [(f"steps.{s.id}.wait.until", clock_time(s.wait.until, "until"))
                                     for s in spec.steps if s.wait is not None and s.wait.until]
    if spec.entry.date is not None:
        times.append(("entry.date.at", clock_time(spec.entry.date.at, "at")))
    bad = [f"{where} {at:%H:%M}" for where, at in times if at >= NIGHT_FROM or at < NIGHT_UNTIL]
    if bad:
        return Check("night", "error", f"{', '.join(bad)} is in the night window for advertising (21:00-08:00, "
                     "Kakao from 20:50): pick a time between 08:00 and 20:50")
    return Check("night", "ok", "messages that fall due at night wait until 08:00 where the person is "
                 "(unless they gave night-time consent)")


def checks(spec: JourneySpec, outcome: Outcome, settings: Any) -> list[Check]:
    return [preflight.goal(spec), preflight.messages(outcome), preflight.purpose(spec, outcome),
            preflight.links(outcome, settings), night(spec), preflight.budget(spec, outcome),
            *preflight.data(outcome)]

