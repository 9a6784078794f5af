"""Putting messages in the outbox: each passes the policy chain's QUEUE gate (frequency-cap slots and budget
held, skips and deferrals written as rows with their reason) and becomes one row under its idempotency key —
a batch at a time, in one transaction, so a row exists exactly when its claims do. A key already in the
outbox adds nothing and claims nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import insert

from nudgekit import tracking
from nudgekit.delivery import outbox
from nudgekit.delivery.outbox import Planned
from nudgekit.policy import chain, ledger, people
from nudgekit.policy.decision import OPTIONS, purpose_for
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import TrackedLink
from nudgekit.templates import coupons
from nudgekit.templates.render import Unrendered
from nudgekit.vocabulary import Action, MessageChannel, MessagePurpose, OutboxState, PolicyStage

if TYPE_CHECKING:
    from nudgekit.templates.store import Prepared
    from nudgekit.workspace import Workspace

BATCH = 500
IN_DOUBT = ("hold", "resend")


class _Taken(Exception):
    """Another planner added the same key meanwhile: this transaction's claims are rolled back."""


@dataclass
class Queued:
    """What planning did: rows added by what the chain said, and keys already in the outbox."""

    campaign: str | None
    queued: int = 0
    deferred: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    existing: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "queued": self.queued, "deferred": self.deferred,
                "skipped": dict(self.skipped), "existing": self.existing,
                "added": self.queued + self.deferred + sum(self.skipped.values())}


@dataclass(frozen=True)
class Request:
    """One message wanted: its key, channel, fields and the policy options of its campaign."""

    key: str
    channel: MessageChannel
    fields: dict[str, Any]
    options: dict[str, Any]
    campaign: str | None = None
    to: str | None = None
    in_doubt: str | None = None
    due_at: datetime | None = None
    template: Prepared | None = None
    """Set when the fields are rendered for each person (a saved template, or fields with tags)."""
    event: Mapping[str, Any] | None = None
    """What a template reads as `event`: the event that triggered the message."""
    variant: str | None = None
    """The campaign's A/B variant the person is in."""
    held_out: bool = False
    """The person is in the campaign's own control group: a row skipped as `campaign_control`, no gate."""


class Tally(Protocol):
    """Sees every row planning adds, with the price the chain put on it (nothing for a row that was not
    judged): campaigns/ sums these into what a plan shows."""

    def add(self, row: Planned, cost_krw: float, written: dict[str, Any] | None = None) -> None:
        """`written`: the fields before their links went through click tracking (preflight checks those)."""


