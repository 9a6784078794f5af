"""What the rules know of a person, read from the state DB once per gate: consent, addresses, own time zone
and country, whether they are an internal test user."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones
from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.config import Settings
from nudgekit.consent import history, optout
from nudgekit.consent.history import ConsentState
from nudgekit.policy.decision import Person
from nudgekit.store.state import Profile, PushToken, SegmentListMember
from nudgekit.vocabulary import Channel, Purpose, TokenStatus


def load(session: Session, settings: Settings, profile_id: str) -> Person | None:
    profile = session.get(Profile, profile_id)
    if profile is None:
        return None
    tokens = session.scalars(select(PushToken.token).where(
        PushToken.profile_id == profile_id, PushToken.status == TokenStatus.VALID.value,
    ).order_by(PushToken.updated_at.desc()))
    test = session.get(SegmentListMember, (settings.policy.test_list, profile_id)) is not None
    country, zone = where(profile, settings)
    return Person(profile_id, zone, country, consents(session, profile), test, profile.phone, profile.email,
                  tuple(tokens))


def consents(session: Session, profile: Profile) -> dict[tuple[Channel, Purpose], ConsentState]:
    """The person's consent history's last word per channel and purpose — unless a refusal kept against
    their phone number or email address (an 080 call, an SMS reply) came later."""
    held = history.current(session, profile.profile_id)
    for channel, refusal in optout.address_refusals(session, profile.phone, profile.email).items():
        for purpose in (Purpose.ADVERTISING, Purpose.NIGHT):
            state = held.get((channel, purpose))
            if state is None or refusal.at >= state.at:
                held[(channel, purpose)] = dataclasses.replace(refusal, purpose=purpose)
    return held


def where(profile: Profile, settings: Settings) -> tuple[str, ZoneInfo]:
    """The person's country (trait `country`, else their phone number's, else the workspace's) and time zone
    (the profile's, else their phone number's when it has only one, else the workspace's)."""
    number = None
    if profile.phone:
        try:
            number = phonenumbers.parse(profile.phone)
        except phonenumbers.NumberParseException:
            number = None
    trait = str((profile.traits or {}).get("country") or "").strip().upper()
    country = trait if len(trait) == 2 and trait.isalpha() else None
    if country is None and number is not None:
        country = phonenumbers.region_code_for_number(number)
    country = country or settings.policy.jurisdiction
    zone = _zone(profile.timezone)
    if zone is None and number is not None:
        zones = [z for z in phone_zones.time_zones_for_number(number) if _zone(z)]
        if settings.timezone in zones:
            zone = settings.zone
        elif len(zones) == 1:
            zone = ZoneInfo(zones[0])
    return country, zone or settings.zone


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
