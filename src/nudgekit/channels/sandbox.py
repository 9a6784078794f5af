"""The sandbox provider, the demo's default: it records every message in the state DB instead of sending it,
so a person can see exactly what would have gone out (`nudge outbox show`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nudgekit.channels.provider import Capabilities, Envelope, Outcome, Verdict
from nudgekit.store.state import SandboxMessage
from nudgekit.vocabulary import MessageChannel


class SandboxProvider:
    name = "sandbox"
    capabilities = Capabilities(channels=frozenset(MessageChannel), batch_size=1000, idempotency=True,
                                charges=False)

    def __init__(self, sessions: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.clock = clock

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        return [self._record(envelope) for envelope in batch]

    def _record(self, envelope: Envelope) -> Outcome:
        row = SandboxMessage(message_id=envelope.message_id, channel=envelope.channel.value, type=envelope.type,
                             recipient=envelope.to, profile_id=envelope.profile_id,
                             body=_body(envelope),
                             recorded_at=self.clock())
        try:
            with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            with self.sessions() as session:
                known = session.scalar(select(SandboxMessage.id).where(SandboxMessage.message_id == envelope.message_id))
            if known is None:
                raise
            return Outcome(Verdict.ACCEPTED, detail="already recorded", provider_message_id=f"sandbox-{known}")
        return Outcome(Verdict.ACCEPTED, detail="recorded, not sent", provider_message_id=f"sandbox-{row.id}")

    async def aclose(self) -> None:
        return None


def _body(envelope: Envelope) -> dict[str, Any]:
    """The message as written, with what the recipient would read when it differs (an AlimTalk's filled
    template) and the fallback text message a provider would be given."""
    body = envelope.message.model_dump(mode="json", exclude_none=True)
    if envelope.meta:
        body["rendered"] = envelope.meta
    return body


def recorded(sessions: sessionmaker[Session], *, channel: MessageChannel | None = None, to: str | None = None,
             profile_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest recorded messages, newest first."""
    query = select(SandboxMessage).order_by(SandboxMessage.id.desc()).limit(limit)
    if channel is not None:
        query = query.where(SandboxMessage.channel == channel.value)
    if to is not None:
        query = query.where(SandboxMessage.recipient == to)
    if profile_id is not None:
        query = query.where(SandboxMessage.profile_id == profile_id)
    with sessions() as session:
        return [{"id": r.id, "message_id": r.message_id, "channel": r.channel, "type": r.type, "to": r.recipient,
                 "profile_id": r.profile_id, "recorded_at": r.recorded_at.isoformat(), "message": r.body}
                for r in session.scalars(query)]
