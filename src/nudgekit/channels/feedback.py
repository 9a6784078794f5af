"""What a provider's "this recipient cannot receive" teaches us, written back to profiles so nobody is
messaged at a dead address again (issue #4, item 8):

- push: the token is marked invalid (FCM UNREGISTERED, APNs 410); once all of a person's tokens are invalid
  the lifecycle counts it as an uninstall signal;
- email: a hard bounce suppresses the address;
- text messages: a number the carrier says does not exist is suppressed;
- Kakao: "not a KakaoTalk user / blocked / unreachable" sets the profile's kakao_reachable to false, so later
  messages go straight to the fallback.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nudgekit.channels.provider import Outcome, Verdict
from nudgekit.store.state import Profile, PushToken, Suppression
from nudgekit.vocabulary import MessageChannel, TokenStatus

KAKAO = (MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE)


def remember(session: Session, channel: MessageChannel, to: str, profile_id: str | None, outcome: Outcome,
             now: datetime, *, reason: str | None = None) -> str | None:
    """Record what a send's answer or a later receipt says about the recipient `to` (of `profile_id`, when
    known); returns what was recorded (for logs), or None. `reason` names a suppression other than the
    channel's usual one (a complaint)."""
    if outcome.verdict != Verdict.INVALID_RECIPIENT:
        return None
    detail = f"{outcome.code}: {outcome.detail}" if outcome.code else outcome.detail
    if channel == MessageChannel.PUSH:
        token = session.get(PushToken, to)
        if token is None or token.status == TokenStatus.INVALID.value:
            return None
        if outcome.since is not None and token.updated_at > outcome.since:
            return None  # the app registered the token again after Apple saw it die: it is alive
        token.status, token.status_reason, token.updated_at = TokenStatus.INVALID.value, detail[:255], now
        return "push token invalid"
    if channel in KAKAO:
        query = update(Profile).values(kakao_reachable=False, updated_at=now)
        where = Profile.profile_id == profile_id if profile_id else Profile.phone == to
        session.execute(query.where(where))
        return "unreachable on Kakao"
    if channel in (MessageChannel.EMAIL, MessageChannel.SMS):
        reason = reason or ("hard_bounce" if channel == MessageChannel.EMAIL else "invalid_number")
        address = suppression_key(channel, to)
        if session.get(Suppression, (channel.value, address)) is not None:
            return None
        session.add(Suppression(channel=channel.value, address=address, reason=reason, detail=detail, at=now))
        return f"{channel.value} address suppressed ({reason})"
    return None


def unreachable_on_kakao(session: Session, phone: str, profile_id: str | None = None) -> bool:
    """Whether Kakao said before that this person (or, without a profile, everyone with this number) cannot
    receive KakaoTalk messages: their Kakao messages go straight to the fallback."""
    where = Profile.profile_id == profile_id if profile_id else Profile.phone == phone
    query = select(Profile.profile_id).where(where, Profile.kakao_reachable.is_(False)).limit(1)
    return session.scalar(query) is not None


def suppressed(session: Session, channel: MessageChannel, address: str) -> Suppression | None:
    return session.get(Suppression, (channel.value, suppression_key(channel, address)))


def known_dead(session: Session, channel: MessageChannel, address: str) -> str | None:
    """Why this address must not be tried again on the channel, or None."""
    if channel == MessageChannel.PUSH:
        token = session.get(PushToken, address)
        if token is not None and token.status == TokenStatus.INVALID.value:
            return dead_token(token.status_reason)
        return None
    row = suppressed(session, channel, address)
    return dead_address(channel, address, row) if row else None


def dead_token(reason: str | None) -> str:
    return f"the push token is invalid ({reason})"


def dead_address(channel: MessageChannel, address: str, row: Suppression) -> str:
    return f"{address} is suppressed on {channel.value} ({row.reason}: {row.detail})"


def suppression_key(channel: MessageChannel, address: str) -> str:
    """Email addresses are suppressed whatever their case (every mailbox provider ignores it)."""
    return address.lower() if channel == MessageChannel.EMAIL else address
