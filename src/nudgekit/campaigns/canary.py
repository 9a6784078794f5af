"""Guardrails of a canary send: among the people the canary's messages reached, the share who then withdrew
advertising consent or complained (unsubscribe), turned notifications off (push off), uninstalled the app
(uninstall), and the share of the canary's messages that failed. Read when the canary's wait is over; one
over its threshold pauses the campaign and says which and by how much.

Signals counted for a person are those after their own message was handed over: consent withdrawals (state
DB), `message_complained`, `push_permission_changed` with `enabled: false` and `app_uninstalled` events, and
push tokens a provider reported gone (an uninstall) after the send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select

from nudgekit.campaigns.spec import CampaignSpec
from nudgekit.store.state import ConsentRecord, OutboxMessage, PushToken, in_batches
from nudgekit.vocabulary import ConsentChange, EventName, OutboxState, Purpose, TokenStatus

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace


@dataclass(frozen=True)
class Guardrail:
    name: str
    count: int
    of: int
    limit_percent: float

    @property
    def percent(self) -> float:
        return self.count / self.of * 100 if self.of else 0.0

    @property
    def tripped(self) -> bool:
        return self.of > 0 and self.percent > self.limit_percent

    def as_dict(self) -> dict[str, Any]:
        return {"guardrail": self.name, "count": self.count, "of": self.of, "percent": round(self.percent, 3),
                "limit_percent": self.limit_percent, "tripped": self.tripped}

    def said(self) -> str:
        return f"{self.name} {self.percent:.2f}% ({self.count} of {self.of}) is over {self.limit_percent:g}%"


def _enabled_off(properties: Any) -> bool:
    if isinstance(properties, str | bytes):
        try:
            properties = orjson.loads(properties)
        except orjson.JSONDecodeError:
            return False
    return isinstance(properties, dict) and properties.get("enabled") is False


def read(ws: Workspace, spec: CampaignSpec, occurrence: str) -> list[Guardrail]:
    """The guardrails of the run's messages so far."""
    assert spec.canary is not None
    pattern = f"{spec.name}/-/%/{occurrence}%"
    with ws.sessions() as session:
        rows = session.execute(select(OutboxMessage.profile_id, OutboxMessage.state, OutboxMessage.reason,
                                      OutboxMessage.updated_at).where(
            OutboxMessage.campaign == spec.name, OutboxMessage.key.like(pattern))).all()
        sent: dict[str, datetime] = {}
        failed = 0
        for profile_id, state, reason, at in rows:
            if state == OutboxState.SENT.value and profile_id:
                sent[profile_id] = min(sent.get(profile_id, at), at)
            elif state == OutboxState.FAILED.value and reason != "fell_back":
                failed += 1
        unsubscribed: set[str] = set()
        gone: set[str] = set()
        for chunk in in_batches(sorted(sent)):
            for profile_id, at in session.execute(select(ConsentRecord.profile_id, ConsentRecord.at).where(
                    ConsentRecord.profile_id.in_(chunk), ConsentRecord.change == ConsentChange.WITHDRAWN.value,
                    ConsentRecord.purpose == Purpose.ADVERTISING.value)):
                if at >= sent[profile_id]:
                    unsubscribed.add(profile_id)
            for profile_id, at in session.execute(select(PushToken.profile_id, PushToken.updated_at).where(
                    PushToken.profile_id.in_(chunk), PushToken.status == TokenStatus.INVALID.value)):
                if at >= sent[profile_id]:
                    gone.add(profile_id)
    push_off: set[str] = set()
    if sent:
        since = min(sent.values())
        names = [EventName.MESSAGE_COMPLAINED.value, EventName.PUSH_PERMISSION_CHANGED.value,
                 EventName.APP_UNINSTALLED.value]
        found = ws.events.query(
            "SELECT person_id, event, timestamp, properties FROM events_resolved WHERE event IN (?, ?, ?) "
            "AND timestamp >= ? AND person_id IN (SELECT UNNEST(?::VARCHAR[]))", [*names, since, sorted(sent)])
        for event in found:
            person = event["person_id"]
            if event["timestamp"] < sent[person]:
                continue
            if event["event"] == EventName.MESSAGE_COMPLAINED.value:
                unsubscribed.add(person)
            elif event["event"] == EventName.APP_UNINSTALLED.value:
                gone.add(person)
            elif _enabled_off(event["properties"]):
                push_off.add(person)
    canary = spec.canary
    reached = len(sent)
    return [Guardrail("unsubscribe", len(unsubscribed), reached, canary.max_unsubscribe_percent),
            Guardrail("push_off", len(push_off), reached, canary.max_push_off_percent),
            Guardrail("uninstall", len(gone), reached, canary.max_uninstall_percent),
            Guardrail("failure", failed, reached + failed, canary.max_failure_percent)]
