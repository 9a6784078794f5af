"""The outbox: one row per message to send, keyed by a message id made from its idempotency key, so planning
the same send twice adds nothing; and how workers claim, give back and recover rows.

A row's life: queued (or deferred) -> claimed by a worker (a lease) -> handing (written just before the
provider call) -> sent | failed | in_doubt, or back to queued for a retry; skipped or cancelled never go.

:TRICKY: a worker's claim is stamped with a token unique to that claim, and every later step updates only
rows still carrying it in the state it left them. So a cancel or pause that moves a claimed row away, or a
second worker that recovered it after the lease ran out, wins: the first worker's late writes match nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from nudgekit.policy import chain
from nudgekit.store.state import CampaignSend, DirectSend, OutboxAttempt, OutboxMessage, insert_missing, unless_there
from nudgekit.templates import coupons
from nudgekit.vocabulary import CampaignSendState, OutboxState

WAITING = (OutboxState.QUEUED.value, OutboxState.DEFERRED.value)
HELD = (OutboxState.CLAIMED.value, OutboxState.HANDING.value)
DONE = (OutboxState.SENT.value, OutboxState.SKIPPED.value, OutboxState.FAILED.value, OutboxState.IN_DOUBT.value,
        OutboxState.CANCELLED.value)


def message_id_for(key: str) -> str:
    """The message id of an idempotency key: the same key always makes the same id (and the same row)."""
    return "m-" + hashlib.sha256(key.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Planned:
    """One message to put in the outbox, as the policy chain's QUEUE gate left it."""

    key: str
    channel: str
    purpose: str
    fields: dict[str, Any]
    options: dict[str, Any]
    state: OutboxState
    due_at: datetime
    profile_id: str | None = None
    campaign: str | None = None
    to: str | None = None
    reason: str | None = None
    detail: str | None = None
    in_doubt: str = "hold"
    fallback_of: str | None = None
    template: str | None = None
    """The saved template it was rendered from, as name@version."""
    source: dict[str, Any] | None = None
    """For a rendered message: what was asked for before rendering (template name or fields, event)."""
    variant: str | None = None

    @property
    def message_id(self) -> str:
        return message_id_for(self.key)

    def values(self, now: datetime) -> dict[str, Any]:
        finished = now if self.state.value in DONE else None
        return {"message_id": self.message_id, "key": self.key, "campaign": self.campaign,
                "profile_id": self.profile_id, "channel": self.channel, "purpose": self.purpose,
                "fields": self.fields, "options": self.options, "to": self.to, "state": self.state.value,
                "due_at": self.due_at, "lease_until": None, "worker": None, "attempts": 0, "failures": 0,
                "reason": self.reason, "detail": self.detail, "provider": None, "provider_message_id": None,
                "cost_krw": None, "in_doubt": self.in_doubt, "fallback_of": self.fallback_of,
                "template": self.template, "variant": self.variant, "source": self.source, "created_at": now,
                "updated_at": now, "finished_at": finished}


def add(session: Session, planned: Planned, now: datetime) -> bool:
    """Insert the row unless its key is already there; True when this call added it."""
    added = session.execute(unless_there(session, OutboxMessage, planned.values(now))
                            .returning(OutboxMessage.message_id))
    return added.scalar() is not None


def add_many(session: Session, planned: list[Planned], now: datetime) -> set[str]:
    """Insert the rows whose keys are not there yet, in one statement; returns the message ids it added."""
    if not planned:
        return set()
    added = session.connection().execute(unless_there(session, OutboxMessage, None).returning(
        OutboxMessage.message_id), [p.values(now) for p in planned])
    return set(added.scalars())


def settle(session: Session, token: str, state: OutboxState, changes: list[tuple[str, dict[str, Any]]]) -> None:
    """Write each row's new values ((message_id, values) pairs), if it still carries the claim in this
    state: one statement per set of columns changed."""
    groups: dict[tuple[str, ...], list[tuple[str, dict[str, Any]]]] = {}
    for message_id, values in changes:
        groups.setdefault(tuple(sorted(values)), []).append((message_id, values))
    for columns, rows in groups.items():
        session.connection().execute(update(OutboxMessage).where(
            OutboxMessage.message_id == bindparam("v_message_id"), OutboxMessage.worker == token,
            OutboxMessage.state == state.value).values({c: bindparam(f"v_{c}") for c in columns}),
            [{"v_message_id": m, **{f"v_{c}": v[c] for c in columns}} for m, v in rows])


def existing(session: Session, message_ids: list[str]) -> set[str]:
    return set(session.scalars(select(OutboxMessage.message_id).where(OutboxMessage.message_id.in_(message_ids))))


