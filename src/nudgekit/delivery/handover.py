"""What happens around a provider call, for a test send and for the outbox alike: the envelope, the records
written before the call (the direct-send log for providers that cannot drop repeats, the prepaid price, a
Brand Message's one a day) and what the answers teach afterwards (dead addresses, refunds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from nudgekit.channels import balance, direct, feedback
from nudgekit.channels.check import Checked
from nudgekit.channels.kakao import brand
from nudgekit.channels.provider import Envelope, Outcome, Provider, Verdict
from nudgekit.vocabulary import MessageChannel

WENT = (Verdict.ACCEPTED, Verdict.UNCERTAIN)


def envelope(message_id: str, channel: MessageChannel, to: str, message: BaseModel, checked: Checked,
             profile_id: str | None) -> Envelope:
    """A checked message for one address, with what the provider needs besides the message: the rendered
    parts and the fallback text message a vendor sends itself when Kakao cannot deliver."""
    meta: dict[str, Any] = dict(checked.rendered)
    if checked.fallback is not None:
        meta["fallback"] = {"type": checked.fallback.checked.type,
                            **checked.fallback.message.model_dump(mode="json", exclude_none=True)}
    return Envelope(message_id, channel, to, message, checked.type, profile_id, meta)


@dataclass(frozen=True)
class Handed:
    envelope: Envelope
    price_krw: float


def begin(session: Session, handed: list[Handed], provider: Provider, now: datetime, *,
          again: bool = False) -> dict[str, Outcome]:
    """Write down, before the call, what must be known if it never returns; returns outcomes for envelopes
    that must not be sent (sent before through a provider that cannot drop repeats, no balance left, the
    recipient's Brand Message of the day taken) — the others go."""
    refused: dict[str, Outcome] = {}
    idempotent, paid = provider.capabilities.idempotency, provider.capabilities.charges
    took_day: dict[str, Envelope] = {}
    for item in handed:
        e = item.envelope
        if e.channel == MessageChannel.BRAND_MESSAGE:
            taken, took = brand.claim_day(session, e.to, e.message_id, now)
            if taken is not None:
                refused[e.message_id] = Outcome(Verdict.PERMANENT, "brand_day_taken", taken)
            elif took:
                took_day[e.message_id] = e
    going = [item for item in handed if item.envelope.message_id not in refused]
    if not idempotent:
        starts = [direct.Start(e.message_id, e.channel.value, e.to, e.type, e.profile_id,
                               "fallback" in e.meta and bool(getattr(e.message, "fallback", False)))
                  for e in (item.envelope for item in going)]
        for message_id, why in direct.start_many(session, starts, provider.name, now, again=again).items():
            refused[message_id] = Outcome(Verdict.PERMANENT, "sent_before", why)
    if paid and balance.opened(session):
        for item in going:
            e = item.envelope
            if e.message_id in refused:
                continue
            why = balance.reserve(session, e.message_id, e.channel.value, item.price_krw, now)
            if why is not None:
                refused[e.message_id] = Outcome(Verdict.PERMANENT, "no_balance", why)
                if not idempotent:
                    direct.finish(session, e.message_id, Outcome(Verdict.RETRYABLE, "balance", why), now)
    for message_id, e in took_day.items():  # a day an earlier, sent attempt took stays taken
        if message_id in refused:
            brand.release_day(session, e.to, message_id, now)
    return refused


def end(session: Session, envelopes: list[Envelope], outcomes: list[Outcome], provider: Provider,
        now: datetime) -> list[str | None]:
    """Write down what the answers say: the recipient's address (dead token, suppressed number), the
    direct-send log, refunds and the Brand Message day of messages that certainly did not go. Returns what
    each answer taught about its recipient."""
    learned = []
    for e, outcome in zip(envelopes, outcomes, strict=True):
        learned.append(feedback.remember(session, e.channel, e.to, e.profile_id, outcome, now))
        if outcome.verdict not in WENT:
            if provider.capabilities.charges:
                balance.refund(session, e.message_id, now)
            if e.channel == MessageChannel.BRAND_MESSAGE:
                brand.release_day(session, e.to, e.message_id, now)
    if not provider.capabilities.idempotency:
        direct.finish_many(session, [(e.message_id, o) for e, o in zip(envelopes, outcomes, strict=True)], now)
    return learned


async def call(provider: Provider, envelopes: list[Envelope]) -> list[Outcome]:
    """The provider's answers; a fault in our own code once the request may have left is `uncertain` for
    every message in it (never twice)."""
    try:
        outcomes = await provider.send(envelopes)
    except Exception as exc:  # noqa: BLE001 — any fault here may come after the request left
        return [Outcome(Verdict.UNCERTAIN, "error", f"{type(exc).__name__}: {exc}") for _ in envelopes]
    if len(outcomes) != len(envelopes):
        return [Outcome(Verdict.UNCERTAIN, "error", f"{provider.name} answered {len(outcomes)} of "
                        f"{len(envelopes)} messages") for _ in envelopes]
    return outcomes
