"""A small shop for campaign tests: people with phones, some with push tokens and consents, a lifecycle run,
and a folder to write campaign files into."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from policy.helpers import SENDER
from sqlalchemy import func, select

from nudgekit.store.state import OutboxMessage
from nudgekit.workspace import Workspace

NOON_KST = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
CONSENTED = datetime(2026, 1, 5, tzinfo=UTC)


def open_shop(path: Path, state_url: str, clock: Any, **settings: Any) -> Workspace:
    ws, _ = Workspace.init(path, database_url=state_url, clock=clock, sender=SENDER,
                           policy={"control_group_percent": 0.0, **settings.pop("policy", {})},
                           links=settings.pop("links", {"domains": ["shop.example"]}), **settings)
    return ws


def shoppers(ws: Workspace, count: int, *, push_every: int = 2, sms_consent_every: int = 1,
             push_consent_every: int = 1) -> list[str]:
    """u000..: every `push_every`-th has a push token; consents to SMS / push advertising every n-th."""
    users = [f"u{i:03d}" for i in range(count)]
    for i, user in enumerate(users):
        traits: dict[str, Any] = {"phone": f"010-3{i:03d}-{i:04d}", "name": f"고객{i}", "city": "서울"}
        if i % push_every == 0:
            traits["push_tokens"] = [{"token": f"tok-{i:03d}-" + "x" * 20, "platform": "android"}]
        ws.identify(user, traits)
    ws.flush()
    for i, user in enumerate(users):
        if i % sms_consent_every == 0:
            ws.set_consent(user, channel="sms", purpose="advertising", granted=True, source="signup_form",
                           at=CONSENTED)
        if i % push_consent_every == 0:
            ws.set_consent(user, channel="push", purpose="advertising", granted=True, source="signup_form",
                           at=CONSENTED)
    return users


def write(folder: Path, name: str, spec: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def campaign(name: str, **overrides: Any) -> dict[str, Any]:
    """An advertising campaign to everyone who has been seen: push if they can get it, else SMS."""
    spec: dict[str, Any] = {
        "kind": "campaign", "name": name, "purpose": "advertising",
        "audience": {"segment": {"where": {"trait": "city", "op": "eq", "value": "서울"}}, "max_percent": 100},
        "channels": ["push", "sms"],
        "messages": {"push": {"title": "{{ user.name }}님, 겨울 세일", "text": "최대 30% 할인"},
                     "sms": {"text": "{{ user.name }}님, 겨울 세일 최대 30% 할인 https://shop.example/sale"}},
        "goal": {"events": ["order_completed"], "window_days": 3},
    }
    spec.update(overrides)
    return spec


def outbox_count(ws: Workspace, campaign_name: str) -> int:
    with ws.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.campaign == campaign_name)) or 0)
