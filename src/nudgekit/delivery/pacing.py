"""How fast messages go: retry backoff with jitter, and token buckets kept in the state DB so every worker on
every machine shares one provider rate, one campaign speed and one provider's Retry-After.

:TRICKY: a bucket row is written before it is read (`_hold`), as caps.lock does: on SQLite that takes the
write lock first so two workers never refill from the same stale count; on PostgreSQL the UPDATE row-locks it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from nudgekit.store.state import RateBucket, insert_missing


def backoff(failures: int, base: float, ceiling: float, rng: random.Random) -> float:
    """Seconds to wait after the `failures`-th passing fault: doubling from `base` up to `ceiling`, half of it
    fixed and half random ("equal jitter") so retries of one failed batch spread out instead of returning
    together."""
    span = min(ceiling, base * 2 ** max(0, failures - 1))
    return span / 2 + rng.uniform(0, span / 2)


def _hold(session: Session, name: str, burst: float, now: datetime) -> RateBucket:
    insert_missing(session, RateBucket, name=name, tokens=burst, at=now, blocked_until=None)
    session.execute(update(RateBucket).where(RateBucket.name == name).values(tokens=RateBucket.tokens))
    row = session.get(RateBucket, name, populate_existing=True)
    assert row is not None
    return row


def burst_of(rate: float) -> float:
    """A bucket holds one second's worth (at least one message): a speed is kept within each second."""
    return max(1.0, rate)


def take(session: Session, name: str, rate: float, want: int, now: datetime) -> tuple[int, float]:
    """Take up to `want` tokens from the bucket that refills at `rate` a second. Returns how many were
    granted and, when fewer than wanted, the seconds until the next one (or until a Retry-After ends)."""
    burst = burst_of(rate)
    row = _hold(session, name, burst, now)
    if row.blocked_until is not None and row.blocked_until > now:
        return 0, (row.blocked_until - now).total_seconds()
    elapsed = max(0.0, (now - row.at).total_seconds())
    tokens = min(burst, row.tokens + elapsed * rate)
    granted = max(0, min(want, int(tokens)))
    row.tokens, row.at, row.blocked_until = tokens - granted, max(now, row.at), None
    wait = 0.0 if granted >= want else max(0.0, (1 - row.tokens) / rate)
    return granted, wait


def give_back(session: Session, name: str, count: int, rate: float, now: datetime) -> None:
    """Return tokens taken but not used (fewer messages were due than the speed allowed)."""
    if count <= 0:
        return
    row = _hold(session, name, burst_of(rate), now)
    row.tokens = min(burst_of(rate), row.tokens + count)


def block(session: Session, name: str, seconds: float, now: datetime) -> None:
    """Nobody takes from the bucket for `seconds` (a provider's Retry-After); a later, shorter one does not
    shorten it."""
    row = _hold(session, name, 1.0, now)
    until = now + timedelta(seconds=seconds)
    if row.blocked_until is None or row.blocked_until < until:
        row.blocked_until = until


def blocked(session: Session, name: str, now: datetime) -> float:
    """Seconds left of a provider's Retry-After (0 when none)."""
    row = session.get(RateBucket, name)
    if row is None or row.blocked_until is None or row.blocked_until <= now:
        return 0.0
    return (row.blocked_until - now).total_seconds()
