"""A journey as written in a file: who enters and when, the steps each person walks through, and the rules
for entering again — checked field by field, so a mistake names its place and says what to write.

    kind: journey
    name: cart_abandoned
    purpose: advertising
    entry: {event: added_to_cart}              # or stage, segment, api, date (docs/journeys.md)
    reentry: {allow: after, days: 1, while_in: restart}
    exit: {events: [order_completed]}         # and the goal ends it too
    goal: {events: [order_completed], window_days: 3}
    steps:
      - wait: 1h
      - id: push
        send: {channels: [push], messages: {push: {title: ..., text: ...}}}
      - wait: {days: 1, until: "10:00"}      # 10:00 tomorrow in each person's zone
      - id: ordered
        branch: {if: {performed: order_completed}, then: end}
      - send: {channels: [brand_message, sms], messages: {...}}

Steps run in order; `next` on any step, `then` / `else` on a branch, a split's arms and a wait's `timeout`
go elsewhere by step id (or `end`).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nudgekit.campaigns.spec import Audience, Messages, Sending, SpecError, check_messages, validated
from nudgekit.segments import model as segments
from nudgekit.vocabulary import MessageChannel, Stage

END = "end"
STEP_ID = r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$"
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m)")
UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
MAX_WAIT = timedelta(days=400)
JOURNEY_CONDITIONS = ("performed", "opened", "clicked")


def duration(text: Any, where: str = "wait") -> timedelta:
    """'90m', '1h', '2d', '1d12h', '1w' -> a timedelta."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        raise ValueError(f"{where}: write the unit too, like {text}h, {text}d or {text}m")
    if not isinstance(text, str):
        raise ValueError(f"{where}: a duration like 30m, 1h, 2d or 1w")
    compact = text.replace(" ", "").lower()
    parts = DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{where}: {text!r} is not a duration; write it like 30m, 1h, 2d, 1d12h or 1w")
    total = sum((float(n) * UNITS[u] for n, u in parts), timedelta())
    if total <= timedelta() or total > MAX_WAIT:
        raise ValueError(f"{where}: {text!r}: a duration above zero and at most 400 days")
    return total


def clock_time(text: Any, where: str) -> time:
    if not isinstance(text, str) or not re.fullmatch(r"\d{1,2}:\d{2}", text.strip()):
        raise ValueError(f"{where}: a time of day like \"10:00\" (quote it in YAML)")
    hour, minute = (int(x) for x in text.strip().split(":"))
    if hour > 23 or minute > 59:
        raise ValueError(f"{where}: {text!r} is not a time of day")
    return time(hour, minute)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DateEntry(Strict):
    """A day relative to a date trait or an event: `{event: order_completed, where: [...], days: 30}` is 30
    days after each such order; `{trait: birthday, yearly: true}` every year on that day."""

    trait: str | None = Field(None, min_length=1, max_length=255)
    event: str | None = Field(None, min_length=1, max_length=255)
    where: list[segments.PropertyFilter] = Field(default_factory=list)
    days: int = Field(0, ge=-400, le=400)
    at: str = "10:00"
    """The time of day, in each person's zone, they enter on that day."""
    yearly: bool = False

    @model_validator(mode="after")
    def _one(self) -> DateEntry:
        if (self.trait is None) == (self.event is None):
            raise ValueError("date: give trait (a date trait) or event, one of them")
        if self.where and self.event is None:
            raise ValueError("date.where filters the event's properties: give event")
        if self.event is not None and self.days < 0:
            raise ValueError("date.days: after an event, a day on or after it (0 or more)")
        if self.yearly and self.trait is None:
            raise ValueError("date.yearly: for a trait like a birthday")
        clock_time(self.at, "date.at")
        return self


class Entry(Strict):
    """What puts a person in the journey: exactly one of event, stage, segment, api, date."""

    event: str | None = Field(None, min_length=1, max_length=255)
    where: list[segments.PropertyFilter] = Field(default_factory=list)
    """For an event: its properties must pass every filter."""
    max_age: str = "24h"
    """For an event: one that happened longer ago than this when it arrives (a phone sending last week's
    events) starts nothing."""
    stage: list[Stage] | None = None
    """A lifecycle transition into one of these stages."""
    from_stage: list[Stage] | None = Field(None, alias="from")
    segment: str | dict[str, Any] | None = None
    """Joining the segment (checked every `every`); with `existing: true` its members when it goes live too."""
    existing: bool = False
    every: str = "15m"
    api: bool = False
    """Entered by a call: POST /api/v1/journeys/NAME/entries or Workspace.enter_journey."""
    date: DateEntry | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one(self) -> Entry:
        given = [k for k, v in (("event", self.event), ("stage", self.stage), ("segment", self.segment),
                                ("api", self.api or None), ("date", self.date)) if v]
        if len(given) != 1:
            raise ValueError("say what starts it with exactly one of: event, stage, segment, api, date"
                             + (f" (this says {', '.join(given)})" if given else ""))
        if self.where and self.event is None:
            raise ValueError("where filters the entry event's properties: give event")
        if self.from_stage is not None and self.stage is None:
            raise ValueError("from goes with stage (a lifecycle transition)")
        duration(self.max_age, "entry.max_age")
        duration(self.every, "entry.every")
        if self.existing and self.segment is None:
            raise ValueError("existing goes with segment (its members when the journey goes live)")
        return self

    @property
    def kind(self) -> str:
        return ("event" if self.event else "stage" if self.stage else "segment" if self.segment is not None
                else "api" if self.api else "date")


