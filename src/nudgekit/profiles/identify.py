"""Identify: validate a profile update completely, then write it in one go (never half a profile).

Reserved traits become typed columns and contact points; everything else is a
custom trait. The `consent` trait carries consent changes:

    "consent": {
        "sms":   {"advertising": true, "night": false},
        "push":  {"advertising": true},
        "email": false,                    # shorthand for {"advertising": false}
        "source": "signup_form",           # optional; default "api"
        "at": "2026-11-22T09:30:00+09:00"  # optional; default the message timestamp
    }
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nudgekit.consent import history
from nudgekit.consent.history import ConsentUpdate
from nudgekit.profiles.contacts import (
    FieldError,
    normalize_email,
    normalize_language,
    normalize_phone,
    normalize_timezone,
    to_bool,
)
from nudgekit.profiles.traits import TraitRegistry, TraitType
from nudgekit.store.state import ConsentRecord, Profile, PushToken, in_batches
from nudgekit.vocabulary import Channel, ConsentChange, ConsentSource, Platform, Purpose, TokenStatus

ATTRIBUTION = ("utm_source", "utm_medium", "utm_campaign", "install_source")
RESERVED = {"phone", "email", "language", "timezone", "kakao_reachable", "consent", "push_tokens", *ATTRIBUTION}
CAMPAIGN_CONTEXT = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign"}


def anonymous_profile_id(anonymous_id: str) -> str:
    return f"anon:{anonymous_id}"


@dataclass(frozen=True)
class TokenUpdate:
    token: str
    platform: Platform
    app_id: str | None = None
    device_id: str | None = None
    status: TokenStatus = TokenStatus.VALID


@dataclass
class IdentifyPlan:
    """A validated identify, ready to write."""

    user_id: str | None
    anonymous_id: str | None
    at: datetime
    message_id: str | None
    columns: dict[str, Any] = field(default_factory=dict)
    first_touch: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    new_trait_types: dict[str, TraitType] = field(default_factory=dict)
    consents: list[ConsentUpdate] = field(default_factory=list)
    tokens: list[TokenUpdate] = field(default_factory=list)


@dataclass(frozen=True)
class IdentifyResult:
    profile_id: str
    created: bool
    merged_from: str | None
    consents_recorded: int


def _parse_time(value: Any, field_name: str, zone: tzinfo | None = None) -> datetime:
    """An ISO time; without an offset it is read in `zone` (the workspace's), as everywhere else."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise FieldError(field_name, f'"{value}" is not a date and time; use e.g. 2026-11-22T09:30:00+09:00') from None
    if moment.tzinfo is None:
        if zone is None:
            raise FieldError(field_name, f'"{value}" has no time zone; add one, e.g. +09:00')
        moment = moment.replace(tzinfo=zone)
    return moment


CONSENT_CLOCK_SKEW = timedelta(minutes=10)


EARLIEST_CONSENT = datetime(2000, 1, 1, tzinfo=UTC)


def check_consent_time(at: datetime, now: datetime, field: str) -> None:
    """A consent dated in the future would outrank every real change until then: refuse it (and typos of 1900)."""
    if at > now + CONSENT_CLOCK_SKEW:
        raise FieldError(field, f"{at.isoformat()} is in the future; a consent change is recorded when it happened")
    if at < EARLIEST_CONSENT:
        raise FieldError(field, f"{at.isoformat()} is before the year 2000; check the date")


def parse_consent(value: Any, default_at: datetime, default_source: ConsentSource,
                  now: datetime | None = None, zone: tzinfo | None = None) -> list[ConsentUpdate]:
    if not isinstance(value, dict):
        raise FieldError("traits.consent", 'must be an object like {"sms": {"advertising": true}}')
    source = default_source
    if "source" in value:
        try:
            source = ConsentSource(str(value["source"]))
            if source == ConsentSource.MERGE:
                raise ValueError
        except ValueError:
            known = ", ".join(s.value for s in ConsentSource)
            raise FieldError("traits.consent.source", f'unknown source "{value["source"]}"; use one of {known}') from None
    echo = not value.get("at")
    if echo:  # the message's own time; a device clock running fast must not date consent in the future
        at = min(default_at, now) if now else default_at
    else:
        at = _parse_time(value["at"], "traits.consent.at", zone)
        if now is not None:
            check_consent_time(at, now, "traits.consent.at")
    evidence = str(value["evidence"]) if value.get("evidence") else None
    updates: list[ConsentUpdate] = []
    for key, choice in value.items():
        if key in ("source", "at", "evidence"):
            continue
        try:
            channel = Channel(key)
        except ValueError:
            known = ", ".join(c.value for c in Channel)
            raise FieldError(f"traits.consent.{key}", f"unknown channel; use one of {known}") from None
        purposes = choice if isinstance(choice, dict) else {Purpose.ADVERTISING.value: choice}
        for purpose_name, granted in purposes.items():
            try:
                purpose = Purpose(purpose_name)
            except ValueError:
                raise FieldError(
                    f"traits.consent.{key}.{purpose_name}", "unknown purpose; use advertising or night"
                ) from None
            flag = to_bool(granted, f"traits.consent.{key}.{purpose_name}")
            change = ConsentChange.GRANTED if flag else ConsentChange.WITHDRAWN
            updates.append(ConsentUpdate(channel, purpose, change, at, source, evidence, echo))
    return updates


def _parse_tokens(value: Any) -> list[TokenUpdate]:
    items = value if isinstance(value, list) else [value]
    tokens = []
    for i, item in enumerate(items):
        where = f"traits.push_tokens[{i}]"
        if not isinstance(item, dict) or not item.get("token"):
            raise FieldError(where, 'each push token needs {"token": ..., "platform": "ios|android|web"}')
        tokens.append(_token(item, where))
    return tokens


def _token(item: dict[str, Any], where: str) -> TokenUpdate:
    try:
        platform = Platform(str(item.get("platform") or item.get("type") or "").lower())
    except ValueError:
        raise FieldError(f"{where}.platform", f'"{item.get("platform")}" is not ios, android or web') from None
    try:
        status = TokenStatus(str(item.get("status") or "valid").lower())
    except ValueError:
        raise FieldError(f"{where}.status", "use valid or invalid") from None
    return TokenUpdate(str(item["token"]), platform, item.get("app_id"), item.get("device_id"), status)


def prepare(
    *,
    user_id: str | None,
    anonymous_id: str | None,
    traits: dict[str, Any],
    context: dict[str, Any],
    at: datetime,
    message_id: str | None,
    registry: TraitRegistry,
    phone_region: str,
    consent_source: ConsentSource = ConsentSource.API,
    now: datetime | None = None,
    zone: tzinfo | None = None,
) -> IdentifyPlan:
    """Check everything an identify says; raise FieldError on the first thing we cannot store."""
    if not user_id and not anonymous_id:
        raise FieldError("userId", "every message needs a userId or an anonymousId")
    plan = IdentifyPlan(user_id or None, anonymous_id or None, at, message_id)
    columns = plan.columns
    if traits.get("phone") not in (None, ""):
        columns["phone"] = normalize_phone(traits["phone"], phone_region, "traits.phone")
    if traits.get("email") not in (None, ""):
        columns["email"] = normalize_email(traits["email"], "traits.email")
    language = traits.get("language") or context.get("locale")
    if language:
        columns["language"] = normalize_language(language, "traits.language")
    user_zone = traits.get("timezone") or context.get("timezone")
    if user_zone:
        columns["timezone"] = normalize_timezone(user_zone, "traits.timezone")
    if traits.get("kakao_reachable") is not None:
        columns["kakao_reachable"] = to_bool(traits["kakao_reachable"], "traits.kakao_reachable")
    for name in ATTRIBUTION:
        if traits.get(name) not in (None, ""):
            columns[name] = str(traits[name])
    campaign = context.get("campaign") if isinstance(context.get("campaign"), dict) else {}
    for key, column in CAMPAIGN_CONTEXT.items():
        if campaign.get(key) and column not in columns:
            plan.first_touch[column] = str(campaign[key])
    if traits.get("consent") is not None:
        plan.consents = parse_consent(traits["consent"], at, consent_source, now, zone)
    if traits.get("push_tokens") is not None:
        plan.tokens = _parse_tokens(traits["push_tokens"])
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    if device.get("token"):
        app = context.get("app") if isinstance(context.get("app"), dict) else {}
        item = {"token": device["token"], "platform": device.get("type"), "device_id": device.get("id"),
                "app_id": app.get("namespace")}
        plan.tokens.append(_token(item, "context.device"))
    custom = {k: v for k, v in traits.items() if k not in RESERVED}
    plan.traits, plan.new_trait_types = registry.check(custom)
    return plan


PROFILE_FIELDS = ("phone", "email", "language", "timezone", "kakao_reachable", *ATTRIBUTION)


class Preloaded:
    """A batch of identifies: the rows it touches are read in a few queries, new rows written in bulk.

    :TRICKY: new profiles, push tokens and consent records are plain dicts until `write_new`, so a
    100,000-user import costs a few bulk INSERTs, not 100,000 ORM objects. Anything that needs them
    in the database first (an anonymous merge) calls `write_new` before it runs.
    """

    def __init__(self, session: Session, plans: list[IdentifyPlan]) -> None:
        self.session = session
        ids = {p.user_id for p in plans if p.user_id}
        ids |= {anonymous_profile_id(p.anonymous_id) for p in plans if p.anonymous_id}
        self.profiles: dict[str, Profile] = {}
        for chunk in in_batches(sorted(ids)):
            for profile in session.scalars(select(Profile).where(Profile.profile_id.in_(chunk))):
                self.profiles[profile.profile_id] = profile
        tokens = sorted({t.token for p in plans for t in p.tokens})
        self.tokens: dict[str, PushToken] = {}
        for chunk in in_batches(tokens):
            for row in session.scalars(select(PushToken).where(PushToken.token.in_(chunk))):
                self.tokens[row.token] = row
        keys = [f"{p.message_id}:{c.channel}:{c.purpose}" for p in plans if p.message_id for c in p.consents]
        self.taken_keys = history.used_keys(session, keys)
        with_consent = sorted({p.user_id or anonymous_profile_id(p.anonymous_id or "") for p in plans if p.consents})
        self.consents: dict[str, list[Any]] = history.for_profiles(session, with_consent)
        self.new_profiles: dict[str, dict[str, Any]] = {}
        self.new_tokens: dict[str, dict[str, Any]] = {}
        self.new_consents: list[dict[str, Any]] = []

    def consents_of(self, profile_id: str) -> list[Any]:
        if profile_id not in self.consents:
            self.write_new()
            self.consents.update(history.for_profiles(self.session, [profile_id]))
        return self.consents[profile_id]

    def write_new(self) -> None:
        self.session.flush()
        connection = self.session.connection()
        for table, rows in ((Profile.__table__, list(self.new_profiles.values())),
                            (PushToken.__table__, list(self.new_tokens.values())),
                            (ConsentRecord.__table__, self.new_consents)):
            if rows:
                connection.execute(insert(table), rows)  # Core executemany: no ORM bookkeeping per row
        self.new_profiles.clear()
        self.new_tokens.clear()
        self.new_consents.clear()



def apply_many(session: Session, plans: list[IdentifyPlan], registry: TraitRegistry, now: datetime) -> list[IdentifyResult]:
    """Write prepared identifies in order. Idempotent for retried messages (same message ids)."""
    pre = Preloaded(session, plans)
    with session.no_autoflush:
        results = [_apply(session, plan, registry, now, pre) for plan in plans]
    pre.write_new()
    return results


def apply(session: Session, plan: IdentifyPlan, registry: TraitRegistry, now: datetime) -> IdentifyResult:
    return apply_many(session, [plan], registry, now)[0]


def _apply(session: Session, plan: IdentifyPlan, registry: TraitRegistry, now: datetime,
           pre: Preloaded) -> IdentifyResult:
    merged_from = None
    anon_id = anonymous_profile_id(plan.anonymous_id) if plan.anonymous_id else None
    anon = pre.profiles.get(anon_id) if anon_id else None
    if anon_id and anon is None and anon_id in pre.new_profiles:
        pre.write_new()  # an anonymous profile made earlier in this batch: make it a row to merge
        anon = pre.profiles[anon_id] = session.get(Profile, anon_id)  # type: ignore[assignment]
    if plan.user_id:
        target_id = plan.user_id
        if anon is not None and anon.merged_into is None:
            pre.write_new()
            merged_from = merge_anonymous(session, plan.anonymous_id or "", plan.user_id, now)
            pre.profiles[target_id] = session.get(Profile, target_id)  # type: ignore[assignment]
            pre.consents.pop(target_id, None)  # the copied records are read again when needed
    else:
        target_id = anon.merged_into if anon and anon.merged_into else anon_id  # type: ignore[assignment]
    profile = pre.profiles.get(target_id)
    row = pre.new_profiles.get(target_id)
    created = profile is None and row is None
    if created:
        row = pre.new_profiles[target_id] = {
            "profile_id": target_id, "user_id": plan.user_id, "anonymous_id": plan.anonymous_id,
            "merged_into": None, "traits": {}, "created_at": now, "updated_at": now,
            **{column: None for column in PROFILE_FIELDS},
        }
    if profile is not None:
        _apply_fields(plan, lambda c: getattr(profile, c), lambda c, v: setattr(profile, c, v))
        profile.updated_at = now
    else:
        assert row is not None
        _apply_fields(plan, row.get, row.__setitem__)
        row["updated_at"] = now
    for token in plan.tokens:
        _upsert_token(pre, target_id, token, now)
    written = []
    if plan.consents:
        written = history.record(session, target_id, plan.consents, now=now, dedupe_key=plan.message_id,
                                 records=pre.consents_of(target_id), taken_keys=pre.taken_keys,
                                 sink=pre.new_consents)
    registry.adopt(plan.new_trait_types, now)
    return IdentifyResult(target_id, created, merged_from, len(written))


def _apply_fields(plan: IdentifyPlan, get: Callable[[str], Any], put: Callable[[str, Any], None]) -> None:
    for column, value in plan.columns.items():
        put(column, value)
    for column, value in plan.first_touch.items():
        if get(column) is None:
            put(column, value)
    if plan.traits:
        merged = dict(get("traits") or {})
        for name, value in plan.traits.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        put("traits", merged)


def merge_anonymous(session: Session, anonymous_id: str, user_id: str, now: datetime) -> str | None:
    """Fold an anonymous visitor's profile into the user it turned out to be (first link wins)."""
    anon = session.get(Profile, anonymous_profile_id(anonymous_id))
    if anon is None or anon.merged_into is not None:
        return None
    user = session.get(Profile, user_id)
    if user is None:
        user = Profile(profile_id=user_id, user_id=user_id, anonymous_id=anonymous_id, traits={},
                       created_at=now, updated_at=now)
        session.add(user)
    user.traits = {**(anon.traits or {}), **(user.traits or {})}
    for column in PROFILE_FIELDS:
        if getattr(user, column) is None:
            setattr(user, column, getattr(anon, column))
    session.flush()
    for token in session.query(PushToken).filter(PushToken.profile_id == anon.profile_id):
        token.profile_id = user_id
    history.copy_to(session, anon.profile_id, user_id, now=now)
    anon.merged_into = user_id
    anon.updated_at = now
    return anon.profile_id


def _upsert_token(pre: Preloaded, profile_id: str, update: TokenUpdate, now: datetime) -> None:
    values = {"token": update.token, "profile_id": profile_id, "platform": update.platform.value,
              "app_id": update.app_id, "device_id": update.device_id, "status": update.status.value,
              "status_reason": "reported by the app" if update.status == TokenStatus.INVALID else None,
              "updated_at": now}
    row = pre.tokens.get(update.token)
    if row is None:
        pending = pre.new_tokens.get(update.token)
        if pending is None:
            pre.new_tokens[update.token] = values
        else:
            pending.update({k: v for k, v in values.items() if v is not None or k == "status_reason"})
        return
    row.profile_id = profile_id
    row.platform = update.platform.value
    row.app_id = update.app_id or row.app_id
    row.device_id = update.device_id or row.device_id
    if row.status != update.status.value:
        row.status = update.status.value
        row.status_reason = values["status_reason"]
    row.updated_at = now
