"""What the rules know of a person, read from the state DB once per gate (a batch of people at once):
consent, addresses, own time zone and country, whether they are an internal test user."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones
from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.config import Settings
from nudgekit.consent import history, optout
from nudgekit.consent.history import ConsentState
from nudgekit.policy.decision import Person
from nudgekit.store.state import ConsentRecord, Profile, PushToken, SegmentListMember, in_batches
from nudgekit.vocabulary import Channel, Purpose, TokenStatus


def load(session: Session, settings: Settings, profile_id: str) -> Person | None:
    return load_many(session, settings, [profile_id]).get(profile_id)


def load_many(session: Session, settings: Settings, profile_ids: Iterable[str]) -> dict[str, Person]:
    """The people of a batch, in five queries whatever its size; ids the workspace does not know are left out."""
    ids = sorted(set(profile_ids))
    profiles, tokens, tests = [], defaultdict(list), set()
    records: dict[str, list[Any]] = defaultdict(list)
    for chunk in in_batches(ids):
        profiles += session.execute(select(
            Profile.profile_id, Profile.phone, Profile.email, Profile.timezone, Profile.traits, Profile.user_id,
            Profile.language, Profile.kakao_reachable).where(Profile.profile_id.in_(chunk))).all()
        for owner, token in session.execute(select(PushToken.profile_id, PushToken.token).where(
                PushToken.profile_id.in_(chunk), PushToken.status == TokenStatus.VALID.value,
        ).order_by(PushToken.updated_at.desc())):
            tokens[owner].append(token)
        tests.update(session.scalars(select(SegmentListMember.profile_id).where(
            SegmentListMember.list_name == settings.policy.test_list, SegmentListMember.profile_id.in_(chunk))))
        for rec in session.execute(select(ConsentRecord.profile_id, ConsentRecord.channel, ConsentRecord.purpose,
                                          ConsentRecord.change, ConsentRecord.at, ConsentRecord.source).where(
                ConsentRecord.profile_id.in_(chunk)).order_by(ConsentRecord.at, ConsentRecord.id)):
            records[rec.profile_id].append(rec)
    refusals = optout.refusals_of(session, [a for p in profiles for a in (p.phone, p.email) if a])
    people = {}
    for profile in profiles:
        country, zone = where(profile, settings)
        held = history.states(records[profile.profile_id])
        people[profile.profile_id] = Person(
            profile.profile_id, zone, country, _with_refusals(held, refusals, profile.phone, profile.email),
            profile.profile_id in tests, profile.phone, profile.email, tuple(tokens[profile.profile_id]),
            profile.user_id, profile.language, profile.kakao_reachable, profile.traits or {})
    return people


def _with_refusals(held: dict[tuple[Channel, Purpose], ConsentState], refusals: dict[tuple[str, Channel], ConsentState],
                   phone: str | None, email: str | None) -> dict[tuple[Channel, Purpose], ConsentState]:
    """The person's consent history's last word per channel and purpose — unless a refusal kept against
    their phone number or email address (an 080 call, an SMS reply) came later."""
    for channel, refusal in optout.refusals_for(refusals, phone, email).items():
        for purpose in (Purpose.ADVERTISING, Purpose.NIGHT):
            state = held.get((channel, purpose))
            if state is None or refusal.at >= state.at:
                held[(channel, purpose)] = dataclasses.replace(refusal, purpose=purpose)
    return held


KOREAN_MOBILE = re.compile(r"\+8210\d{7,8}")
"""A Korean mobile number as stored (E.164): in Korea, on Korean time, known without parsing it."""
SEOUL = ("KR", ("Asia/Seoul",))


def where(profile: Any, settings: Settings) -> tuple[str, ZoneInfo]:
    """The person's country (trait `country`, else their phone number's, else the workspace's) and time zone
    (the profile's, else their phone number's when it has only one, else the workspace's)."""
    trait = str((profile.traits or {}).get("country") or "").strip().upper()
    country = trait if len(trait) == 2 and trait.isalpha() else None
    zone = _zone(profile.timezone)
    if (country is None or zone is None) and profile.phone:
        region, zones = _phone_place(profile.phone)
        country = country or region
        if zone is None:
            found = [z for z in zones if _zone(z)]
            if settings.timezone in found:
                zone = settings.zone
            elif len(found) == 1:
                zone = ZoneInfo(found[0])
    return country or settings.policy.jurisdiction, zone or settings.zone


def _phone_place(phone: str) -> tuple[str | None, tuple[str, ...]]:
    """The country a phone number belongs to and the time zones it may be in."""
    if KOREAN_MOBILE.fullmatch(phone):
        return SEOUL
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None, ()
    return phonenumbers.region_code_for_number(number), tuple(phone_zones.time_zones_for_number(number))


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
