"""The journey engine: people entering journeys, walking their steps, waiting on durable timers, and leaving.

Every person in a journey is one `journey_entries` row: the version they entered (they finish on it, whatever
is applied later), the step they are on, and — while they wait — when the wait is over. Nothing lives only
in memory: a process that stops mid-walk leaves rows that any process picks up again.

- **Entering.** Events enter people as they arrive (`on_rows`, called by the event store after each append
  — the server's drain and the Python API's flush); lifecycle transitions, segment entries and dated entries
  are read by `tick` (every `[campaigns] tick_seconds` in `nudge serve`); `enter` takes API calls. What
  started an entry is its key: the same event seen twice enters once.
- **Walking.** `advance` claims due rows (a lease, so two processes never walk the same person at once),
  runs their steps in batches — sends through the outbox and the policy chain, branches, splits — up to the
  next wait, and writes where each stopped. A send's outbox key is the journey, step, person and entry, so a
  walk repeated after a crash queues nothing twice.
- **Leaving.** An exit event or the goal takes a person out at once; a wait for an event ends when it comes.

:TRICKY: the event listener records entries, exits and wake-ups before it returns, and the event store
drains a spool part only after its listener returned: a crash in between drains the part again, and the
entry keys make that harmless. Walking the people it entered happens after, and a failure there is only
logged: their rows are due, and the next tick walks them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from nudgekit.campaigns import journey as journeys
from nudgekit.campaigns.journey import END, JourneySpec
from nudgekit.campaigns.run import choose, held_out, prepare_messages
from nudgekit.delivery import plan as planning
from nudgekit.policy import control, people
from nudgekit.store.state import Campaign, CampaignVersion, JourneyEntry, JourneyMember, LifecycleTransition, in_batches
from nudgekit.vocabulary import CampaignState, EventName, JourneyState

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

log = logging.getLogger("nudgekit.journeys")
LEASE = timedelta(minutes=5)
"""How long a walk may hold its people before another process may take them over."""
CLAIM = 500
MAX_HOPS = 200
"""Steps one walk takes per person at most (a journey's loops must pass a wait; this is the backstop)."""
PATH_KEEP = 100
WATCHING = (CampaignState.LIVE.value, CampaignState.PAUSED.value, CampaignState.AWAITING_APPROVAL.value)
"""Journey states whose people's exits still count."""
WALKING = (CampaignState.LIVE.value, CampaignState.AWAITING_APPROVAL.value)
"""Journey states whose people walk on: a new version waiting for approval takes nobody in, and those in
walk on their (approved) version."""
OPENED = (EventName.MESSAGE_OPENED.value, "In-App Message Shown", "Content Card Viewed")
CLICKED = (EventName.MESSAGE_CLICKED.value, "In-App Message Clicked", "Content Card Clicked")

_specs: dict[str, JourneySpec] = {}


def version_of(session: Any, name: str, version: int) -> tuple[JourneySpec, str]:
    """A stored version's spec and digest; the spec parsed once per process (by its digest: a plan's
    throw-away version and the one applied later may share a number, never a digest)."""
    row = session.get(CampaignVersion, (name, version))
    assert row is not None, (name, version)
    if row.digest not in _specs:
        _specs[row.digest] = JourneySpec.model_validate(row.spec)
    return _specs[row.digest], row.digest


def spec_of(session: Any, name: str, version: int) -> JourneySpec:
    return version_of(session, name, version)[0]


@dataclass
class Live:
    name: str
    version: int
    state: str
    spec: JourneySpec
    cursor: str | None
    next_run_at: datetime | None


def live_journeys(session: Any) -> list[Live]:
    """Journeys taking people in (or paused, or waiting for approval: they still watch exits)."""
    rows = session.execute(select(Campaign.name, Campaign.version, Campaign.state, Campaign.cursor,
                                  Campaign.next_run_at).where(Campaign.kind == "journey", Campaign.state.in_(WATCHING))
                           ).all()
    return [Live(n, v, s, spec_of(session, n, v), c, at) for n, v, s, c, at in rows]


def in_flight_versions(session: Any) -> list[tuple[str, int]]:
    """(journey, version) of every journey version (not the versions a name had as a campaign): any may
    still have people in it, who keep to it (versions are few; counting who is on each would cost more than
    reading them all)."""
    versions = session.execute(select(CampaignVersion.name, CampaignVersion.version).join(
        Campaign, Campaign.name == CampaignVersion.name).where(
        Campaign.kind == "journey", CampaignVersion.spec["kind"].as_string() == "journey")).all()
    return [(n, v) for n, v in versions]


# -- entering ------------------------------------------------------------------------------------


@dataclass
class Entering:
    profile_id: str
    key: str
    context: dict[str, Any] | None = None
    at: datetime | None = None
    """When their first step is due (None: now)."""


@dataclass
class Entered:
    """What entering did: entered, and for each person who did not, why."""

    entered: list[int] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    restarted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"entered": len(self.entered), "restarted": self.restarted, "skipped": dict(self.skipped)}


