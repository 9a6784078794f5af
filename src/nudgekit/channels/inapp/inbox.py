"""Each person's inbox of in-app messages and content cards: the `inbox` provider puts them there, the API
serves them to the app, and the app's reports (shown, clicked, dismissed) come back here.

An in-app message is served until the app reports it shown (it is shown once), dismissed or expired; a card
stays in the feed, marked viewed or clicked, until it is dismissed or expires. A person is whoever the app
names — a user id, an anonymous id, or both — including the anonymous visitor they were before signing in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nudgekit.channels.inapp.message import CardMessage, InappMessage, expiry, served
from nudgekit.channels.provider import Capabilities, Envelope, Outcome, Verdict
from nudgekit.profiles.identify import anonymous_profile_id
from nudgekit.store.state import InboxItem, Profile
from nudgekit.vocabulary import MessageChannel

Report = Literal["impression", "click", "dismiss"]
REPORTS: tuple[Report, ...] = ("impression", "click", "dismiss")
EVENTS = {(MessageChannel.INAPP, "impression"): "In-App Message Shown",
          (MessageChannel.INAPP, "click"): "In-App Message Clicked",
          (MessageChannel.INAPP, "dismiss"): "In-App Message Dismissed",
          (MessageChannel.CARD, "impression"): "Content Card Viewed",
          (MessageChannel.CARD, "click"): "Content Card Clicked",
          (MessageChannel.CARD, "dismiss"): "Content Card Dismissed"}
"""The track events a report becomes in the event store (for measurement and triggers)."""
FEED_LIMIT = 50


def user_token(secret: str, user_id: str) -> str:
    """The token your backend gives the signed-in app: HMAC-SHA256 of the user id, hex."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def token_matches(secret: str, user_id: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(user_token(secret, user_id), token.strip().lower())


class InboxProvider:
    """Delivers by putting the message in the recipient's inbox; a repeated message id is kept once."""

    name = "inbox"
    capabilities = Capabilities(channels=frozenset({MessageChannel.INAPP, MessageChannel.CARD}), batch_size=1000,
                                idempotency=True, charges=False)

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        return [self._deliver(envelope) for envelope in batch]

    def _deliver(self, envelope: Envelope) -> Outcome:
        message = envelope.message
        assert isinstance(message, InappMessage | CardMessage)
        now = self.clock()
        row = InboxItem(message_id=envelope.message_id, channel=envelope.channel.value, profile_id=envelope.to,
                        body=served(message), ad=message.ad, pinned=isinstance(message, CardMessage) and message.pinned,
                        created_at=now, expires_at=expiry(message.ttl_seconds, now))
        try:
            with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            with self.sessions() as session:
                kept = session.get(InboxItem, envelope.message_id)
            if kept is None:
                raise
            if (kept.profile_id, kept.channel, kept.body) != (row.profile_id, row.channel, row.body):
                return Outcome(Verdict.PERMANENT, "message_id_taken", f"the message id {envelope.message_id} is "
                               "already in an inbox with another recipient or content: give this message its own id")
            return Outcome(Verdict.ACCEPTED, detail="already in the inbox", provider_message_id=envelope.message_id)
        return Outcome(Verdict.ACCEPTED, detail="in the inbox", provider_message_id=envelope.message_id)

    async def aclose(self) -> None:
        return None


def people(session: Session, user_id: str | None, anonymous_id: str | None) -> set[str]:
    """Every profile id the app's ids stand for: the user, visitor profiles merged into the user, and the
    visitor — unless that visitor became someone else (a shared device where the first user never signed
    out: the second user must not see the first one's messages)."""
    found: set[str] = set()
    if user_id:
        found.add(user_id)
        found.update(session.scalars(select(Profile.profile_id).where(Profile.merged_into == user_id)))
    if anonymous_id:
        visitor = anonymous_profile_id(anonymous_id)
        merged = session.scalar(select(Profile.merged_into).where(Profile.profile_id == visitor))
        if merged is None or merged == user_id:
            found.add(visitor)
        if merged is not None and user_id is None:
            found.add(merged)
    return found


def feed(session: Session, channel: MessageChannel, profiles: set[str], now: datetime,
         limit: int = FEED_LIMIT) -> list[dict[str, Any]]:
    """What the app shows now: in-app messages not yet shown, oldest first; cards pinned first, newest first."""
    if not profiles:
        return []
    query = select(InboxItem).where(InboxItem.channel == channel.value, InboxItem.profile_id.in_(profiles),
                                    InboxItem.expires_at > now, InboxItem.dismissed_at.is_(None))
    if channel == MessageChannel.INAPP:
        query = query.where(InboxItem.shown_at.is_(None)).order_by(InboxItem.created_at, InboxItem.message_id)
    else:
        query = query.order_by(InboxItem.pinned.desc(), InboxItem.created_at.desc(), InboxItem.message_id)
    return [_item(row) for row in session.scalars(query.limit(limit))]


def _item(row: InboxItem) -> dict[str, Any]:
    item = {"id": row.message_id, **row.body, "created_at": row.created_at.isoformat(),
            "expires_at": row.expires_at.isoformat()}
    if row.channel == MessageChannel.CARD.value:
        item |= {"viewed": row.shown_at is not None, "clicked": row.clicked_at is not None}
    return item


@dataclass(frozen=True)
class Reported:
    item: InboxItem
    button: dict[str, Any] | None
    """The button pressed, as the app was given it."""
    first: bool
    """Whether this is the first report of its kind for the item (a retried report changes nothing)."""
    at: datetime
    """When it was first reported."""


class NotInInbox(LookupError):
    pass


def report(session: Session, message_id: str, kind: Report, profiles: set[str], now: datetime,
           button: int | None = None) -> Reported:
    """Mark what the app reports; raises NotInInbox for an item that is not this person's."""
    row = session.get(InboxItem, message_id)
    if row is None or row.profile_id not in profiles:
        raise NotInInbox(message_id)
    pressed = None
    if button is not None:
        buttons = row.body.get("buttons") or []
        if kind != "click" or not 1 <= button <= len(buttons):
            raise ValueError(f"button {button} is not one of this message's {len(buttons)} buttons (1-based)")
        pressed = buttons[button - 1]
        if pressed.get("action") == "consent" and (row.expires_at <= now or row.dismissed_at is not None):
            raise ValueError("this message expired or was dismissed: a consent cannot be given through it any more")
    column = {"impression": InboxItem.shown_at, "click": InboxItem.clicked_at, "dismiss": InboxItem.dismissed_at}[kind]
    earlier = getattr(row, column.key)
    first = bool(session.execute(update(InboxItem).where(InboxItem.message_id == message_id, column.is_(None))
                                 .values({column.key: now})).rowcount)
    if kind == "click" and row.shown_at is None:
        session.execute(update(InboxItem).where(InboxItem.message_id == message_id, InboxItem.shown_at.is_(None))
                        .values(shown_at=now))
    return Reported(row, pressed, first, now if first or earlier is None else earlier)

