"""Launching one run of a campaign: its audience read, each person given their place — the campaign's control
group, an A/B variant, the first channel of the campaign's order they can be reached on — and one message per
person put in the outbox through the policy chain (delivery/plan.py), with what happened tallied.

The same function makes a plan (on a dry copy, campaigns/dry.py) and an apply, so the two cannot disagree on
unchanged data. Places are hashes of the campaign's name and the person: the same on every run and every
machine, whoever else is in the audience.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nudgekit.campaigns.schedule import Run
from nudgekit.campaigns.spec import CampaignSpec, Sending
from nudgekit.channels.registry import CHANNELS
from nudgekit.delivery import outbox
from nudgekit.delivery import plan as planning
from nudgekit.delivery.outbox import Planned
from nudgekit.policy import control, people
from nudgekit.policy.decision import Person
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import CONSENT_CHANNEL, MessageChannel, MessagePurpose, OutboxState, Purpose

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

SAMPLES = 3


@dataclass
class Outcome:
    """What a run did (or, planned on a dry copy, would do): the numbers `nudge plan` shows."""

    audience: int = 0
    queued: int = 0
    deferred: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    existing: int = 0
    channels: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    variants: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    cost_krw: float = 0.0
    first_send: datetime | None = None
    last_send: datetime | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)
    """The first detail written for each skip or deferral reason."""
    purposes: Counter[str] = field(default_factory=Counter)
    rendered: list[dict[str, Any]] = field(default_factory=list)
    """The fields of the first messages that would go, up to `keep` per channel and variant, with their links
    as written rather than tracked (preflight reads their links)."""
    keep: int = 50
    short_krw: float = 0.0
    """What the messages skipped for budget or balance would have cost."""
    _seen: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    def add(self, row: Planned, cost_krw: float, written: dict[str, Any] | None = None) -> None:
        state = row.state
        if state == OutboxState.QUEUED:
            self.queued += 1
        elif state == OutboxState.DEFERRED:
            self.deferred[row.reason or "deferred"] += 1
        else:
            self.skipped[row.reason or "skipped"] += 1
            if row.reason in ("over_budget", "no_balance"):
                self.short_krw += cost_krw
        if row.reason is not None and row.reason not in self.examples and row.detail:
            self.examples[row.reason] = row.detail
        if row.reason != "campaign_control":
            self.purposes[row.purpose] += 1
        self.channels[row.channel][state.value] += 1
        if row.variant is not None:
            self.variants[row.variant]["control" if row.reason == "campaign_control" else state.value] += 1
        if state in (OutboxState.QUEUED, OutboxState.DEFERRED):
            self.cost_krw += cost_krw
            self.first_send = min(self.first_send or row.due_at, row.due_at)
            self.last_send = max(self.last_send or row.due_at, row.due_at)
            seen = self._seen[(row.channel, row.variant)]
            if seen < self.keep:
                self._seen[(row.channel, row.variant)] += 1
                self.rendered.append(written or row.fields)
                if seen < SAMPLES:
                    self.samples.append({"user": row.profile_id, "channel": row.channel, "variant": row.variant,
                                         "fields": row.fields})

    def plus(self, other: Outcome) -> Outcome:
        """Both parts together (a canary and the rest), for preflight."""
        both = Outcome(audience=self.audience + other.audience, queued=self.queued + other.queued,
                       deferred=self.deferred + other.deferred, skipped=self.skipped + other.skipped,
                       existing=self.existing + other.existing, cost_krw=self.cost_krw + other.cost_krw,
                       purposes=self.purposes + other.purposes, rendered=self.rendered + other.rendered,
                       short_krw=self.short_krw + other.short_krw, examples={**other.examples, **self.examples})
        return both

    def as_dict(self) -> dict[str, Any]:
        return {"audience": self.audience, "queued": self.queued, "deferred": dict(self.deferred),
                "skipped": dict(self.skipped), "existing": self.existing,
                "control": self.skipped.get("campaign_control", 0),
                "channels": {c: dict(n) for c, n in sorted(self.channels.items())},
                "variants": {v: dict(n) for v, n in sorted(self.variants.items())},
                "cost_krw": round(self.cost_krw, 2),
                "first_send": _iso(self.first_send), "last_send": _iso(self.last_send), "samples": self.samples,
                "examples": self.examples}


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def audience(ws: Workspace, spec: CampaignSpec) -> list[str]:
    """The people it is for, sorted (profile ids): the segment's members in the stages named."""
    segment = spec.audience.segment_of(spec.name)
    return sorted(str(p) for p in ws.segment_members(segment).column("person_id").to_pylist())


def reachable(channel: MessageChannel, person: Person, advertising: bool) -> bool:
    """Can the message go to them on this channel at all: an address there and, for an advertisement, the
    channel's advertising consent. The chain judges the rest (night, caps, suppression)."""
    if advertising and (consent := CONSENT_CHANNEL[channel]) is not None:
        state = person.consented(consent, Purpose.ADVERTISING)
        if state is None or not state.granted:
            return False
    if channel == MessageChannel.PUSH:
        return bool(person.tokens)
    if channel == MessageChannel.SMS:
        return bool(person.phone)
    if channel in (MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE):
        return bool(person.phone) and person.kakao_reachable is not False
    if channel == MessageChannel.EMAIL:
        return bool(person.email)
    return True


