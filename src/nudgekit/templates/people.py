"""What a template knows of each person, read from the state DB for a batch of people at once: their traits,
plus the values nudgekit keeps about them under fixed names.

`user` is the person's traits (`user.name`, `user.address.city`) with these names set by nudgekit (they win
over a trait of the same name): `id` (the user id, else the anonymous profile's id), `email`, `phone`,
`language`, `stage` (lifecycle stage: new, current, power, resurrected, churn, uninstall), `stage_since`, and
`reachable` (`push`, `sms`, `email`, `kakao`: whether there is an address to reach them on)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.config import Settings
from nudgekit.policy.people import where
from nudgekit.store.state import LifecycleStage, Profile, PushToken, in_batches
from nudgekit.vocabulary import TokenStatus


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
            "public_url": settings.public_url}


def load_many(session: Session, settings: Settings, profile_ids: Iterable[str]) -> dict[str, Reader]:
    """The readers of a batch in three queries; ids the workspace does not know are left out."""
    ids = sorted(set(profile_ids))
    profiles, stages, tokens = [], {}, defaultdict(int)
    for chunk in in_batches(ids):
        profiles += session.execute(select(
            Profile.profile_id, Profile.user_id, Profile.traits, Profile.phone, Profile.email, Profile.language,
            Profile.timezone, Profile.kakao_reachable).where(Profile.profile_id.in_(chunk))).all()
        stages.update({row.profile_id: row for row in session.execute(select(
            LifecycleStage.profile_id, LifecycleStage.stage, LifecycleStage.since).where(
            LifecycleStage.profile_id.in_(chunk)))})
        for owner in session.scalars(select(PushToken.profile_id).where(
                PushToken.profile_id.in_(chunk), PushToken.status == TokenStatus.VALID.value)):
            tokens[owner] += 1
    readers = {}
    for p in profiles:
        stage = stages.get(p.profile_id)
        user = {**(p.traits or {}), "id": p.user_id or p.profile_id, "email": p.email, "phone": p.phone,
                "language": p.language, "stage": stage.stage if stage else None,
                "stage_since": stage.since if stage else None,
                "reachable": {"push": tokens[p.profile_id] > 0, "sms": p.phone is not None,
                              "email": p.email is not None,
                              "kakao": p.phone is not None and p.kakao_reachable is not False}}
        language = p.language or _trait_language(p.traits)
        readers[p.profile_id] = Reader(p.profile_id, user, language, where(p, settings)[1])
    return readers


def _trait_language(traits: Mapping[str, Any] | None) -> str | None:
    """An SDK that sends the language as a trait (`language`, `locale`) instead of the context's locale."""
    for name in ("language", "locale"):
        value = (traits or {}).get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
