"""The circuit breaker: a provider whose calls keep failing (5xx, timeouts, refused connections) is paused
for every worker, then tried again by one probe; a success closes it, a failure pauses it for twice as long.

A call "fails" when nothing in it was accepted or refused on its merits — the vendor did not work. A 429 is
the vendor working as asked (pacing.block honours it) and counts neither way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nudgekit.channels.provider import Outcome, Verdict
from nudgekit.config import DeliverySettings
from nudgekit.store.state import ProviderCircuit, insert_missing

PROBE_SECONDS = 60.0
"""How long a probing worker has before another may probe instead."""


@dataclass(frozen=True)
class Gate:
    """May a worker call the provider now, and as a probe (send little, learn a lot)?"""

    open: bool
    probe: bool = False
    until: datetime | None = None
    """While closed to us: when to look again."""


def judge(outcomes: list[Outcome]) -> bool | None:
    """True: the vendor worked; False: the call failed; None: it only asked us to slow down."""
    verdicts = {o.verdict for o in outcomes}
    if verdicts & {Verdict.ACCEPTED, Verdict.PERMANENT, Verdict.INVALID_RECIPIENT}:
        return True
    if verdicts & {Verdict.RETRYABLE, Verdict.UNCERTAIN}:
        return False
    return None


def _row(session: Session, provider: str, now: datetime) -> ProviderCircuit:
    insert_missing(session, ProviderCircuit, provider=provider, failures=0, trips=0, updated_at=now)
    session.execute(update(ProviderCircuit).where(ProviderCircuit.provider == provider)
                    .values(failures=ProviderCircuit.failures))
    row = session.get(ProviderCircuit, provider, populate_existing=True)
    assert row is not None
    return row


def enter(session: Session, provider: str, now: datetime) -> Gate:
    """Whether to call the provider now. A paused one whose pause is over lets exactly one worker probe."""
    current = session.get(ProviderCircuit, provider)
    if current is None or current.open_until is None:
        return Gate(True)
    row = _row(session, provider, now)
    if row.open_until is None:
        return Gate(True)
    if row.open_until > now:
        return Gate(False, until=row.open_until)
    if row.probe_until is not None and row.probe_until > now:
        return Gate(False, until=row.probe_until)
    row.probe_until = now + timedelta(seconds=PROBE_SECONDS)
    return Gate(True, probe=True)


def record(session: Session, provider: str, worked: bool | None, detail: str, now: datetime,
           settings: DeliverySettings) -> datetime | None:
    """Count one call's result; returns when the pause ends, when this call paused the provider."""
    if worked is None:
        return None
    row = _row(session, provider, now)
    row.updated_at = now
    if worked:
        row.failures, row.trips, row.open_until, row.probe_until, row.detail = 0, 0, None, None, None
        return None
    row.failures += 1
    probing = row.open_until is not None
    if not probing and row.failures < settings.circuit_failures:
        return None
    row.trips += 1
    pause = min(settings.circuit_max_seconds, settings.circuit_seconds * 2 ** (row.trips - 1))
    row.open_until, row.probe_until, row.detail = now + timedelta(seconds=pause), None, detail[:500]
    return row.open_until


def paused(session: Session, now: datetime) -> dict[str, datetime]:
    """Providers paused now, with when their pause ends."""
    rows = session.scalars(select(ProviderCircuit).where(ProviderCircuit.open_until.isnot(None)))
    return {r.provider: r.open_until for r in rows if r.open_until is not None and r.open_until > now}


def states(session: Session) -> list[dict[str, object]]:
    return [{"provider": r.provider, "failures": r.failures, "trips": r.trips,
             "open_until": r.open_until.isoformat() if r.open_until else None, "detail": r.detail}
            for r in session.scalars(select(ProviderCircuit).order_by(ProviderCircuit.provider))]