def _eligible(ws: Workspace, spec: JourneySpec, ids: list[str]) -> set[str]:
    """Those of the people in the journey's audience (all of them when it has none)."""
    if spec.audience is None or not ids:
        return set(ids)
    return ws.members_among(spec.audience.segment_of(spec.name), ids)


def enter(ws: Workspace, live: Live, people_in: list[Entering]) -> Entered:
    """Put people in the journey as its entry and re-entry rules allow."""
    spec, now = live.spec, ws.clock()
    done = Entered()
    if live.state != CampaignState.LIVE.value:
        done.skipped["journey_paused" if live.state == CampaignState.PAUSED else "awaiting_approval"] += len(people_in)
        return done
    firsts: dict[str, Entering] = {}
    for item in people_in:  # one entry per person per call: their earliest trigger
        firsts.setdefault(item.profile_id, item)
        if item is not firsts[item.profile_id]:
            done.skipped["same_batch"] += 1
    eligible = _eligible(ws, spec, list(firsts))
    for profile_id in list(firsts):
        if profile_id not in eligible:
            done.skipped["not_in_audience"] += 1
            del firsts[profile_id]
    for chunk in in_batches(list(firsts.values())):
        try:
            with ws.sessions.begin() as session:
                _enter_batch(session, live, chunk, now, done)
        except IntegrityError:  # another process entered some of them meanwhile: one at a time
            for item in chunk:
                try:
                    with ws.sessions.begin() as session:
                        _enter_batch(session, live, [item], now, done)
                except IntegrityError:
                    done.skipped["entered_elsewhere"] += 1
    return done


def _enter_batch(session: Any, live: Live, batch: list[Entering], now: datetime, done: Entered) -> None:
    spec = live.spec
    ids = [i.profile_id for i in batch]
    keys = {k for (k,) in session.execute(select(JourneyEntry.entry_key).where(
        JourneyEntry.journey == live.name, JourneyEntry.entry_key.in_([i.key for i in batch])))}
    last: dict[str, tuple[datetime, str]] = {}
    for profile_id, entered_at, state in session.execute(select(
            JourneyEntry.profile_id, JourneyEntry.entered_at, JourneyEntry.state).where(
            JourneyEntry.journey == live.name, JourneyEntry.profile_id.in_(ids))):
        if profile_id not in last or entered_at > last[profile_id][0] or state == JourneyState.ACTIVE.value:
            last[profile_id] = (entered_at, state)
    rule = spec.reentry
    rows, restart = [], []
    for item in batch:
        if item.key in keys:
            done.skipped["already_seen"] += 1
            continue
        before = last.get(item.profile_id)
        if before is not None:
            entered_at, state = before
            if rule.allow == "once":
                done.skipped["entered_before"] += 1
                continue
            if rule.allow == "after" and entered_at > now - timedelta(days=rule.days or 0):
                done.skipped["entered_recently"] += 1
                continue
            if state == JourneyState.ACTIVE.value:
                if rule.while_in == "ignore":
                    done.skipped["still_in_journey"] += 1
                    continue
                restart.append(item.profile_id)
        rows.append({"journey": live.name, "version": live.version, "profile_id": item.profile_id,
                     "entry_key": item.key, "state": JourneyState.ACTIVE.value, "step": spec.first,
                     "waiting": False, "waiting_for": None, "due_at": max(item.at or now, now), "claimed_until": None,
                     "entered_at": now, "updated_at": now, "context": item.context, "path": [],
                     "exit_reason": None})
    if restart:
        session.execute(update(JourneyEntry).where(
            JourneyEntry.journey == live.name, JourneyEntry.profile_id.in_(restart),
            JourneyEntry.state == JourneyState.ACTIVE.value).values(
            state=JourneyState.EXITED.value, exit_reason="restarted", due_at=None, updated_at=now))
        done.restarted += len(restart)
    if rows:
        ids_made = session.execute(insert(JourneyEntry).returning(JourneyEntry.id), rows).scalars().all()
        done.entered.extend(ids_made)