def choose(order: list[MessageChannel], person: Person | None, advertising: bool) -> MessageChannel:
    """The first channel in the campaign's order that can reach them; none can, or nobody known: the first
    (its row then says why it did not go)."""
    if person is None:
        return order[0]
    return next((c for c in order if reachable(c, person, advertising)), order[0])


def variant_of(spec: CampaignSpec, profile_id: str) -> str | None:
    if spec.variants is None:
        return None
    point = control.bucket(profile_id, f"{spec.name}\x00variant") / control.BUCKETS * 100
    total = 0.0
    for v in spec.variants:
        total += v.split
        if point < total:
            return v.name
    return spec.variants[-1].name


def held_out(spec: Sending, profile_id: str) -> bool:
    return control.held_out(profile_id, spec.control_percent, f"{spec.name}\x00control")


def in_canary(spec: CampaignSpec, profile_id: str) -> bool:
    return spec.canary is not None and control.held_out(profile_id, spec.canary.percent, f"{spec.name}\x00canary")


def _fields(purpose: MessagePurpose, channel: MessageChannel, written: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(fields, template options) for queueing: a saved template by name and version, or the fields with the
    campaign's purpose as their `ad` flag (on channels that have one)."""
    if "template" in written:
        return {}, {"from_template": written["template"], "template_version": written.get("template_version")}
    fields = dict(written)
    if "ad" in CHANNELS[channel].model.model_fields:
        fields["ad"] = purpose == MessagePurpose.ADVERTISING
    return fields, {"from_template": None, "template_version": None}


def prepare(ws: Workspace, spec: CampaignSpec) -> dict[tuple[str | None, MessageChannel], tuple[dict[str, Any], Any]]:
    """Each (variant, channel) message ready to queue: its fields and the template to render (or None)."""
    ready = {}
    for name, _, messages in spec.variant_messages:
        where = f"{'variants.' + name + '.' if name else ''}messages"
        for channel, made in prepare_messages(ws, spec.purpose, messages, where).items():
            ready[(name, channel)] = made
    return ready


def prepare_messages(ws: Workspace, purpose: MessagePurpose, messages: dict[MessageChannel, dict[str, Any]],
                     where: str) -> dict[MessageChannel, tuple[dict[str, Any], Any]]:
    """Each channel's message ready to queue: its fields and the template to render (or None); a fault
    raises FieldError naming its place (`where`.channel.field)."""
    from nudgekit.channels.registry import parse_message

    ready = {}
    with ws.sessions() as session:
        for channel, written in messages.items():
            fields, source = _fields(purpose, channel, written)
            try:
                prepared = ws._prepared(session, channel, fields, source["from_template"], source["template_version"])
                if prepared is None:
                    parse_message(channel, fields)
            except FieldError as exc:
                raise FieldError(f"{where}.{channel.value}.{exc.field}", exc.reason) from None
            ready[channel] = (fields, prepared)
    return ready


Progress = Callable[[str, int], Callable[[int], None]]
"""Given what is being done and how many people, returns what to call as each batch is done."""


def launch(ws: Workspace, spec: CampaignSpec, run: Run, *, part: str = "all", keep: int = 50,
           progress: Progress | None = None, label: str = "queueing") -> Outcome:
    """Queue the run's messages. `part`: all, canary (the canary share only) or rest (all but it)."""
    ready = prepare(ws, spec)
    everyone = audience(ws, spec)
    if part != "all":
        everyone = [p for p in everyone if in_canary(spec, p) == (part == "canary")]
    outcome = Outcome(audience=len(everyone), keep=keep)
    advance = progress(f"{label} {spec.name}", len(everyone)) if progress is not None else None
    options = spec.options()
    with ws.sessions.begin() as session:
        try:
            outbox.open_campaign(session, spec.name, spec.per_minute, ws.clock())
        except ValueError as exc:
            raise FieldError("campaign", str(exc)) from None

    def requests() -> Iterator[tuple[planning.Request, str | None]]:
        now = ws.clock()
        for start in range(0, len(everyone), planning.BATCH):
            chunk = everyone[start:start + planning.BATCH]
            with ws.sessions() as session:
                persons = people.load_many(session, ws.settings, chunk)
            made = []
            for profile_id in chunk:
                person = persons.get(profile_id)
                variant = variant_of(spec, profile_id)
                channel = choose(spec.order, person, spec.advertising)
                fields, prepared = ready[(variant, channel)]
                due = run.due_for(person.zone, now) if person is not None else None
                key = "/".join((spec.name, "-", profile_id, run.occurrence))
                made.append((planning.Request(key, channel, fields, options, spec.name, None, spec.in_doubt, due,
                                              prepared, None, variant, held_out(spec, profile_id)),
                             profile_id if person is not None else None))
            made.sort(key=lambda item: item[0].due_at or now)
            yield from made

    queued = planning.plan(ws, requests(), campaign=spec.name, progress=advance, tally=outcome)
    outcome.existing = queued.existing
    return outcome
