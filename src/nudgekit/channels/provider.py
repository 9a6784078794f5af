"""The one small interface every provider module implements, and the words for what a provider answered.

A provider translates: it turns checked messages into its vendor's request and the vendor's answer into an
`Outcome`. It decides nothing else — retries, rate limits, fallback and the outbox belong to delivery.

:TRICKY: `Verdict.UNCERTAIN` is the answer that matters most for "never twice": the request may have reached
the vendor (a timeout after the body was sent, NHN's 2000, Kakao's 3005). Sending it again risks a duplicate
on the user's phone, so delivery must not resend it; it waits for a receipt or gives up.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import BaseModel

from nudgekit.vocabulary import MessageChannel


class Verdict(StrEnum):
    """What one message's send came to."""

    ACCEPTED = "accepted"
    """The vendor took the message (delivery receipts come later)."""
    RETRYABLE = "retryable"
    """A passing fault (server busy, connection refused before the request): the same message may go again."""
    RATE_LIMITED = "rate_limited"
    """The vendor asked us to slow down; `retry_after` says for how long when it said so."""
    PERMANENT = "permanent"
    """Our configuration or the content is wrong; sending again cannot help (an operator must act)."""
    INVALID_RECIPIENT = "invalid_recipient"
    """This address, number or token cannot receive: remember it, never retry it on this channel."""
    UNCERTAIN = "uncertain"
    """It may have been delivered (see the module's :TRICKY:): never resend."""


@dataclass(frozen=True)
class Outcome:
    """A provider's answer about one message, already classified."""

    verdict: Verdict
    code: str | None = None
    """The vendor's own code (HTTP status, SMTP reply, NHN resultCode, FCM errorCode ...)."""
    detail: str = ""
    """The vendor's words, kept for the operator."""
    provider_message_id: str | None = None
    retry_after: float | None = None
    """Seconds to wait, when the vendor said (Retry-After) or its documentation fixes it."""
    fallback: bool = False
    """The recipient is unreachable on this channel but a fallback channel may reach them (Kakao -> SMS)."""
    since: datetime | None = None
    """For an invalid recipient, when the vendor says it stopped being valid (APNs' 410 timestamp): an
    address registered again after that is not marked dead."""

    @property
    def sent(self) -> bool:
        return self.verdict == Verdict.ACCEPTED

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "code": self.code, "detail": self.detail,
                "provider_message_id": self.provider_message_id, "retry_after": self.retry_after,
                "fallback": self.fallback, "since": self.since.isoformat() if self.since else None}


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, read by delivery to shape batches and pace sends."""

    channels: frozenset[MessageChannel]
    batch_size: int = 1
    """How many messages one call may carry."""
    idempotency: bool = False
    """Whether the vendor itself drops a repeated message id (so a retry after a timeout is safe)."""
    rate_per_second: float | None = None
    """The vendor's documented ceiling, when it has one."""
    charges: bool = True
    """Whether a send costs money, so the prepaid balance pays for it (the sandbox sends nothing)."""


@dataclass(frozen=True)
class Envelope:
    """One checked message to one recipient, as it is handed to a provider."""

    message_id: str
    """Our id, fixed before any I/O; providers that support it pass it on as the idempotency key."""
    channel: MessageChannel
    to: str
    """The address on this channel: phone number, email address, push token, URL."""
    message: BaseModel
    type: str | None = None
    """The type the check chose (SMS / LMS / MMS ...)."""
    profile_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Delivery(StrEnum):
    """What a delivery receipt says became of a message the vendor accepted."""

    PENDING = "pending"
    """No final result yet (handed to the carrier or to Kakao): ask again later."""
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """The vendor gave no final result in time, or says it cannot know (NHN 2000 / Kakao 3005)."""


@dataclass(frozen=True)
class Sent:
    """A message a vendor accepted, as the receipt poll asks about it."""

    message_id: str
    channel: MessageChannel
    provider_message_id: str
    type: str | None = None
    """SMS / LMS / MMS: NHN keeps their results under different paths."""
    fallback_requested: bool = False
    """A Kakao message the vendor was asked to replace with a text message when Kakao cannot deliver."""


@dataclass(frozen=True)
class Receipt:
    """A vendor's later word on one message."""

    delivery: Delivery
    outcome: Outcome
    """The vendor's result code classified like a send's answer: INVALID_RECIPIENT teaches the profile."""
    at: datetime | None = None
    """When the vendor says it was delivered or failed."""
    fallback: Delivery | None = None
    """When the vendor itself sent the fallback text message (a Kakao message that could not be delivered):
    what became of that."""


class ReceiptSource(Protocol):
    """A provider whose vendor reports delivery later (text messages, Kakao)."""

    async def receipts(self, sent: list[Sent]) -> dict[str, Receipt]:
        """Receipts by our message id, for the messages the vendor reports on; a message missing from the
        answer has no news (try again later). Raises ReceiptsUnavailable when the vendor cannot be asked."""
        ...


class ReceiptsUnavailable(Exception):
    """The vendor could not be asked for receipts now (unreachable, refused): nothing is learned."""


class Provider(Protocol):
    """Send one message or a batch; never raise for a vendor's answer, only for a fault in our own code."""

    name: str
    capabilities: Capabilities

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        """One outcome per envelope, in order."""
        ...

    async def aclose(self) -> None: ...


def failed_request(vendor: str, exc: Exception) -> Outcome:
    """A request that raised instead of answering: a timeout once the request had left may have been taken
    (uncertain); a connection that never opened, or a pool or connect timeout, sent nothing (retryable)."""
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return Outcome(Verdict.UNCERTAIN, "timeout", f"{vendor}: {type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return Outcome(Verdict.RETRYABLE, "timeout", f"{vendor}: {type(exc).__name__}")
    return Outcome(Verdict.RETRYABLE, "unreachable", f"{vendor}: {exc!r}")


def refused_request(status: int, code: str, detail: str, retry_after: str | None, now: datetime) -> Outcome:
    """A whole request answered with an HTTP error: 429 slow down, 503 nothing was taken, other 5xx may have
    been taken (uncertain), 4xx our request or configuration is wrong."""
    if status == 429:
        return Outcome(Verdict.RATE_LIMITED, code, detail, retry_after=retry_after_seconds(retry_after, now))
    if status == 503:
        return Outcome(Verdict.RETRYABLE, code, detail)
    if status >= 500:
        return Outcome(Verdict.UNCERTAIN, code, detail)
    return Outcome(Verdict.PERMANENT, code, detail)


class Refused(Exception):
    """A message a provider refuses before making its request (more images than it carries, an upload that
    failed): carries the outcome to report. Raised and caught inside a provider module only."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


def read_image(path: Path) -> bytes:
    """An image file read again at send time: it may have changed or gone since the check."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Refused(Outcome(Verdict.PERMANENT, "image_unreadable", f"cannot read {path}: {exc}")) from None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Read an HTTP Retry-After header: seconds, or an HTTP date (RFC 9110 10.2.3). Unreadable -> None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