# -- events --------------------------------------------------------------------------------------


def _watching(session: Any) -> tuple[list[Live], dict[tuple[str, int], JourneySpec]]:
    lives = live_journeys(session)
    versions = {(n, v): spec_of(session, n, v) for n, v in in_flight_versions(session)}
    return lives, versions


def on_rows(ws: Workspace, rows: pa.Table) -> list[int]:
    """Newly arrived events: enter, exit and wake the people they belong to. Returns the entries now due."""
    if rows.num_rows == 0:
        return []
    with ws.sessions() as session:
        lives, versions = _watching(session)
    names = set().union(*(s.events_watched() for s in versions.values())) if versions else set()
    if not names:
        return []
    picked = rows.filter(pa.compute.is_in(rows.column("event"), pa.array(sorted(names))))
    if picked.num_rows == 0:
        return []
    events = picked.select(["event_id", "event", "user_id", "anonymous_id", "timestamp", "properties"]).to_pylist()
    who = ws.resolve_many([i for e in events for i in (e["user_id"], e["anonymous_id"]) if i])
    for e in events:
        e["person"] = who.get(e["user_id"] or "") or who.get(e["anonymous_id"] or "")
        e["properties"] = properties_of(e["properties"])
    starts = {j.spec.entry.event for j in lives if j.state == CampaignState.LIVE.value and j.spec.entry.event}
    strangers = sorted({e["anonymous_id"] for e in events if e["person"] is None and not e["user_id"]
                        and e["anonymous_id"] and e["event"] in starts})
    if strangers:
        made = _visitors(ws, strangers)
        for e in events:
            if e["person"] is None and not e["user_id"]:
                e["person"] = made.get(e["anonymous_id"] or "")
    events = sorted((e for e in events if e["person"]), key=lambda e: e["timestamp"])
    due: list[int] = []
    now = ws.clock()
    for live in lives:
        entry = live.spec.entry
        if entry.event is None:
            continue
        oldest = now - journeys.duration(entry.max_age)
        wanted = [Entering(e["person"], f"event:{e['event_id']}",
                           {"event": e["event"], "properties": e["properties"], "timestamp": e["timestamp"].isoformat()})
                  for e in events if e["event"] == entry.event and e["timestamp"] >= oldest
                  and journeys.matches(entry.where, e["properties"])]
        if wanted:
            try:
                due += enter(ws, live, wanted).entered
            except DBAPIError:
                raise  # the database: the drain keeps the events and tries again
            except Exception:  # one journey's fault must not stop the events reaching the store
                log.exception("journey %s could not take in %d people; they did not enter", live.name, len(wanted))
    return due + _react(ws, versions, events, now)


def _visitors(ws: Workspace, anonymous_ids: list[str]) -> dict[str, str]:
    """Anonymous visitors whose event starts a journey before anything identified them: their anonymous
    profile, made as an identify without traits makes it, so the journey can reach them where they are (an
    in-app or in-browser message fetched by anonymousId)."""
    from nudgekit.profiles import identify
    from nudgekit.profiles.traits import TraitRegistry

    now = ws.clock()
    with ws.sessions.begin() as session:
        registry = TraitRegistry(session, ws.settings.traits)
        made = identify.apply_many(session, [identify.IdentifyPlan(None, a, now, None) for a in anonymous_ids],
                                   registry, now)
    return {a: r.profile_id for a, r in zip(anonymous_ids, made, strict=True)}


