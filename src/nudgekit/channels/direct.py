"""The log of messages handed straight to a provider (`nudge message send`, `Workspace.send_now`): each
message id is written, pending, before the provider is called, and its answer afterwards.

A message id that is pending (a crash mid-send), accepted or uncertain is not sent again through a provider
that cannot drop repeats itself; one that certainly did not go out (retryable, rate limited, permanent,
invalid recipient) may be tried again. Campaigns send through delivery's outbox instead, which decides
itself whether to send again (`start(..., again=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nudgekit.channels.provider import Outcome, Verdict
from nudgekit.store.state import DirectSend, unless_there

AGAIN = frozenset({Verdict.RETRYABLE.value, Verdict.RATE_LIMITED.value, Verdict.PERMANENT.value,
                   Verdict.INVALID_RECIPIENT.value})


def start(session: Session, message_id: str, channel: str, recipient: str, provider: str,
          now: datetime, *, type: str | None = None, profile_id: str | None = None,
          fallback_requested: bool = False, again: bool = False) -> str | None:
    """Take the message id for one attempt; None when taken, else why it must not go out again. `again`:
    the outbox, which decides for campaign messages, chose to send it again (an informational message in
    doubt, a retry after a timeout)."""
    row = session.get(DirectSend, message_id)
    if row is None:
        try:
            with session.begin_nested():
                session.add(DirectSend(message_id=message_id, channel=channel, recipient=recipient, provider=provider,
                                       verdict="pending", attempts=1, updated_at=now, type=type,
                                       profile_id=profile_id, fallback_requested=fallback_requested))
            return None
        except IntegrityError:
            row = session.get(DirectSend, message_id)
            return _sent(row) if row is not None else "a concurrent send took this message id"
    if row.verdict in AGAIN or again:
        taken = session.execute(update(DirectSend).where(DirectSend.message_id == message_id,
                                                         DirectSend.verdict == row.verdict).values(
            verdict="pending", attempts=DirectSend.attempts + 1, provider=provider, updated_at=now, type=type,
            channel=channel, recipient=recipient, profile_id=profile_id, fallback_requested=fallback_requested,
            sent_at=None, delivery=None, delivery_code=None, delivery_detail=None, delivery_at=None,
            fallback_delivery=None, receipt_checked_at=None))
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return None
        session.refresh(row)
    return _sent(row)


@dataclass(frozen=True)
class Start:
    """One message about to be handed over (`start`'s arguments)."""

    message_id: str
    channel: str
    recipient: str
    type: str | None = None
    profile_id: str | None = None
    fallback_requested: bool = False


def start_many(session: Session, starts: list[Start], provider: str, now: datetime, *,
               again: bool = False) -> dict[str, str]:
    """`start` for many messages: ids never seen are taken in one statement, the others one by one.
    Returns why, for each message that must not go out."""
    if not starts:
        return {}
    taken = set(session.connection().execute(unless_there(session, DirectSend, None).returning(
        DirectSend.message_id), [{**s.__dict__, "provider": provider, "verdict": "pending", "attempts": 1,
                                  "updated_at": now} for s in starts]).scalars())
    refused = {}
    for s in starts:
        if s.message_id in taken:
            continue
        why = start(session, s.message_id, s.channel, s.recipient, provider, now, type=s.type,
                    profile_id=s.profile_id, fallback_requested=s.fallback_requested, again=again)
        if why is not None:
            refused[s.message_id] = why
    return refused


def finish(session: Session, message_id: str, outcome: Outcome, now: datetime) -> None:
    finish_many(session, [(message_id, outcome)], now)


def finish_many(session: Session, answers: list[tuple[str, Outcome]], now: datetime) -> None:
    """Write the providers' answers (one statement for all)."""
    if not answers:
        return
    session.connection().execute(update(DirectSend).where(DirectSend.message_id == bindparam("m")).values(
        verdict=bindparam("v"), code=bindparam("c"), provider_message_id=bindparam("p"), updated_at=now,
        sent_at=bindparam("s")), [
        {"m": message_id, "v": o.verdict.value, "c": (o.code or "")[:64] or None, "p": o.provider_message_id,
         "s": now if o.verdict in (Verdict.ACCEPTED, Verdict.UNCERTAIN) else None} for message_id, o in answers])


def _sent(row: DirectSend) -> str:
    state = "may still be going out" if row.verdict == "pending" else f"was {row.verdict}"
    return (f"message {row.message_id} {state} (through {row.provider}, attempt {row.attempts}): a message id is "
            "sent once; use a new id to send it again")
