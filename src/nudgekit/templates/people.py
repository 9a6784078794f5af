"""What a template knows of each person, made for a batch at once from the people the policy chain loaded:
their traits, plus the values nudgekit keeps about them under fixed names.

`user` is the person's traits (`user.name`, `user.address.city`) with these names set by nudgekit (they win
over a trait of the same name): `id` (the user id, else the anonymous profile's id), `email`, `phone`,
`language`, `stage` (lifecycle stage: new, current, power, resurrected, churn, uninstall), `stage_since`, and
`reachable` (`push`, `sms`, `email`, `kakao`: whether there is an address to reach them on)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.config import Settings
from nudgekit.policy.decision import Person
from nudgekit.store.state import LifecycleStage, in_batches


@dataclass(frozen=True)
class Reader:
    """One person as templates read them."""

    profile_id: str
    user: Mapping[str, Any]
    language: str | None
    zone: ZoneInfo


def workspace_values(settings: Settings) -> dict[str, Any]:
    """`workspace` in a template: the sender's name (brand) and numbers."""
    sender = settings.sender
    return {"brand": sender.name or settings.brand, "optout_080": sender.optout_080,
            "kakao_channel": sender.kakao_channel, "email_from": sender.email_from,
            "public_url": settings.public_url, "app_scheme": settings.links.app_scheme,
            "web_url": settings.links.web_url}


def readers(session: Session, persons: Mapping[str, Person]) -> dict[str, Reader]:
    """The readers of a batch, from the people the policy chain loaded (policy.people) and their lifecycle
    stages (one query)."""
    stages = {}
    for chunk in in_batches(sorted(persons)):
        stages.update({row.profile_id: row for row in session.execute(select(
            LifecycleStage.profile_id, LifecycleStage.stage, LifecycleStage.since).where(
            LifecycleStage.profile_id.in_(chunk)))})
    found = {}
    for pid, p in persons.items():
        stage = stages.get(pid)
        user = {**p.traits, "id": p.user_id or pid, "email": p.email, "phone": p.phone, "language": p.language,
                "stage": stage.stage if stage else None, "stage_since": stage.since if stage else None,
                "reachable": {"push": bool(p.tokens), "sms": p.phone is not None, "email": p.email is not None,
                              "kakao": p.phone is not None and p.kakao_reachable is not False}}
        found[pid] = Reader(pid, user, p.language or _trait_language(p.traits), p.zone)
    return found


def _trait_language(traits: Mapping[str, Any] | None) -> str | None:
    """An SDK that sends the language as a trait (`language`, `locale`) instead of the context's locale."""
    for name in ("language", "locale"):
        value = (traits or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