def properties_of(value: Any) -> dict[str, Any]:
    """An event's properties as a dict, from the store's JSON text (anything else: empty)."""
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def _react(ws: Workspace, versions: dict[tuple[str, int], JourneySpec], events: list[dict[str, Any]],
           now: datetime) -> list[int]:
    """Exit events, goals and awaited events for people in flight."""
    relevant = {n for s in versions.values() for n in (*s.exits_on(), *(st.wait.event for st in s.steps
                                                                        if st.wait and st.wait.event))}
    persons = sorted({e["person"] for e in events if e["event"] in relevant})
    if not persons:
        return []
    woken: list[int] = []
    by_person: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_person[e["person"]].append(e)
    with ws.sessions.begin() as session:
        for chunk in in_batches(persons):
            rows = session.scalars(select(JourneyEntry).where(
                JourneyEntry.profile_id.in_(chunk), JourneyEntry.state == JourneyState.ACTIVE.value)).all()
            for row in rows:
                spec = versions.get((row.journey, row.version))
                if spec is None:
                    continue
                exits = spec.exits_on()
                for e in by_person[row.profile_id]:
                    if e["timestamp"] < row.entered_at - timedelta(seconds=1):
                        continue  # before they entered
                    if e["event"] in exits:
                        row.state, row.exit_reason, row.due_at, row.updated_at = (
                            JourneyState.EXITED.value, exits[e["event"]], None, now)
                        row.path = [*row.path, [END, now.isoformat(), exits[e["event"]]]][-PATH_KEEP:]
                        break
                    if row.waiting and row.waiting_for == e["event"]:
                        step = spec.step(row.step or spec.first)
                        target = step.next or spec.following(step)
                        row.waiting, row.waiting_for, row.updated_at, row.claimed_until = False, None, now, None
                        row.path = [*row.path, [step.id, now.isoformat(), f"event:{e['event']}"]][-PATH_KEEP:]
                        if target == END:
                            row.state, row.step, row.due_at = JourneyState.FINISHED.value, None, None
                        else:
                            row.step, row.due_at = target, now
                            woken.append(row.id)
                        break
    return woken


# -- walking -------------------------------------------------------------------------------------


@dataclass
class Walker:
    """One claimed entry as a walk moves it."""

    id: int
    journey: str
    version: int
    profile_id: str
    step: str
    waiting: bool
    waiting_for: str | None
    due_at: datetime | None
    entered_at: datetime
    context: dict[str, Any] | None
    path: list[Any]
    state: str = JourneyState.ACTIVE.value
    exit_reason: str | None = None
    moved: bool = False

    def go(self, target: str, now: datetime, note: str | None = None) -> None:
        self.path = [*self.path, [self.step, now.isoformat(), *([note] if note else [])]][-PATH_KEEP:]
        self.waiting, self.waiting_for, self.moved = False, None, True
        if target == END:
            self.state, self.due_at, self.exit_reason = JourneyState.FINISHED.value, None, None
        self.step = target

    def visits(self, step: str) -> int:
        return sum(1 for p in self.path if p[0] == step)


def _claim(ws: Workspace, now: datetime, ids: list[int] | None) -> list[Walker]:
    paused = select(Campaign.name).where(Campaign.kind == "journey", Campaign.state.not_in(WALKING))
    free = or_(JourneyEntry.claimed_until.is_(None), JourneyEntry.claimed_until < now)
    due = and_(JourneyEntry.state == JourneyState.ACTIVE.value, JourneyEntry.due_at <= now, free,
               JourneyEntry.journey.not_in(paused))
    pick = select(JourneyEntry.id).where(due)
    if ids is not None:
        pick = pick.where(JourneyEntry.id.in_(ids))
    pick = pick.order_by(JourneyEntry.due_at).limit(CLAIM)
    with ws.sessions.begin() as session:
        chosen = list(session.scalars(pick))
        if not chosen:
            return []
        got = session.execute(update(JourneyEntry).where(JourneyEntry.id.in_(chosen), due).values(
            claimed_until=now + LEASE).returning(
            JourneyEntry.id, JourneyEntry.journey, JourneyEntry.version, JourneyEntry.profile_id, JourneyEntry.step,
            JourneyEntry.waiting, JourneyEntry.waiting_for, JourneyEntry.due_at, JourneyEntry.entered_at,
            JourneyEntry.context, JourneyEntry.path)).all()
    return [Walker(*r[:4], r[4] or "", r[5], r[6], r[7], r[8], r[9], list(r[10] or [])) for r in got]


def advance(ws: Workspace, *, ids: list[int] | None = None) -> Counter[str]:
    """Walk every entry that is due (or just these) up to its next wait or its end. Returns what happened
    (steps run by kind, finished, waiting)."""
    tally: Counter[str] = Counter()
    while True:
        now = ws.clock()
        walkers = _claim(ws, now, ids)
        if not walkers:
            return tally
        groups: dict[tuple[str, int], list[Walker]] = defaultdict(list)
        for w in walkers:
            groups[(w.journey, w.version)].append(w)
        for (name, version), group in groups.items():
            with ws.sessions() as session:
                spec, digest = version_of(session, name, version)
            try:
                _walk(ws, spec, digest, group, now, tally)
            finally:
                _save(ws, group, now)
        if ids is not None:
            return tally


