"""Delivery receipts: asking the vendors that report later (Solapi, NHN Cloud) what became of the messages
they accepted, and writing down what the answer teaches.

A vendor's 200 at send time means "registered"; the carrier or Kakao decides minutes to days later. A
receipt closes the message's record (`direct_sends.delivery`) and:

- a number the carrier says does not exist is suppressed, a person Kakao says is not a KakaoTalk user (or
  blocks AlimTalk) is remembered as unreachable on Kakao (`feedback.remember`, as for a send's answer);
- a message that failed is refunded to the prepaid balance (the vendors bill deliveries only), unless the
  vendor's own fallback text message reached the person;
- an uncertain message the receipt shows failed becomes sendable again; one it shows delivered stays sent;
- the person gets a `message_delivered` / `message_failed` event (stored once per message) for measurement.

A message with no final word after `GIVE_UP` is closed as unknown (NHN itself gives up on an SMS after 25 h
and an LMS after 80 h).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from nudgekit.channels import balance, feedback
from nudgekit.channels.provider import Delivery, Outcome, Receipt, Sent, Verdict
from nudgekit.store.state import DirectSend, OutboxMessage
from nudgekit.vocabulary import EventName, MessageChannel

REPORTING = ("solapi", "nhncloud")
"""The providers whose vendors report delivery later."""
GIVE_UP = timedelta(days=4)
"""After this long without a final word a message is closed as unknown (LMS times out at 80 h at NHN)."""
WAITING = ("accepted", "uncertain")


@dataclass(frozen=True)
class Closed:
    """One message a receipt settled (or the wait gave up on)."""

    message_id: str
    channel: str
    recipient: str
    provider: str
    delivery: str
    code: str | None
    detail: str
    fallback: str | None
    learned: str | None
    """What the profile learned (a suppression, unreachable on Kakao), or None."""
    refunded: bool

    def as_dict(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "channel": self.channel, "recipient": self.recipient,
                "provider": self.provider, "delivery": self.delivery, "code": self.code, "detail": self.detail,
                "fallback": self.fallback, "learned": self.learned, "refunded": self.refunded}


def awaiting(session: Session, providers: Iterable[str] = REPORTING, limit: int = 10_000) -> list[DirectSend]:
    """Accepted (or uncertain) messages with a vendor id that have no final receipt yet, the ones asked
    about least recently first (so messages that never settle cannot crowd out new ones)."""
    query = (select(DirectSend)
             .where(DirectSend.provider.in_(list(providers)), DirectSend.verdict.in_(WAITING),
                    DirectSend.provider_message_id.isnot(None),
                    or_(DirectSend.delivery.is_(None), DirectSend.fallback_delivery == Delivery.PENDING.value))
             .order_by(DirectSend.receipt_checked_at.asc().nullsfirst(), DirectSend.updated_at).limit(limit))
    return list(session.scalars(query))


def still_waiting(row: DirectSend | None, sent: Sent) -> bool:
    """Whether the row is still the attempt that was asked about, and still without a final word (another
    poll may have settled it, or the id been sent again, meanwhile)."""
    return (row is not None and row.provider_message_id == sent.provider_message_id and row.verdict in WAITING
            and (row.delivery is None or row.fallback_delivery == Delivery.PENDING.value))


def asked(row: DirectSend) -> Sent:
    assert row.provider_message_id is not None
    return Sent(row.message_id, MessageChannel(row.channel), row.provider_message_id, row.type,
                bool(row.fallback_requested))


def apply(session: Session, row: DirectSend, receipt: Receipt | None, now: datetime) -> tuple[Closed | None,
                                                                                            dict[str, Any] | None]:
    """Write one receipt (None: the vendor had nothing to say) onto its message; returns what it closed and
    the event to store, or (None, None) when nothing changed (still on its way)."""
    row.receipt_checked_at = now
    late = now - (row.sent_at or row.updated_at) >= GIVE_UP
    if receipt is None or receipt.delivery == Delivery.PENDING:
        if not late:
            return None, None
        if row.delivery is None:
            receipt = Receipt(Delivery.UNKNOWN, Outcome(Verdict.UNCERTAIN, "no_receipt", "the vendor gave no result "
                                                        f"within {GIVE_UP.days} days"))
        else:  # the message failed earlier; only the vendor's fallback never said how it went
            row.fallback_delivery = Delivery.UNKNOWN.value
            return _closed(row, None, False), None
    elif receipt.fallback == Delivery.PENDING and late:
        receipt = replace(receipt, fallback=Delivery.UNKNOWN)
    fallback = receipt.fallback.value if receipt.fallback else None
    if row.delivery == receipt.delivery.value and row.fallback_delivery == fallback:
        return None, None
    first = row.delivery is None
    outcome = receipt.outcome
    row.delivery, row.fallback_delivery = receipt.delivery.value, fallback
    row.delivery_code = (outcome.code or "")[:64] or None
    row.delivery_detail = outcome.detail or None
    row.delivery_at = receipt.at or row.delivery_at
    learned = feedback.remember(session, MessageChannel(row.channel), row.recipient, row.profile_id, outcome,
                                now) if first else None
    refunded = False
    if receipt.delivery == Delivery.FAILED and receipt.fallback in (None, Delivery.FAILED):
        refunded = balance.refund(session, row.message_id, now)
        if row.verdict == Verdict.UNCERTAIN.value:
            row.verdict = outcome.verdict.value  # it certainly did not go out: it may be sent again
    elif receipt.delivery == Delivery.DELIVERED:
        row.verdict = Verdict.ACCEPTED.value
    return _closed(row, learned, refunded), _event(row, receipt) if first else None


def _closed(row: DirectSend, learned: str | None, refunded: bool) -> Closed:
    return Closed(row.message_id, row.channel, row.recipient, row.provider, row.delivery or "", row.delivery_code,
                  row.delivery_detail or "", row.fallback_delivery, learned, refunded)


def _event(row: DirectSend, receipt: Receipt) -> dict[str, Any] | None:
    """The person's message_delivered / message_failed event (none for an unknown fate or no person)."""
    if receipt.delivery not in (Delivery.DELIVERED, Delivery.FAILED):
        return None
    name = EventName.MESSAGE_DELIVERED if receipt.delivery == Delivery.DELIVERED else EventName.MESSAGE_FAILED
    properties: dict[str, Any] = {"provider": row.provider, "code": row.delivery_code}
    if row.type:
        properties["type"] = row.type
    if receipt.fallback is not None:
        properties["fallback"] = receipt.fallback.value
    return person_event(row, name, f"receipt:{row.attempts}", receipt.at or row.receipt_checked_at, properties)


def person_event(row: DirectSend | OutboxMessage, name: EventName, key: str, when: datetime | None,
                 properties: dict[str, Any]) -> dict[str, Any] | None:
    """A track event about a message for the person it went to (None when the send named no person),
    stored once: its messageId is the message id and `key`."""
    if row.profile_id is None:
        return None
    who = ({"anonymousId": row.profile_id.removeprefix("anon:")} if row.profile_id.startswith("anon:")
           else {"userId": row.profile_id})
    return {"type": "track", "event": name.value, **who, "messageId": f"{row.message_id}:{key}",
            "timestamp": when.isoformat() if when else None,
            "properties": {"message_id": row.message_id, "channel": row.channel, **properties}}
