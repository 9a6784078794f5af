"""Consent history: every change appended with when, how and the evidence; current consent derived from it.

The law (정보통신망법 제50조) asks the sender to prove when and how a user opted
in or out, so nothing here updates or deletes a record — the database refuses
to (see the 0001 migration). Current consent for a (channel, purpose) is the
latest change by its `at` time, whatever order the records arrived in (an
080 call centre's file may arrive days late).

Every explicit change is kept, even one that repeats the current state: a
re-affirmation is evidence too. Only echoes are dropped — consent traits an
app repeats on every identify without saying when the user chose — when they
match the current state, so they do not bury the real changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.store.state import ConsentRecord, in_batches
from nudgekit.vocabulary import Channel, ConsentChange, ConsentSource, Purpose


@dataclass(frozen=True)
class ConsentUpdate:
    """One requested change, validated, not yet recorded."""

    channel: Channel
    purpose: Purpose
    change: ConsentChange
    at: datetime
    source: ConsentSource
    evidence: str | None = None
    echo: bool = False
    """True when the carrying message did not say when the user chose (an app repeating its state)."""


@dataclass(frozen=True)
class ConsentState:
    channel: Channel
    purpose: Purpose
    granted: bool
    at: datetime
    source: ConsentSource

    def as_dict(self) -> dict[str, object]:
        return {
            "channel": self.channel.value,
            "purpose": self.purpose.value,
            "granted": self.granted,
            "at": self.at.astimezone(UTC).isoformat(),
            "source": self.source.value,
        }


def _ordered(session: Session, profile_id: str) -> list[ConsentRecord]:
    stmt = (
        select(ConsentRecord)
        .where(ConsentRecord.profile_id == profile_id)
        .order_by(ConsentRecord.at, ConsentRecord.id)
    )
    return list(session.scalars(stmt))


def history(session: Session, profile_id: str) -> list[ConsentRecord]:
    return _ordered(session, profile_id)


def latest(records: list[Any]) -> dict[tuple[Channel, Purpose], Any]:
    """The last record per (channel, purpose) of records in time order: what the person chose last."""
    return {(Channel(rec.channel), Purpose(rec.purpose)): rec for rec in records}


def current(session: Session, profile_id: str) -> dict[tuple[Channel, Purpose], ConsentState]:
    return states(_ordered(session, profile_id))


def states(records: list[Any]) -> dict[tuple[Channel, Purpose], ConsentState]:
    """What a person's records in time order say now, per channel and purpose."""
    return {key: ConsentState(key[0], key[1], rec.change == ConsentChange.GRANTED, rec.at, ConsentSource(rec.source))
            for key, rec in latest(records).items()}


def _latest(records: list[Any], update: ConsentUpdate) -> ConsentRecord | None:
    latest = None
    for rec in records:
        if rec.channel == update.channel and rec.purpose == update.purpose:
            latest = rec
    return latest


def _is_repeat(records: list[Any], update: ConsentUpdate) -> bool:
    for rec in records:
        if (rec.channel, rec.purpose, rec.change, rec.at, rec.source) == (
            update.channel, update.purpose, update.change, update.at, update.source
        ):
            return True
    if update.echo:
        latest = _latest(records, update)
        return latest is not None and latest.change == update.change
    return False


def record(
    session: Session,
    profile_id: str,
    updates: list[ConsentUpdate],
    *,
    now: datetime,
    dedupe_key: str | None = None,
    records: list[Any] | None = None,
    taken_keys: set[str] | None = None,
    sink: list[dict[str, Any]] | None = None,
) -> list[Any]:
    """Append the updates (see the module doc for what is skipped). `dedupe_key` makes retries safe.

    A batch passes the profile's `records` (in time order) and the dedupe keys already used, read up
    front, so recording costs no query; both are kept up to date here. With a `sink`, new records are
    appended to it as rows for one bulk insert instead of being added to the session.
    """
    if records is None:
        records = _ordered(session, profile_id)
    written: list[ConsentRecord] = []
    for update in updates:
        key = f"{dedupe_key}:{update.channel}:{update.purpose}" if dedupe_key else None
        if key:
            if taken_keys is None:
                if session.scalar(select(ConsentRecord.id).where(ConsentRecord.dedupe_key == key)):
                    continue
            elif key in taken_keys:
                continue
        if _is_repeat(records, update):
            continue
        values = {
            "profile_id": profile_id,
            "channel": update.channel.value,
            "purpose": update.purpose.value,
            "change": update.change.value,
            "at": update.at,
            "source": update.source.value,
            "recorded_at": now,
            "evidence": update.evidence,
            "dedupe_key": key,
        }
        rec: Any
        if sink is None:
            rec = ConsentRecord(**values)
            session.add(rec)
        else:
            sink.append(values)
            rec = SimpleNamespace(**values)
        records.append(rec)
        records.sort(key=lambda r: r.at)
        if key and taken_keys is not None:
            taken_keys.add(key)
        written.append(rec)
    return written


def for_profiles(session: Session, profile_ids: list[str]) -> dict[str, list[ConsentRecord]]:
    """Every consent record of these profiles, in time order, in one query."""
    found: dict[str, list[ConsentRecord]] = {pid: [] for pid in profile_ids}
    for chunk in in_batches(profile_ids):
        stmt = (
            select(ConsentRecord).where(ConsentRecord.profile_id.in_(chunk))
            .order_by(ConsentRecord.at, ConsentRecord.id)
        )
        for rec in session.scalars(stmt):
            found[rec.profile_id].append(rec)
    return found


def used_keys(session: Session, keys: list[str]) -> set[str]:
    taken: set[str] = set()
    for chunk in in_batches(keys):
        taken.update(session.scalars(select(ConsentRecord.dedupe_key).where(ConsentRecord.dedupe_key.in_(chunk))))
    return taken



def copy_to(session: Session, source_profile: str, target_profile: str, *, now: datetime) -> int:
    """Carry an anonymous visitor's consent history over to the user it turned out to be.

    The originals stay; the copies keep their original time and source and say where they came from.
    """
    copied = 0
    for rec in _ordered(session, source_profile):
        session.add(
            ConsentRecord(
                profile_id=target_profile,
                channel=rec.channel,
                purpose=rec.purpose,
                change=rec.change,
                at=rec.at,
                source=rec.source,
                recorded_at=now,
                evidence=f"merged from {source_profile} (record {rec.id})"
                + (f"; {rec.evidence}" if rec.evidence else ""),
            )
        )
        copied += 1
    session.flush()
    return copied