class Reentry(Strict):
    """May a person enter again: `once` ever, `always`, or `after` `days`; and what a new trigger does while
    they are still in it: `ignore` it or `restart` (leave, and enter again from the first step)."""

    allow: Literal["once", "always", "after"] = "once"
    days: float | None = Field(None, gt=0, le=3650)
    while_in: Literal["ignore", "restart"] = "ignore"

    @model_validator(mode="before")
    @classmethod
    def _word(cls, value: Any) -> Any:
        return {"allow": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _days(self) -> Reentry:
        if (self.allow == "after") != (self.days is not None):
            raise ValueError("allow: after takes days (enter again once this many days have passed since the "
                             "last entry); once and always take none")
        if self.allow == "once" and self.while_in == "restart":
            raise ValueError("while_in: restart enters them again, which allow: once forbids")
        return self

    def said(self) -> str:
        if self.allow == "after":
            first = f"A person enters again once {self.days:g} days have passed since they last entered."
        else:
            first = {"once": "Each person enters at most once, ever.",
                     "always": "A person enters every time it is triggered."}[self.allow]
        second = (" A trigger while they are still in it is ignored." if self.while_in == "ignore" else
                  " A trigger while they are still in it takes them out and starts them again at the first step.")
        return first + second


class Exit(Strict):
    events: list[str] = Field(default_factory=list)
    """Any of these events takes the person out of the journey at once."""
    on_goal: bool = True
    """Reaching the goal (its first event) takes them out too."""


class Wait(Strict):
    """`for` a duration, then `until` the next time of day in the person's zone; or until an `event` comes,
    at most `timeout`."""

    for_: str | None = Field(None, alias="for")
    until: str | None = None
    days: int | None = Field(None, ge=1, le=400)
    """With until: that time of day this many calendar days on (days: 1, until: "10:00" is tomorrow 10:00)."""
    event: str | None = Field(None, min_length=1, max_length=255)
    timeout: str | None = None
    on_timeout: str | None = None
    """Where to go when the event did not come in time (default: the step below); when it comes, the
    step's `next`."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"for": value} if isinstance(value, str | int | float) else value

    @model_validator(mode="after")
    def _shape(self) -> Wait:
        if self.event is not None:
            if self.timeout is None:
                raise ValueError("wait for an event: say the longest it waits (timeout: 3d)")
            if self.for_ is not None or self.until is not None:
                raise ValueError("wait for an event takes timeout, not for or until")
            duration(self.timeout, "wait.timeout")
        else:
            if self.for_ is None and self.until is None:
                raise ValueError("wait: a duration (1h, 2d), until a time of day (\"10:00\"), or an event")
            if self.timeout is not None or self.on_timeout is not None:
                raise ValueError("wait.timeout and wait.on_timeout go with wait.event")
            if self.days is not None and (self.until is None or self.for_ is not None):
                raise ValueError("wait.days goes with until (days: 1, until: \"10:00\" is tomorrow at 10:00), "
                                 "not with for")
            if self.for_ is not None:
                duration(self.for_, "wait.for")
            if self.until is not None:
                clock_time(self.until, "wait.until")
        return self

    def due(self, start: datetime, zone: ZoneInfo) -> datetime:
        """When a wait that began at `start` is over (for an event: its timeout)."""
        if self.event is not None:
            assert self.timeout is not None
            return start + duration(self.timeout)
        at = start + (duration(self.for_) if self.for_ else timedelta())
        if self.until is None:
            return at
        wanted = clock_time(self.until, "wait.until")
        local = at.astimezone(zone)
        if self.days is not None:
            day = local.date() + timedelta(days=self.days)
            return datetime.combine(day, wanted, tzinfo=zone).astimezone(start.tzinfo)
        target = datetime.combine(local.date(), wanted, tzinfo=zone)
        if target < local:
            target = datetime.combine(local.date() + timedelta(days=1), wanted, tzinfo=zone)
        return target.astimezone(start.tzinfo)

    def said(self) -> str:
        if self.event is not None:
            return f"wait for {self.event} (at most {self.timeout})"
        parts = [f"wait {self.for_}"] if self.for_ else ["wait"]
        if self.until and self.days:
            parts.append(f"until {self.until} in their zone, {self.days} day{'s' if self.days > 1 else ''} on")
        elif self.until:
            parts.append(f"until the next {self.until} in their zone")
        return " ".join(parts)


class Send(Strict):
    channels: list[MessageChannel] | None = None
    messages: Messages

    @property
    def order(self) -> list[MessageChannel]:
        return self.channels or list(self.messages)


class Branch(Strict):
    if_: dict[str, Any] = Field(alias="if")
    then: str | None = None
    else_: str | None = Field(None, alias="else")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("if_")
    @classmethod
    def _condition(cls, value: dict[str, Any]) -> dict[str, Any]:
        journey = [k for k in JOURNEY_CONDITIONS if k in value]
        if journey:
            if len(journey) > 1:
                raise ValueError(f"if: one of {', '.join(journey)} at a time")
            key = journey[0]
            extra = set(value) - {key, "since", "within"}
            if extra:
                raise ValueError(f"if.{key}: takes {'since or within' if key == 'performed' else 'nothing else'}; "
                                 f"remove {', '.join(sorted(extra))}")
            if not isinstance(value[key], str) or not value[key]:
                raise ValueError(f"if.{key}: " + ("an event name" if key == "performed" else "a send step's id"))
            if "within" in value:
                duration(value["within"], "if.within")
            if value.get("since", "entry") != "entry":
                raise ValueError("if.since: entry (since they entered) is the only one; or give within: 7d")
            return value
        try:
            segments.parse({"name": "branch", "where": value}, "if")
        except segments.SegmentError as exc:
            raise ValueError(str(exc)) from None
        return value


class Arm(Strict):
    percent: float = Field(gt=0, le=100)
    next: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


class Step(Strict):
    id: str | None = Field(None, pattern=STEP_ID)
    send: Send | None = None
    wait: Wait | None = None
    branch: Branch | None = None
    split: list[Arm] | None = None
    end: bool = False
    next: str | None = None
    """Where to go after this step (default: the step below)."""

    @model_validator(mode="after")
    def _one(self) -> Step:
        given = [k for k in ("send", "wait", "branch", "split") if getattr(self, k) is not None] + (
            ["end"] if self.end else [])
        if len(given) != 1:
            raise ValueError("a step does one thing: send, wait, branch, split or end" +
                             (f" (this one says {', '.join(given)})" if given else ""))
        if self.split is not None:
            total = sum(a.percent for a in self.split)
            if abs(total - 100) > 1e-6:
                raise ValueError(f"split: the arms add up to {total:g}%, not 100")
            if self.next is not None:
                raise ValueError("split: each arm says its next step; remove next")
        if self.branch is not None and self.next is not None:
            raise ValueError("branch: say then and else; remove next")
        if self.end and self.next is not None:
            raise ValueError("end: the journey ends here; remove next")
        return self

    @property
    def action(self) -> str:
        return next(k for k in ("send", "wait", "branch", "split", "end") if getattr(self, k))


class JourneySpec(Sending):
    kind: Literal["journey"] = "journey"
    entry: Entry
    audience: Audience | None = None
    """Only people in this segment and/or stages enter (checked when they would)."""
    reentry: Reentry = Field(default_factory=Reentry)
    exit: Exit = Field(default_factory=Exit)
    steps: list[Step] = Field(min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _ids(cls, data: Any) -> Any:
        """Steps without an id are step1, step2 ... by place."""
        if isinstance(data, dict) and isinstance(data.get("steps"), list):
            data = {**data, "steps": [{**s, "id": s.get("id") or f"step{i + 1}"} if isinstance(s, dict) else s
                                      for i, s in enumerate(data["steps"])]}
        return data

    @model_validator(mode="after")
    def _graph(self) -> JourneySpec:
        ids = [s.id for s in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError(f"steps: each id once ({', '.join(sorted({i for i in ids if ids.count(i) > 1}))})")
        known = set(ids) | {END}
        for step in self.steps:
            for label, target in self.targets(step):
                if target not in known:
                    raise ValueError(f"steps.{step.id}.{label}: no step called {target!r} (say a step's id, or end)")
            if step.send is not None:
                check_messages(f"steps.{step.id}.send.messages", step.send.order, step.send.messages, self.purpose,
                               self.sensitive)
        self._no_endless_loop()
        return self

    def _no_endless_loop(self) -> None:
        """A way back to an earlier step must pass a wait, or a person would go round for ever at once."""
        graph = {s.id: [t for _, t in self.targets(s) if t != END] for s in self.steps if s.wait is None}
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            if node not in graph:
                return
            if state.get(node) == 1:
                loop = path[path.index(node):] + [node]
                raise ValueError(f"steps: {' -> '.join(loop)} goes round without a wait; put a wait in it")
            if state.get(node) == 2:
                return
            state[node] = 1
            for target in graph[node]:
                visit(target, [*path, node])
            state[node] = 2

        for node in graph:
            visit(node, [])

    def targets(self, step: Step) -> list[tuple[str, str]]:
        """(label, step id) of every step this one can go to."""
        following = self.following(step)
        if step.end:
            return []
        if step.split is not None:
            return [(f"split.{i}.next", a.next) for i, a in enumerate(step.split)]
        if step.branch is not None:
            return [("branch.then", step.branch.then or following), ("branch.else", step.branch.else_ or following)]
        out = [("next", step.next or following)]
        if step.wait is not None and step.wait.event is not None:
            out.append(("wait.on_timeout", self.timeout_target(step)))
        return out

    def following(self, step: Step) -> str:
        at = self.steps.index(step)
        return self.steps[at + 1].id if at + 1 < len(self.steps) else END  # type: ignore[return-value]

    def timeout_target(self, step: Step) -> str:
        return (step.wait.on_timeout if step.wait is not None else None) or self.following(step)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def first(self) -> str:
        return self.steps[0].id  # type: ignore[return-value]

    @property
    def message_sets(self) -> list[tuple[str, Messages]]:
        return [(f"steps.{s.id}.send.messages", s.send.messages) for s in self.steps if s.send is not None]

    @property
    def channels(self) -> list[MessageChannel]:
        return list(dict.fromkeys(c for s in self.steps if s.send for c in s.send.order))

    def events_watched(self) -> set[str]:
        """Every event name that moves someone in it: entry, exit, goal, waits."""
        names = set(self.exit.events)
        if self.entry.event:
            names.add(self.entry.event)
        if self.goal is not None and self.exit.on_goal:
            names.add(self.goal.events[0])
        names.update(s.wait.event for s in self.steps if s.wait is not None and s.wait.event)
        return names

    def exits_on(self) -> dict[str, str]:
        """event name -> why it takes someone out."""
        out = {e: f"exit_event:{e}" for e in self.exit.events}
        if self.goal is not None and self.exit.on_goal:
            out.setdefault(self.goal.events[0], f"goal:{self.goal.events[0]}")
        return out


def parse(data: Any, source: str) -> JourneySpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a journey is a mapping (kind: journey, name, purpose, entry, steps, ...)")
    return validated(JourneySpec, data, source)


NEGATIVE = (segments.Op.NE, segments.Op.NOT_IN, segments.Op.NOT_EXISTS)


def matches(filters: list[segments.PropertyFilter], properties: dict[str, Any]) -> bool:
    """Do the event's properties pass every filter. `products[].sku` reads each item of the `products` list:
    eq, in, contains, lt … pass when any item does; ne, not_in, not_exists when every item does (an order
    without that product)."""
    return all(_item_passes(f, properties) if "[]." in f.property
               else _passes(f.op, properties.get(f.property), f.value, f.property in properties) for f in filters)


def _item_passes(f: segments.PropertyFilter, properties: dict[str, Any]) -> bool:
    listed, _, field_name = f.property.partition("[].")
    items = properties.get(listed)
    items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
    results = (_passes(f.op, i.get(field_name), f.value, field_name in i) for i in items)
    return all(results) if f.op in NEGATIVE else any(results)


def _passes(op: segments.Op, have: Any, want: Any, present: bool) -> bool:
    Op = segments.Op
    if op == Op.EXISTS:
        return present and have is not None
    if op == Op.NOT_EXISTS:
        return not present or have is None
    if have is None:
        return op in (Op.NE, Op.NOT_IN)
    try:
        if op == Op.EQ:
            return bool(have == want or str(have) == str(want))
        if op == Op.NE:
            return not (have == want or str(have) == str(want))
        if op == Op.IN:
            return have in want or str(have) in {str(w) for w in want}
        if op == Op.NOT_IN:
            return not (have in want or str(have) in {str(w) for w in want})
        if op == Op.CONTAINS:
            return str(want) in have if isinstance(have, list) else str(want) in str(have)
        if op == Op.LT:
            return bool(have < want)
        if op == Op.LTE:
            return bool(have <= want)
        if op == Op.GT:
            return bool(have > want)
        if op == Op.GTE:
            return bool(have >= want)
        if op == Op.BETWEEN:
            return bool(want[0] <= have <= want[1])
    except TypeError:
        return False
    return False