def _walk(ws: Workspace, spec: JourneySpec, digest: str, group: list[Walker], now: datetime,
          tally: Counter[str]) -> None:
    with ws.sessions() as session:
        persons = people.load_many(session, ws.settings, [w.profile_id for w in group])
    moving = list(group)
    for _ in range(MAX_HOPS):
        # still walking: active, and not waiting (unless it is a wait whose time came before this walk)
        moving = [w for w in moving if w.state == JourneyState.ACTIVE.value
                  and not (w.waiting and (w.moved or (w.due_at is not None and w.due_at > now)))]
        if not moving:
            return
        at: dict[str, list[Walker]] = defaultdict(list)
        for w in moving:
            at[w.step].append(w)
        for step_id, here in at.items():
            step = spec.step(step_id)
            tally[step.action] += len(here)
            if step.send is not None:
                _send(ws, spec, digest, step, here, persons, now, tally)
                for w in here:
                    w.go(step.next or spec.following(step), now)
            elif step.wait is not None:
                for w in here:
                    if w.waiting:  # its time is up (an awaited event would have moved it on already)
                        timed_out = step.wait.event is not None
                        w.go(spec.timeout_target(step) if timed_out else step.next or spec.following(step), now,
                             "timeout" if timed_out else None)
                    else:
                        person = persons.get(w.profile_id)
                        zone = person.zone if person is not None else ws.settings.zone
                        w.waiting, w.waiting_for, w.moved = True, step.wait.event, True
                        w.due_at = step.wait.due(now, zone)
            elif step.branch is not None:
                yes = _holds(ws, spec, step.branch.if_, here, now)
                for w in here:
                    target = step.branch.then if w.id in yes else step.branch.else_
                    w.go(target or spec.following(step), now, "yes" if w.id in yes else "no")
            elif step.split is not None:
                for w in here:
                    point = control.bucket(f"{w.profile_id}/{w.id}", f"{spec.name}\x00{step.id}") / control.BUCKETS * 100
                    total, arm = 0.0, step.split[-1]
                    for candidate in step.split:
                        total += candidate.percent
                        if point < total:
                            arm = candidate
                            break
                    w.go(arm.next, now, arm.name or arm.next)
            else:
                for w in here:
                    w.go(END, now)
    log.warning("journey %s: a walk stopped after %d steps; it goes on next tick", spec.name, MAX_HOPS)


def _save(ws: Workspace, group: list[Walker], now: datetime) -> None:
    """Where each walker stopped: its step, its timer, or its end (and its claim let go)."""
    values = [{"id": w.id, "step": w.step if w.step != END else None, "waiting": w.waiting,
               "waiting_for": w.waiting_for, "due_at": w.due_at if w.state == JourneyState.ACTIVE.value else None,
               "state": w.state, "exit_reason": w.exit_reason, "path": w.path, "claimed_until": None,
               "updated_at": now} for w in group]
    with ws.sessions.begin() as session:
        # only rows still active: an exit event that came during the walk wins over where the walk left them
        for chunk in in_batches(values):
            session.execute(update(JourneyEntry).where(JourneyEntry.state == JourneyState.ACTIVE.value)
                            .execution_options(synchronize_session=False), chunk)


def _send(ws: Workspace, spec: JourneySpec, digest: str, step: journeys.Step, here: list[Walker],
          persons: dict[str, Any], now: datetime, tally: Counter[str]) -> None:
    """Queue the step's message for each walker: the first channel of its order that reaches them."""
    assert step.send is not None
    cache = ws.__dict__.setdefault("_journey_messages", {})  # per workspace: its templates
    key = (digest, step.id)
    if key not in cache:
        cache[key] = prepare_messages(ws, spec.purpose, step.send.messages, f"steps.{step.id}.send.messages")
    ready = cache[key]
    options = spec.options()
    with ws.sessions.begin() as session:
        from nudgekit.delivery import outbox

        outbox.open_campaign(session, spec.name, spec.per_minute, now)
    requests = []
    for w in here:
        person = persons.get(w.profile_id)
        channel = choose(step.send.order, person, spec.advertising)
        fields, prepared = ready[channel]
        visit = w.visits(step.id or "")
        message_key = "/".join((spec.name, step.id or "", w.profile_id, str(w.id))) + (f"#{visit + 1}" if visit else "")
        event = w.context  # what the template reads as event: {event, properties, timestamp}
        requests.append((planning.Request(message_key, channel, fields, options, spec.name, None, spec.in_doubt, None,
                                          prepared, event, step.id, held_out(spec, w.profile_id)),
                         w.profile_id if person is not None else None))
    queued = planning.plan(ws, requests, campaign=spec.name)
    tally["queued"] += queued.queued
    tally["deferred"] += queued.deferred
    tally["not_sent"] += sum(queued.skipped.values())