def open_campaign(session: Session, campaign: str, per_minute: float | None, now: datetime) -> None:
    """Make sure the campaign has a sending state (running); a speed given sets its speed. A cancelled
    campaign takes no more messages (ValueError)."""
    current = session.get(CampaignSend, campaign)
    if current is not None and current.state == CampaignSendState.CANCELLED.value:
        raise ValueError(f"campaign {campaign!r} was cancelled: it takes no more messages")
    insert_missing(session, CampaignSend, campaign=campaign, state=CampaignSendState.RUNNING.value,
                   per_minute=per_minute, created_at=now, updated_at=now)
    if per_minute is not None:
        session.execute(update(CampaignSend).where(CampaignSend.campaign == campaign)
                        .values(per_minute=per_minute, updated_at=now))


def speeds(session: Session) -> dict[str, float]:
    """Running campaigns that have a delivery speed, messages a minute."""
    rows = session.execute(select(CampaignSend.campaign, CampaignSend.per_minute).where(
        CampaignSend.state == CampaignSendState.RUNNING.value, CampaignSend.per_minute.isnot(None)))
    return {campaign: float(per_minute) for campaign, per_minute in rows}


def claim(session: Session, token: str, now: datetime, limit: int, lease: timedelta, *,
          campaign: str | None = None, not_campaigns: Iterable[str] = (), not_channels: Iterable[str] = (),
          ids: list[str] | None = None) -> list[OutboxMessage]:
    """Claim up to `limit` due rows for the worker's claim `token` (the oldest due first), skipping rows of
    campaigns not running and of channels whose provider is paused. On PostgreSQL rows other workers are
    claiming are skipped (FOR UPDATE SKIP LOCKED); on SQLite the write lock serialises claims."""
    if limit <= 0:
        return []
    stopped = select(CampaignSend.campaign).where(CampaignSend.state != CampaignSendState.RUNNING.value)
    where: list[ColumnElement[bool]] = [OutboxMessage.state.in_(WAITING), OutboxMessage.due_at <= now,
                                        or_(OutboxMessage.campaign.is_(None), OutboxMessage.campaign.notin_(stopped))]
    if campaign is not None:
        where.append(OutboxMessage.campaign == campaign)
    skipped_campaigns = list(not_campaigns)
    if skipped_campaigns:
        where.append(or_(OutboxMessage.campaign.is_(None), OutboxMessage.campaign.notin_(skipped_campaigns)))
    skipped_channels = list(not_channels)
    if skipped_channels:
        where.append(OutboxMessage.channel.notin_(skipped_channels))
    if ids is not None:
        where.append(OutboxMessage.message_id.in_(ids))
    picked = (select(OutboxMessage.message_id).where(*where).order_by(OutboxMessage.due_at).limit(limit)
              .with_for_update(skip_locked=True))
    chosen = list(session.scalars(picked))
    if not chosen:
        return []
    session.execute(update(OutboxMessage).where(OutboxMessage.message_id.in_(chosen),
                                                OutboxMessage.state.in_(WAITING)).values(
        state=OutboxState.CLAIMED.value, worker=token, lease_until=now + lease, updated_at=now))
    return list(session.scalars(select(OutboxMessage).where(
        OutboxMessage.message_id.in_(chosen), OutboxMessage.worker == token,
        OutboxMessage.state == OutboxState.CLAIMED.value).order_by(OutboxMessage.due_at)))


def mine(token: str, state: OutboxState, *ids: str) -> ColumnElement[bool]:
    """The WHERE for rows still carrying this claim in this state (see the module's :TRICKY:)."""
    return and_(OutboxMessage.message_id.in_(ids), OutboxMessage.worker == token, OutboxMessage.state == state.value)


def release(session: Session, token: str, ids: list[str], due_at: datetime, now: datetime) -> None:
    """Give claimed rows back untouched (a paused provider, a long Retry-After): no attempt is counted."""
    session.execute(update(OutboxMessage).where(mine(token, OutboxState.CLAIMED, *ids)).values(
        state=OutboxState.QUEUED.value, worker=None, lease_until=None, due_at=due_at, updated_at=now))


@dataclass
class Recovered:
    requeued: int = 0
    """Claimed by a worker that died before calling the provider: simply queued again."""
    resent: list[str] = field(default_factory=list)
    """Mid-send when their worker died, sent again (the provider drops repeats, or the message is one that
    must arrive)."""
    in_doubt: list[str] = field(default_factory=list)
    """Mid-send when their worker died, not sent again (advertising through a provider that cannot drop
    repeats): reported as in doubt."""


def recover(session: Session, now: datetime, idempotent: Callable[[str], bool], limit: int = 5000) -> Recovered:
    """Rows whose worker's lease ran out (the worker died or hung)."""
    found = Recovered()
    expired = session.scalars(select(OutboxMessage).where(
        OutboxMessage.state.in_(HELD), OutboxMessage.lease_until < now).limit(limit)
        .with_for_update(skip_locked=True)).all()
    for row in expired:
        again = row.state == OutboxState.CLAIMED.value or row.in_doubt == "resend" or (
            row.provider is not None and idempotent(row.provider))
        if row.state == OutboxState.CLAIMED.value:
            found.requeued += 1
        elif again:
            found.resent.append(row.message_id)
            row.reason, row.detail = "resent_after_crash", f"its worker {row.worker} stopped mid-send"
        else:
            found.in_doubt.append(row.message_id)
        if not again:
            row.state, row.reason, row.finished_at = OutboxState.IN_DOUBT.value, "worker_died", now
            row.detail = (f"its worker {row.worker} stopped after handing it to {row.provider}, which cannot drop "
                          "a repeat: not sent again (advertising)")
        else:
            row.state = OutboxState.QUEUED.value
        row.worker, row.lease_until, row.updated_at = None, None, now
    return found


