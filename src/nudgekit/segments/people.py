"""Who people are, from the state DB, as Arrow tables the events backend can join: the profile side of a
segment (traits, contact points, consent, acquisition, lists) and the stored lifecycle stages.

Only the columns a segment needs are read: a segment on behaviour alone reads profile ids and nothing
else. Consent is the current state (the latest change by `at`, then by id, as `consent/history.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
from sqlalchemy import Engine, and_, exists, select
from sqlalchemy.sql import ColumnElement

from nudgekit.lifecycle import stored
from nudgekit.store.state import (
    ConsentRecord,
    Profile,
    PushToken,
    SegmentListMember,
    TraitDefinition,
    in_batches,
)
from nudgekit.vocabulary import Channel, ConsentChange, Purpose, TokenStatus

REACH_CHANNELS = ("push", "sms", "kakao", "email")


@dataclass
class Needs:
    """What a segment (or a preview) reads from the state DB."""

    traits: set[str] = field(default_factory=set)
    date_traits: set[str] = field(default_factory=set)
    """Traits used as dates (relative-date conditions): text traits are parsed as ISO dates too."""
    consents: set[tuple[str, str]] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    reach: bool = False
    acquisition: bool = False
    stages: bool = False
    ids: bool = False
    """user_id and anonymous_id (for samples and exports)."""

    def __or__(self, other: Needs) -> Needs:
        return Needs(**{f.name: getattr(self, f.name) | getattr(other, f.name) for f in fields(self)})


def consent_column(channel: str, purpose: str) -> str:
    return f"consent__{channel}__{purpose}"


def trait_column(name: str) -> str:
    return f"trait__{name}"


def trait_date_column(name: str) -> str:
    return f"traitdate__{name}"


def list_column(name: str) -> str:
    return f"list__{name}"


def trait_types(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(TraitDefinition.name, TraitDefinition.type)).all())  # type: ignore[arg-type]


def _consent(channel: str, purpose: str) -> ColumnElement[Any]:
    latest = (select(ConsentRecord.change)
              .where(ConsentRecord.profile_id == Profile.profile_id, ConsentRecord.channel == channel,
                     ConsentRecord.purpose == purpose)
              .order_by(ConsentRecord.at.desc(), ConsentRecord.id.desc()).limit(1).scalar_subquery())
    return (latest == ConsentChange.GRANTED.value).label(consent_column(channel, purpose))


def _push() -> ColumnElement[Any]:
    return exists().where(PushToken.profile_id == Profile.profile_id,
                          PushToken.status == TokenStatus.VALID.value).label("reach__push")


def _listed(name: str) -> ColumnElement[Any]:
    return exists().where(SegmentListMember.profile_id == Profile.profile_id,
                          SegmentListMember.list_name == name).label(list_column(name))


def _trait(name: str, kind: str) -> ColumnElement[Any]:
    value = Profile.traits[name]
    if kind == "number":
        return value.as_float().label(trait_column(name))
    if kind == "boolean":
        return value.as_boolean().label(trait_column(name))
    if kind in ("string", "datetime"):
        return value.as_string().label(trait_column(name))
    return value.label(trait_column(name))  # list / object: JSON, serialised below


ARROW_TYPES = {"number": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
               "datetime": pa.timestamp("us", tz="UTC"), "list": pa.string(), "object": pa.string()}


def _as_instant(value: Any, zone: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def people(engine: Engine, needs: Needs, zone: str, *, only: list[str] | None = None,
           declared: dict[str, str] | None = None) -> tuple[pa.Table, dict[str, str]]:
    """One row per (unmerged) profile with the columns `needs` asks for. Returns it and the trait types
    (declared in nudge.toml, else as first seen; a trait never seen reads as text)."""
    types = {**trait_types(engine), **(declared or {})} if needs.traits else {}
    types = {name: types.get(name, "string") for name in needs.traits}
    columns: list[ColumnElement[Any]] = [Profile.profile_id.label("person_id")]
    if needs.ids:
        columns += [Profile.user_id, Profile.anonymous_id]
    if needs.reach:
        columns += [Profile.phone.isnot(None).label("reach__sms"), Profile.email.isnot(None).label("reach__email"),
                    and_(Profile.phone.isnot(None), Profile.kakao_reachable.is_(True)).label("reach__kakao"), _push()]
    if needs.acquisition:
        columns += [Profile.utm_source, Profile.utm_medium, Profile.utm_campaign, Profile.install_source]
    for channel, purpose in sorted(needs.consents):
        columns.append(_consent(channel, purpose))
    for name in sorted(needs.traits):
        columns.append(_trait(name, types[name]))
    for name in sorted(needs.date_traits):
        columns.append(Profile.traits[name].as_string().label(trait_date_column(name)))
    for name in sorted(needs.lists):
        columns.append(_listed(name))
    stmt = select(*columns).where(Profile.merged_into.is_(None))
    with engine.connect() as conn:
        if only is None:
            result = conn.execute(stmt)
            names, rows = list(result.keys()), result.all()
        else:
            names, rows = [c.key for c in columns], []
            for batch in in_batches(only):
                rows += conn.execute(stmt.where(Profile.profile_id.in_(batch))).all()
    data = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    tz = ZoneInfo(zone)
    arrays = {}
    for name, values in data.items():
        if name.startswith("traitdate__"):
            arrays[name] = pa.array([_as_instant(v, tz) for v in values], pa.timestamp("us", tz="UTC"))
        elif name.startswith("trait__"):
            kind = types.get(name.removeprefix("trait__"), "string")
            if kind == "datetime":
                values = [_as_instant(v, tz) for v in values]
            elif kind in ("list", "object"):
                values = [None if v is None else orjson.dumps(v).decode() for v in values]
            arrays[name] = pa.array(values, ARROW_TYPES[kind])
        elif name.startswith(("reach__", "consent__", "list__")):
            arrays[name] = pa.array([bool(v) for v in values], pa.bool_())
        else:
            arrays[name] = pa.array(values, pa.string())
    if not arrays:
        arrays["person_id"] = pa.array([], pa.string())
    return pa.table(arrays), types


def profile_ids(engine: Engine, person_ids: list[str]) -> pa.Table:
    """person_id, user_id, anonymous_id of the given people that have a profile (primary-key lookups)."""
    found: list[Any] = []
    with engine.connect() as conn:
        for batch in in_batches(person_ids):
            found += conn.execute(select(Profile.profile_id, Profile.user_id, Profile.anonymous_id)
                                  .where(Profile.profile_id.in_(batch))).all()
    columns = list(zip(*found, strict=True)) if found else [(), (), ()]
    return pa.table({name: pa.array(list(values), pa.string())
                     for name, values in zip(("person_id", "user_id", "anonymous_id"), columns, strict=True)})


def stages(engine: Engine, snapshot: Path | None = None, *, only: list[str] | None = None) -> pa.Table:
    """Stored stages: person_id, stage, stage_since, lapsing (see `lifecycle/stored.py`)."""
    table = stored.read_all(engine, only) if only is not None else stored.read(engine, snapshot)
    return table.rename_columns(["person_id", "stage", "stage_since", "lapsing"])


def every_channel_purpose() -> set[tuple[str, str]]:
    return {(c.value, Purpose.ADVERTISING.value) for c in Channel if c.value in REACH_CHANNELS}