def _holds(ws: Workspace, spec: JourneySpec, condition: dict[str, Any], here: list[Walker], now: datetime) -> set[int]:
    """The walkers for whom the branch's condition is true now."""
    if "performed" in condition:
        since = {w.id: (now - journeys.duration(condition["within"])) if "within" in condition else w.entered_at
                 for w in here}
        done = _events_since(ws, [condition["performed"]], {w.profile_id: min(since[x.id] for x in here
                                                                              if x.profile_id == w.profile_id)
                                                            for w in here})
        return {w.id for w in here if any(t >= since[w.id] for t in done.get(w.profile_id, []))}
    if "opened" in condition or "clicked" in condition:
        target = condition.get("opened") or condition.get("clicked")
        names = OPENED + CLICKED if "opened" in condition else CLICKED
        sent = _message_ids(ws, spec.name, target, here)
        every = sorted({m for ms in sent.values() for m in ms})
        if not every:
            return set()
        found = ws.events.query(
            "SELECT DISTINCT json_extract_string(properties, '$.message_id') AS message_id FROM events "
            "WHERE event IN (SELECT UNNEST(?::VARCHAR[])) "
            "AND json_extract_string(properties, '$.message_id') IN (SELECT UNNEST(?::VARCHAR[]))",
            [list(names), every])
        seen = {f["message_id"] for f in found}
        return {entry for entry, ms in sent.items() if ms & seen}
    from nudgekit.segments import model as segments

    segment = segments.parse({"name": f"{spec.name}-branch", "where": condition}, f"{spec.name}: branch")
    members = ws.members_among(segment, sorted({w.profile_id for w in here}))
    return {w.id for w in here if w.profile_id in members}


def _message_ids(ws: Workspace, journey: str, step: str, here: list[Walker]) -> dict[int, set[str]]:
    """entry id -> the ids of the messages the send step queued for it."""
    from nudgekit.store.state import OutboxMessage

    keys = {"/".join((journey, step, w.profile_id, str(w.id))): w.id for w in here}
    out: dict[int, set[str]] = defaultdict(set)
    with ws.sessions() as session:
        for chunk in in_batches(sorted(keys)):
            wanted = [f"{k}{suffix}" for k in chunk for suffix in ("", "#2", "#3")]
            for key, message_id in session.execute(select(OutboxMessage.key, OutboxMessage.message_id).where(
                    OutboxMessage.key.in_(wanted))):
                base = key.split("#")[0]
                if base in keys:
                    out[keys[base]].add(message_id)
    return out


def _events_since(ws: Workspace, names: list[str], since: dict[str, datetime]) -> dict[str, list[datetime]]:
    """person -> the times they did any of these events, from the earliest time asked."""
    if not since:
        return {}
    ws.flush()
    found = ws.events.query(
        "SELECT person_id, timestamp FROM events_resolved WHERE event IN (SELECT UNNEST(?::VARCHAR[])) "
        "AND timestamp >= ? AND person_id IN (SELECT UNNEST(?::VARCHAR[]))",
        [names, min(since.values()), sorted(since)])
    out: dict[str, list[datetime]] = defaultdict(list)
    for f in found:
        out[f["person_id"]].append(f["timestamp"])
    return out


# -- the tick: transitions, segments, dates, timers ------------------------------------------------


def tick(ws: Workspace) -> dict[str, Any]:
    """What the scheduler does for journeys: read lifecycle transitions, segment entries and dated entries
    into the journeys that start on them, then walk everyone due."""
    entered: dict[str, dict[str, Any]] = {}
    with ws.sessions() as session:
        lives = [j for j in live_journeys(session) if j.state == CampaignState.LIVE.value]
    for live in lives:
        kind = live.spec.entry.kind
        done = None
        if kind == "stage":
            done = _from_transitions(ws, live)
        elif kind == "segment" and (live.next_run_at is None or live.next_run_at <= ws.clock()):
            done = _from_segment(ws, live)
        elif kind == "date":
            done = _from_dates(ws, live)
        if done is not None and (done.entered or done.skipped):
            entered[live.name] = done.as_dict()
    walked = advance(ws)
    return {"entered": entered, "steps": dict(walked)}