def control(session: Session, campaign: str, state: CampaignSendState, now: datetime) -> list[str]:
    """Pause, resume or cancel a campaign's sending. Cancelling (and pausing) takes effect on rows a worker
    has claimed but not yet handed over too; returns the message ids cancelled."""
    insert_missing(session, CampaignSend, campaign=campaign, state=state.value, per_minute=None, created_at=now,
                   updated_at=now)
    current = session.get(CampaignSend, campaign, populate_existing=True, with_for_update=True)
    assert current is not None
    if current.state == CampaignSendState.CANCELLED.value and state != CampaignSendState.CANCELLED:
        raise ValueError(f"campaign {campaign!r} was cancelled; its messages cannot be sent again")
    current.state, current.updated_at = state.value, now
    stopping = [OutboxMessage.campaign == campaign, OutboxMessage.state.in_(
        (*WAITING, OutboxState.CLAIMED.value))]
    if state == CampaignSendState.PAUSED:
        session.execute(update(OutboxMessage).where(*stopping, OutboxMessage.state == OutboxState.CLAIMED.value)
                        .values(state=OutboxState.QUEUED.value, worker=None, lease_until=None, updated_at=now))
    if state != CampaignSendState.CANCELLED:
        return []
    ids = list(session.scalars(select(OutboxMessage.message_id).where(*stopping)))
    for message_id in ids:  # the frequency-cap slots and budget they held go back
        chain.release(session, message_id)
    coupons.release(session, ids)
    session.execute(update(OutboxMessage).where(*stopping).values(
        state=OutboxState.CANCELLED.value, worker=None, lease_until=None, reason="cancelled", updated_at=now,
        finished_at=now))
    return ids


def status(session: Session, campaign: str) -> dict[str, Any] | None:
    """Where a campaign's messages stand: counts by state, skips and failures by reason, cost, and what
    receipts said of those sent."""
    send = session.get(CampaignSend, campaign)
    by_state = {state: count for state, count in session.execute(select(OutboxMessage.state, func.count()).where(
        OutboxMessage.campaign == campaign).group_by(OutboxMessage.state))}
    if send is None and not by_state:
        return None
    reasons: dict[str, dict[str, int]] = {}
    for state, reason, count in session.execute(select(OutboxMessage.state, OutboxMessage.reason, func.count())
                                                .where(OutboxMessage.campaign == campaign,
                                                       OutboxMessage.state.in_(DONE + WAITING))
                                                .group_by(OutboxMessage.state, OutboxMessage.reason)):
        if reason is not None:
            reasons.setdefault(state, {})[reason] = count
    cost = session.scalar(select(func.coalesce(func.sum(OutboxMessage.cost_krw), 0)).where(
        OutboxMessage.campaign == campaign, OutboxMessage.state == OutboxState.SENT.value))
    delivery = {word: count for word, count in session.execute(select(DirectSend.delivery, func.count()).join(
        OutboxMessage, OutboxMessage.message_id == DirectSend.message_id).where(
        OutboxMessage.campaign == campaign, DirectSend.delivery.isnot(None)).group_by(DirectSend.delivery))}
    counts = {s.value: int(by_state.get(s.value, 0)) for s in OutboxState}
    total = sum(counts.values())
    return {"campaign": campaign, "state": send.state if send else CampaignSendState.RUNNING.value,
            "per_minute": send.per_minute if send else None, "total": total, "counts": counts,
            "remaining": sum(counts[s] for s in (*WAITING, *HELD)),
            "skipped": reasons.get(OutboxState.SKIPPED.value, {}), "failed": reasons.get(OutboxState.FAILED.value, {}),
            "in_doubt": reasons.get(OutboxState.IN_DOUBT.value, {}),
            "deferred": reasons.get(OutboxState.DEFERRED.value, {}), "cost_krw": float(cost or 0),
            "receipts": {k: int(v) for k, v in delivery.items()}}


def row_dict(row: OutboxMessage) -> dict[str, Any]:
    return {"message_id": row.message_id, "key": row.key, "campaign": row.campaign, "user": row.profile_id,
            "channel": row.channel, "purpose": row.purpose, "state": row.state, "reason": row.reason,
            "detail": row.detail, "due_at": row.due_at.isoformat(), "attempts": row.attempts,
            "provider": row.provider, "provider_message_id": row.provider_message_id, "cost_krw": row.cost_krw,
            "fallback_of": row.fallback_of, "template": row.template, "variant": row.variant,
            "created_at": row.created_at.isoformat(),
            "finished_at": row.finished_at.isoformat() if row.finished_at else None}


def insert_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(OutboxAttempt), rows)
