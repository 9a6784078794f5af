"""Putting messages in the outbox: each passes the policy chain's QUEUE gate (frequency-cap slots and budget
held, skips and deferrals written as rows with their reason) and becomes one row under its idempotency key —
in one transaction, so a row exists exactly when its claims do. A key already in the outbox adds nothing and
claims nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nudgekit.delivery import outbox
from nudgekit.delivery.outbox import Planned
from nudgekit.policy import chain, people
from nudgekit.policy.decision import OPTIONS
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import Action, MessageChannel, MessagePurpose, OutboxState, PolicyStage

if TYPE_CHECKING:
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
         progress: Callable[[int], None] | None = None) -> Queued:
    """Put (request, profile id) pairs in the outbox; a profile id of None is a user the workspace does not
    know (a row skipped as `no_person`, so the exclusion is on record)."""
    result = Queued(campaign)
    batch: list[tuple[Request, str | None]] = []
    for item in requests:
        batch.append(item)
        if len(batch) >= BATCH:
            _plan_batch(ws, batch, result, progress)
            batch = []
    if batch:
        _plan_batch(ws, batch, result, progress)
    return result


def _plan_batch(ws: Workspace, batch: list[tuple[Request, str | None]], result: Queued,
                progress: Callable[[int], None] | None) -> None:
    with ws.sessions() as session:
        have = outbox.existing(session, [outbox.message_id_for(r.key) for r, _ in batch])
    for request, profile_id in batch:
        message_id = outbox.message_id_for(request.key)
        if message_id in have:
            result.existing += 1
            continue
        try:
            state, reason = _plan_one(ws, request, profile_id)
        except _Taken:
            result.existing += 1
            continue
        if state == OutboxState.QUEUED:
            result.queued += 1
        elif state == OutboxState.DEFERRED:
            result.deferred += 1
        else:
            result.skipped[reason or "skipped"] += 1
    if progress is not None:
        progress(len(batch))


def _plan_one(ws: Workspace, request: Request, profile_id: str | None) -> tuple[OutboxState, str | None]:
    now = ws.clock()
    message_id = outbox.message_id_for(request.key)
    with ws.sessions.begin() as session:
        state = ws._policy_state(session, PolicyStage.QUEUE)
        candidate = ws._candidate(state, request.channel, dict(request.fields), {
            **request.options, "message_id": message_id, "campaign": request.campaign, "to": request.to})
        purpose = candidate.purpose
        in_doubt = request.in_doubt or ("hold" if purpose == MessagePurpose.ADVERTISING else "resend")
        base = {"key": request.key, "channel": request.channel.value, "purpose": purpose.value,
                "fields": request.fields, "options": request.options, "profile_id": profile_id,
                "campaign": request.campaign, "to": request.to, "in_doubt": in_doubt}
        person = people.load(session, ws.settings, profile_id) if profile_id else None
        if person is None:
            planned = Planned(**base, state=OutboxState.SKIPPED, due_at=now, reason="no_person",
                              detail="no such user or anonymous id in this workspace")
        else:
            ruling = chain.gate(candidate, person, now, state)
            words = next((d.en for d in ruling.decisions if d.reason == ruling.reason), None)
            if ruling.action == Action.SEND:
                planned = Planned(**base, state=OutboxState.QUEUED, due_at=request.due_at or now)
            elif ruling.action == Action.DEFER:
                assert ruling.until is not None
                planned = Planned(**base, state=OutboxState.DEFERRED, due_at=max(ruling.until, request.due_at or now),
                                  reason=ruling.reason, detail=words)
            else:
                planned = Planned(**base, state=OutboxState.SKIPPED, due_at=now, reason=ruling.reason, detail=words)
        if not outbox.add(session, planned, now):
            raise _Taken()
    return planned.state, planned.reason