def _set_cursor(ws: Workspace, name: str, cursor: str | None, next_run_at: datetime | None = None) -> None:
    with ws.sessions.begin() as session:
        values: dict[str, Any] = {"cursor": cursor}
        if next_run_at is not None:
            values["next_run_at"] = next_run_at
        session.execute(update(Campaign).where(Campaign.name == name).values(**values))


def _from_transitions(ws: Workspace, live: Live) -> Entered:
    entry = live.spec.entry
    after = int(live.cursor or 0)
    with ws.sessions() as session:
        rows = session.execute(select(LifecycleTransition.id, LifecycleTransition.profile_id,
                                      LifecycleTransition.from_stage, LifecycleTransition.to_stage,
                                      LifecycleTransition.at).where(LifecycleTransition.id > after)
                               .order_by(LifecycleTransition.id).limit(50_000)).all()
    if not rows:
        return Entered()
    to = {s.value for s in entry.stage or []}
    since = {s.value for s in entry.from_stage} if entry.from_stage else None
    wanted = [Entering(p, f"stage:{i}", {"event": "stage_changed", "properties": {"from": f, "to": t},
                                         "timestamp": at.isoformat()})
              for i, p, f, t, at in rows if t in to and (since is None or f in since)]
    done = enter(ws, live, wanted) if wanted else Entered()
    _set_cursor(ws, live.name, str(rows[-1][0]))
    return done


def start_cursor(ws: Workspace, spec: JourneySpec) -> str | None:
    """Where a journey going live starts reading: transitions from now on; dated entries from today."""
    if spec.entry.kind == "stage":
        with ws.sessions() as session:
            return str(session.scalar(select(func.max(LifecycleTransition.id))) or 0)
    return None


def _segment_members(ws: Workspace, spec: JourneySpec) -> set[str]:
    from nudgekit.segments import model as segments

    segment = spec.entry.segment
    assert isinstance(segment, dict)
    parsed = segments.parse({"name": spec.name, "where": segment["where"]}, f"{spec.name}: entry.segment")
    return {str(p) for p in ws.segment_members(parsed).column("person_id").to_pylist()}


def _from_segment(ws: Workspace, live: Live) -> Entered:
    """Everyone who joined the segment since the last check enters; the members are remembered."""
    now = ws.clock()
    members = _segment_members(ws, live.spec)
    first = live.cursor is None
    with ws.sessions() as session:
        before = set(session.scalars(select(JourneyMember.profile_id).where(JourneyMember.journey == live.name)))
    joined, left = sorted(members - before), sorted(before - members)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    done = Entered()
    if joined and (not first or live.spec.entry.existing):
        done = enter(ws, live, [Entering(p, f"segment:{stamp}:{p}", {"event": "segment_entered", "properties": {}})
                                for p in joined])
    with ws.sessions.begin() as session:
        for chunk in in_batches(left):
            session.execute(delete(JourneyMember).where(JourneyMember.journey == live.name,
                                                        JourneyMember.profile_id.in_(chunk)))
        for chunk in in_batches(joined):
            session.execute(insert(JourneyMember), [{"journey": live.name, "profile_id": p} for p in chunk])
    _set_cursor(ws, live.name, stamp, now + journeys.duration(live.spec.entry.every))
    return done


def _from_dates(ws: Workspace, live: Live) -> Entered:
    """Once a day (the workspace's day): the people whose date is today enter, each due at `at` in their
    own zone."""
    today = ws.today()
    if live.cursor is not None and live.cursor >= today.isoformat():
        return Entered()
    wanted = _dated(ws, live.spec, today)
    done = enter(ws, live, wanted) if wanted else Entered()
    _set_cursor(ws, live.name, today.isoformat())
    return done