def split(options_and_fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The message's fields and the campaign options (policy.decision.OPTIONS) given together."""
    fields = {k: v for k, v in options_and_fields.items() if k not in OPTIONS and v is not None}
    options = {k: v for k, v in options_and_fields.items() if k in OPTIONS and v is not None}
    if "goods" in options:
        options["goods"] = list(options["goods"])
    return fields, options


def check_in_doubt(value: str | None) -> str | None:
    if value is not None and value not in IN_DOUBT:
        raise FieldError("in_doubt", "say hold (never send again: advertising) or resend (informational)")
    return value


def plan(ws: Workspace, requests: Iterable[tuple[Request, str | None]], *, campaign: str | None = None,
         progress: Callable[[int], None] | None = None, tally: Tally | None = None) -> Queued:
    """Put (request, profile id) pairs in the outbox; a profile id of None is a user the workspace does not
    know (a row skipped as `no_person`, so the exclusion is on record). A request due later (`due_at`) is
    judged as of that moment — the night rule and caps as they will stand when it goes — so requests due at
    different moments go in different batches."""
    result = Queued(campaign)
    if ws.settings.public_url:
        ws._link_key()  # made (once per workspace) before any batch's transaction holds the database
    batch: list[tuple[Request, str | None]] = []
    for item in requests:
        if batch and item[0].due_at != batch[0][0].due_at:
            _plan_batch(ws, batch, result, progress, tally)
            batch = []
        batch.append(item)
        if len(batch) >= BATCH:
            _plan_batch(ws, batch, result, progress, tally)
            batch = []
    if batch:
        _plan_batch(ws, batch, result, progress, tally)
    return result


def _plan_batch(ws: Workspace, batch: list[tuple[Request, str | None]], result: Queued,
                progress: Callable[[int], None] | None, tally: Tally | None) -> None:
    """One transaction for the batch: its people locked, keys already in the outbox left alone, the rest
    through the QUEUE gate together and added in one statement. Another planner that added some of the same
    keys meanwhile rolls the whole batch back; it is planned again and those keys count as existing."""
    for _ in range(5):
        try:
            with ws.sessions.begin() as session:
                counted = _plan_in(ws, session, batch, tally)
            break
        except _Taken:
            continue
    else:
        raise RuntimeError("other planners keep adding the same messages; try again")
    result.existing += counted.existing
    result.queued += counted.queued
    result.deferred += counted.deferred
    result.skipped.update(counted.skipped)
    if progress is not None:
        progress(len(batch))


def _plan_in(ws: Workspace, session: Any, batch: list[tuple[Request, str | None]], tally: Tally | None) -> Queued:
    created = ws.clock()
    now = max(created, batch[0][0].due_at or created)
    counted = Queued(None)
    if not ws.dry:  # a dry run (campaigns/dry.py) is rolled back whole: it holds no locks on people
        ledger.lock(session, [p for _, p in batch if p])  # first: nothing is read before the people are locked
    have = outbox.existing(session, [outbox.message_id_for(r.key) for r, _ in batch])
    state = ws._policy_state(session, PolicyStage.QUEUE)
    fresh: dict[str, tuple[Request, str | None]] = {}
    for request, profile_id in batch:
        message_id = outbox.message_id_for(request.key)
        if message_id in have or message_id in fresh:
            counted.existing += 1
            continue
        fresh[message_id] = (request, profile_id)
    planned = [_row(request, profile_id, request.fields, request.channel, OutboxState.SKIPPED, now, "campaign_control",
                    "in this campaign's control group: kept from its message to measure what it changed")
               for request, profile_id in fresh.values() if request.held_out]
    fresh = {m: (r, p) for m, (r, p) in fresh.items() if not r.held_out}
    persons = people.load_many(session, ws.settings, [p for _, p in fresh.values() if p])
    personal = ws._personals(session, {m: (r.template, persons[p], r.event) for m, (r, p) in fresh.items()
                                       if r.template is not None and p in persons}, take=True)
    wanted: dict[str, tuple[Request, str | None, Any, dict[str, Any]]] = {}
    costs: dict[str, float] = {}
    tracked: dict[str, list[tuple[str, int, str | None]]] = {}
    written: dict[str, dict[str, Any]] = {}
    key = tracking.secret(ws._link_key()) if ws.settings.public_url else b""
    for message_id, (request, profile_id) in fresh.items():
        fields = request.fields
        if request.template is not None:
            done = personal.get(message_id)
            if done is None or isinstance(done.result, Unrendered):
                reason, detail = ("no_person", "no such user or anonymous id in this workspace") if done is None \
                    else (done.result.reason, done.result.said)  # type: ignore[union-attr]
                planned.append(_row(request, profile_id, fields, request.channel, OutboxState.SKIPPED, now, reason,
                                    detail))
                continue
            fields = done.result.fields
        fields = ws._linked(request.channel, fields, request.campaign, request.template)
        if key:  # before the chain measures the text: a tracked link is usually the shorter
            done = tracking.track(request.channel, fields, message_id, key, ws.settings)
            if done.links:
                tracked[message_id], written[message_id] = done.links, fields
            fields = done.fields
        try:
            candidate = _candidate(ws, state, request, message_id, fields)
        except FieldError as exc:
            if request.template is None:
                raise
            planned.append(_row(request, profile_id, fields, request.channel, OutboxState.SKIPPED, now,
                                "template_error", f"{exc.field} as rendered: {exc.reason}"))
            continue
        wanted[message_id] = (request, profile_id, candidate, fields)
    judged = [(c, persons[p]) for _, p, c, _ in wanted.values() if p in persons]
    rulings = {r.candidate.message_id: r for r in chain.gate_many(judged, now, state, locked=True)}
    for message_id, (request, profile_id, candidate, fields) in wanted.items():
        purpose = candidate.purpose
        ruling = rulings.get(message_id)
        if ruling is None:
            planned.append(_row(request, profile_id, fields, purpose, OutboxState.SKIPPED, now, "no_person",
                                "no such user or anonymous id in this workspace"))
            continue
        words = next((d.en for d in ruling.decisions if d.reason == ruling.reason), None)
        costs[message_id] = ruling.candidate.checked.cost_krw
        if ruling.action == Action.SEND:
            planned.append(_row(request, profile_id, fields, purpose, OutboxState.QUEUED, request.due_at or now))
        elif ruling.action == Action.DEFER:
            assert ruling.until is not None
            planned.append(_row(request, profile_id, fields, purpose, OutboxState.DEFERRED,
                                max(ruling.until, request.due_at or now), ruling.reason, words))
        else:
            planned.append(_row(request, profile_id, fields, purpose, OutboxState.SKIPPED, now, ruling.reason, words))
    if len(outbox.add_many(session, planned, created)) != len(planned):
        raise _Taken()
    links = [{"token": token, "message_id": row.message_id, "position": position, "url": url, "created_at": created}
             for row in planned if row.state != OutboxState.SKIPPED
             for token, position, url in tracked.get(row.message_id, ())]
    if links:
        session.execute(insert(TrackedLink), links)
    coupons.release(session, [row.message_id for row in planned if row.state == OutboxState.SKIPPED
                              and (done := personal.get(row.message_id)) is not None and done.coupons])
    for row in planned:
        if tally is not None:
            tally.add(row, costs.get(row.message_id, 0.0), written.get(row.message_id))
        if row.state == OutboxState.QUEUED:
            counted.queued += 1
        elif row.state == OutboxState.DEFERRED:
            counted.deferred += 1
        else:
            counted.skipped[row.reason or "skipped"] += 1
    return counted


def _candidate(ws: Workspace, state: Any, request: Request, message_id: str, fields: dict[str, Any]) -> Any:
    return ws._candidate(state, request.channel, fields, {
        **request.options, "message_id": message_id, "campaign": request.campaign, "to": request.to})


def _row(request: Request, profile_id: str | None, fields: dict[str, Any], purpose: MessagePurpose | MessageChannel,
         state: OutboxState, due_at: datetime, reason: str | None = None, detail: str | None = None) -> Planned:
    """The outbox row for a request; `purpose` is the message's, or for a message that could not be made,
    its channel (whose purpose is then what the fields as written say)."""
    if isinstance(purpose, MessageChannel):
        written = next(iter(request.template.variants.values())) if request.template else request.fields
        purpose = purpose_for(purpose, written.get("ad") is True)
    in_doubt = request.in_doubt or ("hold" if purpose == MessagePurpose.ADVERTISING else "resend")
    return Planned(key=request.key, channel=request.channel.value, purpose=purpose.value, fields=fields,
                   options=request.options, profile_id=profile_id, campaign=request.campaign, to=request.to,
                   in_doubt=in_doubt, state=state, due_at=due_at, reason=reason, detail=detail,
                   template=request.template.label if request.template else None,
                   source=source(request), variant=request.variant)


def source(request: Request) -> dict[str, Any] | None:
    """What a rendered message was asked as, kept on its row (None for a message the same for everyone)."""
    if request.template is None:
        return None
    asked = {"template": request.template.name} if request.template.name else {"fields": request.fields}
    return {**asked, "event": request.event}