def _dated(ws: Workspace, spec: JourneySpec, today: date) -> list[Entering]:
    dated = spec.entry.date
    assert dated is not None
    zone = ws.settings.zone
    found: list[tuple[str, str]] = []
    if dated.trait is not None:
        from nudgekit.segments.people import Needs, trait_date_column
        from nudgekit.segments.people import people as people_table

        table, _ = people_table(ws.engine, Needs(date_traits={dated.trait}), ws.settings.timezone)
        for person, moment in zip(table.column("person_id").to_pylist(),
                                  table.column(trait_date_column(dated.trait)).to_pylist(), strict=True):
            if moment is None:
                continue
            day = moment.astimezone(zone).date() + timedelta(days=dated.days)
            hit = (day.month, day.day) == (today.month, today.day) if dated.yearly else day == today
            if hit:
                found.append((person, f"{dated.trait}:{day.isoformat()}"))
    else:
        day = today - timedelta(days=dated.days)
        start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
        ws.flush()
        rows = ws.events.query(
            "SELECT person_id, event_id, properties FROM events_resolved WHERE event = ? AND timestamp >= ? "
            "AND timestamp < ? ORDER BY timestamp", [dated.event, start, start + timedelta(days=1)])
        for r in rows:
            if journeys.matches(dated.where, properties_of(r["properties"])):
                found.append((r["person_id"], f"{dated.event}:{r['event_id']}"))
    at = journeys.clock_time(dated.at, "date.at")
    with ws.sessions() as session:
        persons = people.load_many(session, ws.settings, [p for p, _ in found])
    out = []
    for person, what in found:
        if person not in persons:
            continue
        local = datetime.combine(today, at, tzinfo=persons[person].zone)
        out.append(Entering(person, f"date:{today.isoformat()}:{what}",
                            {"event": "date_reached", "properties": {"date": today.isoformat()}}, local))
    return out


# -- going live, stopping --------------------------------------------------------------------------


def went_live(ws: Workspace, spec: JourneySpec) -> dict[str, Any]:
    """A journey just applied: a segment-entry one takes its first look now (its existing members enter with
    `existing: true`); then whoever is due walks."""
    with ws.sessions() as session:
        live = next((j for j in live_journeys(session) if j.name == spec.name), None)
    if live is None:
        return {}
    done = None
    if spec.entry.kind == "segment" and live.cursor is None:
        done = _from_segment(ws, live)
    elif spec.entry.kind == "date":
        done = _from_dates(ws, live)
    walked = advance(ws)
    return {"entered": done.as_dict() if done else None, "steps": dict(walked)}


def cancel(ws: Workspace, name: str) -> int:
    """A cancelled journey: everyone still in it leaves. Returns how many."""
    now = ws.clock()
    with ws.sessions.begin() as session:
        return session.execute(update(JourneyEntry).where(
            JourneyEntry.journey == name, JourneyEntry.state == JourneyState.ACTIVE.value).values(
            state=JourneyState.EXITED.value, exit_reason="journey_cancelled", due_at=None, updated_at=now)).rowcount


def standing(ws: Workspace, name: str) -> dict[str, Any]:
    """Where the people of a journey are: per version and step, waiting or not; finished and exited with why."""
    with ws.sessions() as session:
        rows = session.execute(select(JourneyEntry.version, JourneyEntry.state, JourneyEntry.step,
                                      JourneyEntry.waiting, JourneyEntry.exit_reason, func.count())
                               .where(JourneyEntry.journey == name)
                               .group_by(JourneyEntry.version, JourneyEntry.state, JourneyEntry.step,
                                         JourneyEntry.waiting, JourneyEntry.exit_reason)).all()
    out: dict[str, Any] = {"in_flight": 0, "finished": 0, "exited": {}, "steps": {}, "versions": {}}
    for version, state, step, waiting, reason, count in rows:
        out["versions"][str(version)] = out["versions"].get(str(version), 0) + (count if state == "active" else 0)
        if state == JourneyState.ACTIVE.value:
            out["in_flight"] += count
            key = f"{step} ({'waiting' if waiting else 'due'})"
            out["steps"][key] = out["steps"].get(key, 0) + count
        elif state == JourneyState.FINISHED.value:
            out["finished"] += count
        else:
            out["exited"][reason or "exited"] = out["exited"].get(reason or "exited", 0) + count
    out["versions"] = {v: n for v, n in out["versions"].items() if n}
    return out


def entries_of(ws: Workspace, name: str, profile_id: str) -> list[dict[str, Any]]:
    with ws.sessions() as session:
        rows = session.scalars(select(JourneyEntry).where(JourneyEntry.journey == name,
                                                          JourneyEntry.profile_id == profile_id)
                               .order_by(JourneyEntry.id)).all()
        return [{"id": r.id, "version": r.version, "state": r.state, "step": r.step, "waiting": r.waiting,
                 "waiting_for": r.waiting_for, "due_at": r.due_at.astimezone(UTC).isoformat() if r.due_at else None,
                 "entered_at": r.entered_at.astimezone(UTC).isoformat(), "path": r.path,
                 "exit_reason": r.exit_reason} for r in rows]

