"""A campaign as written in a file (YAML or JSON), checked field by field, and its stored form: segment files
read into it and saved templates pinned to the version current when it is applied, so that a stored version
says exactly what goes out and any edit — to the file, its segment or a template it names — is a new version.

    kind: campaign
    name: winback_october
    purpose: advertising                  # or informational
    audience:
      segment: ../segments/winback.yaml   # a file (relative to this one) or a segment written here
      stages: [churn]                     # and/or lifecycle stages
    channels: [push, brand_message, sms]  # per person: the first they can be reached on (and consented to)
    messages:
      push: {title: ..., text: ...}
      brand_message: {template: winback_bm}
      sms: {text: ...}
    schedule: {at: 2026-12-01 10:00}      # or cron: "0 10 * * MON"; local_time: true; nothing: at apply
    goal: {events: [order_completed], window_days: 3}
    control_percent: 10
    variants: ...                         # instead of messages: [{name: A, split: 50, messages: ...}, ...]
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nudgekit.segments import model as segments
from nudgekit.vocabulary import MessageChannel, MessagePurpose, Stage

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
SENSITIVE_CHANNELS = (MessageChannel.INAPP, MessageChannel.CARD)
MAX_GOALS = 4


M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A campaign file that cannot be used, with every problem in words a marketer can act on."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Audience(Strict):
    segment: str | dict[str, Any] | None = None
    """A segment file (relative to the campaign file) or a segment written here; stored as written here."""
    stages: list[Stage] = Field(default_factory=list)
    max_percent: float | None = Field(None, gt=0, le=100)
    """This campaign may reach up to this share of everyone (preflight's `[campaigns] max_audience_percent`)."""

    @model_validator(mode="after")
    def _some(self) -> Audience:
        if self.segment is None and not self.stages:
            raise ValueError("say who it is for: a segment, lifecycle stages, or both")
        return self

    def segment_of(self, name: str) -> segments.Segment:
        """The audience as one segment: the (resolved) segment's members in the stages named."""
        where: list[Any] = []
        if self.segment is not None:
            assert isinstance(self.segment, dict), "resolve() reads a segment file into the spec"
            where.append(self.segment["where"])
        if self.stages:
            where.append({"stage": [s.value for s in self.stages]})
        return segments.parse({"name": name, "where": where[0] if len(where) == 1 else {"all": where}},
                              f"{name}: audience")


class Schedule(Strict):
    at: datetime | None = None
    """When it goes: a time without a zone is the workspace's (or, with local_time, each person's)."""
    cron: str | None = None
    """A recurring campaign: standard five-field cron, in the workspace's zone (or each person's)."""
    until: datetime | None = None
    """A recurring campaign runs no more after this."""
    local_time: bool = False
    """Read `at` / `cron` in each person's own time zone: 10:00 is 10:00 where they are."""
    best_hour: bool = False

    @model_validator(mode="after")
    def _shape(self) -> Schedule:
        from cronsim import CronSim, CronSimError

        if self.best_hour:
            raise ValueError("best_hour needs each person's engagement history, which measurement (issue #9) "
                             "will provide; schedule at a time for now")
        if self.at is not None and self.cron is not None:
            raise ValueError("say at (once) or cron (recurring), not both")
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime(2026, 1, 1))
            except CronSimError as exc:
                raise ValueError(f"cron {self.cron!r} is not a cron expression ({exc}); e.g. '0 10 * * MON' "
                                 "is Mondays at 10:00") from None
        if self.local_time and self.at is None and self.cron is None:
            raise ValueError("local_time reads a time in each person's zone: give at or cron")
        if self.local_time and self.at is not None and self.at.tzinfo is not None:
            raise ValueError("with local_time, write at without a zone (10:00 where each person is)")
        if self.until is not None and self.cron is None:
            raise ValueError("until ends a recurring (cron) campaign")
        return self

    @property
    def kind(self) -> Literal["now", "at", "cron"]:
        return "cron" if self.cron else "at" if self.at else "now"


class Goal(Strict):
    events: list[str] = Field(min_length=1, max_length=MAX_GOALS)
    """The first is the primary goal; up to three more are reported beside it."""
    window_days: float = Field(3.0, gt=0, le=30)

    @field_validator("events")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        names = [v.strip() for v in value]
        if any(not n for n in names):
            raise ValueError("an event name is not blank")
        if len(set(names)) != len(names):
            raise ValueError("each goal event once")
        return names


class Canary(Strict):
    percent: float = Field(gt=0, le=50)
    """This share of the audience gets it first."""
    wait_minutes: float = Field(60.0, gt=0, le=7 * 24 * 60)
    """How long after the canary's messages go before the guardrails are read."""
    max_unsubscribe_percent: float = Field(1.0, ge=0, le=100)
    max_push_off_percent: float = Field(1.0, ge=0, le=100)
    max_uninstall_percent: float = Field(1.0, ge=0, le=100)
    max_failure_percent: float = Field(10.0, ge=0, le=100)


Messages = dict[MessageChannel, dict[str, Any]]


class Variant(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
    split: float = Field(gt=0, le=100)
    """Percent of the people who get a message (the control group is set aside first)."""
    messages: Messages


class Sending(Strict):
    """What campaigns and journeys both say: who sends, why, and the limits every message of theirs keeps."""

    name: str = Field(pattern=NAME)
    description: str | None = None
    purpose: MessagePurpose
    goal: Goal | None = None
    control_percent: float = Field(0.0, ge=0, le=50)
    """This share of the audience is held back (recorded as `campaign_control`) to measure the lift."""
    priority: int = Field(0, ge=-100, le=100)
    budget_krw: float | None = Field(None, gt=0)
    per_minute: float | None = Field(None, gt=0)
    window: str | None = None
    """Send window in each person's local time, e.g. "10:00-20:00"."""
    once_per_hours: float | None = Field(None, gt=0)
    night: Literal["defer", "drop"] | None = None
    goods: list[str] = Field(default_factory=list)
    sensitive: bool = False
    """Private topic (health, finance): in-app messages and content cards only, nothing in a push preview or
    an inbox."""
    requires_approval: bool = False

    @property
    def advertising(self) -> bool:
        return self.purpose == MessagePurpose.ADVERTISING

    @property
    def in_doubt(self) -> str:
        """What a message whose hand-over is in doubt does: an advertisement is held, never sent twice."""
        return "hold" if self.advertising else "resend"

    def options(self) -> dict[str, Any]:
        """The policy options its messages are queued with (those it sets)."""
        return {k: v for k, v in {"priority": self.priority, "night": self.night, "window": self.window,
                                  "once_per_hours": self.once_per_hours, "budget_krw": self.budget_krw,
                                  "goods": list(self.goods)}.items() if v}


class CampaignSpec(Sending):
    kind: Literal["campaign"] = "campaign"
    audience: Audience
    channels: list[MessageChannel] | None = None
    """The order to try per person; default: the order `messages` are written in."""
    messages: Messages | None = None
    variants: list[Variant] | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    canary: Canary | None = None
    occurrence: str = Field("1", pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")
    """A one-off campaign sends once per person for good; a new occurrence (e.g. a date) sends it again."""

    @model_validator(mode="after")
    def _shape(self) -> CampaignSpec:
        if (self.messages is None) == (self.variants is None):
            raise ValueError("give messages (one per channel) or variants (A/B), not both and not neither")
        sets = [self.messages] if self.messages is not None else [v.messages for v in self.variants or []]
        order = self.channels or list(sets[0])
        if not order:
            raise ValueError("messages: at least one channel")
        if len(set(order)) != len(order):
            raise ValueError("channels: each channel once")
        for i, messages in enumerate(sets):
            where = "messages" if self.messages is not None else f"variants.{i}.messages"
            check_messages(where, order, messages, self.purpose, self.sensitive)
        if self.variants is not None:
            names = [v.name for v in self.variants]
            if len(set(names)) != len(names):
                raise ValueError("variants: each name once")
            if abs(sum(v.split for v in self.variants) - 100) > 1e-6:
                raise ValueError(f"variants: the splits add up to {sum(v.split for v in self.variants):g}, not 100")
        if self.canary is not None and self.schedule.kind == "cron":
            raise ValueError("canary: a staged send is for a one-off campaign; a recurring one is tested once "
                             "as its own one-off")
        return self

    @property
    def order(self) -> list[MessageChannel]:
        sets = self.messages if self.messages is not None else (self.variants or [])[0].messages
        return self.channels or list(sets)

    @property
    def message_sets(self) -> list[tuple[str, Messages]]:
        """(where in the file, messages) of every message set."""
        return [(f"variants.{n}.messages" if n else "messages", m) for n, _, m in self.variant_messages]

    @property
    def variant_messages(self) -> list[tuple[str | None, float, Messages]]:
        """(variant name, split percent, messages): one unnamed entry for a campaign without variants."""
        if self.variants is None:
            assert self.messages is not None
            return [(None, 100.0, self.messages)]
        return [(v.name, v.split, v.messages) for v in self.variants]


def check_messages(where: str, order: list[MessageChannel], messages: Messages, purpose: MessagePurpose,
                   sensitive: bool) -> None:
    """One message per channel of the order, each fit for the purpose; a sensitive one on in-app and cards
    only."""
    if not order:
        raise ValueError(f"{where}: at least one channel")
    if len(set(order)) != len(order):
        raise ValueError("channels: each channel once")
    missing = [c.value for c in order if c not in messages]
    extra = [c.value for c in messages if c not in order]
    if missing:
        raise ValueError(f"{where}: no message for {', '.join(missing)} (channels lists it)")
    if extra:
        raise ValueError(f"{where}: {', '.join(extra)} is not in channels: add it there or remove it")
    for channel, fields in messages.items():
        _check_message(f"{where}.{channel.value}", channel, fields, purpose)
    if sensitive:
        others = [c.value for c in order if c not in SENSITIVE_CHANNELS]
        if others:
            raise ValueError(f"sensitive: a private topic goes to in-app messages and content cards only, "
                             f"where nobody else can read it; remove {', '.join(others)}")
    if purpose == MessagePurpose.INFORMATIONAL and MessageChannel.BRAND_MESSAGE in order:
        raise ValueError("a Brand Message is advertising by nature: this one says informational")


def _check_message(where: str, channel: MessageChannel, fields: dict[str, Any], purpose: MessagePurpose) -> None:
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f"{where}: the message's fields (text, title ...) or template: NAME")
    if "template" in fields:
        extra = set(fields) - {"template", "template_version"}
        if extra:
            raise ValueError(f"{where}: a saved template holds the fields; remove {', '.join(sorted(extra))} "
                             "or write the fields here instead")
        if not isinstance(fields["template"], str) or not re.fullmatch(NAME, fields["template"]):
            raise ValueError(f"{where}.template: a saved template's name (nudge template list)")
        return
    if "ad" in fields and fields["ad"] is not (purpose == MessagePurpose.ADVERTISING):
        raise ValueError(f"{where}.ad: the campaign's purpose ({purpose.value}) says whether it is an ad; "
                         "remove ad here")


def parse(data: Any, source: str) -> CampaignSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a campaign is a mapping (kind: campaign, name, purpose, audience, ...)")
    return validated(CampaignSpec, data, source)


def validated(model: type[M], data: dict[str, Any], source: str) -> M:
    """The file's mapping as `model`, or SpecError listing every problem with its place."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            place = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
            problems.append(f"{place or '(top)'}: {e['msg'].removeprefix('Value error, ')}")
        raise SpecError(f"{source}:\n  " + "\n  ".join(dict.fromkeys(problems))) from None


def read(path: Path) -> dict[str, Any] | None:
    """A campaign file's mapping, or None for a file that is not one (no `kind: campaign`, `journey` or
    `notice`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None
    try:
        data = orjson.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in ("campaign", "journey", "notice"):
        return None
    return data


def resolve(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The spec with its segment files read into it (checked), so the stored spec holds all it depends on:
    the audience's segment, and a journey's entry segment."""
    for key in ("audience", "entry"):
        part = data.get(key)
        if isinstance(part, dict) and isinstance(part.get("segment"), str | dict):
            data = {**data, key: {**part, "segment": _segment(part["segment"], path, f"{key}.segment",
                                                              data.get("name", key))}}
    return data


def _segment(value: str | dict[str, Any], path: Path, where: str, name: Any) -> dict[str, Any]:
    try:
        if isinstance(value, str):
            segment = segments.load((path.parent / value).resolve())
        else:
            segment = segments.parse({"name": name, **value}, f"{path}: {where}")
    except segments.SegmentError as exc:
        raise SpecError(f"{path}: {where}: {exc}" if isinstance(value, str) else str(exc)) from None
    return segment.model_dump(mode="json", by_alias=True, exclude_none=True)


def digest(spec: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


def templates_named(spec: Any) -> set[str]:
    """The saved templates a campaign or journey names."""
    return {fields["template"] for _, messages in spec.message_sets for fields in messages.values()
            if "template" in fields}


def pin(data: dict[str, Any], latest: dict[str, int]) -> dict[str, Any]:
    """The spec with every saved template it names pinned to a version (the latest, unless it says one)."""

    def pinned(messages: dict[str, Any]) -> dict[str, Any]:
        return {channel: ({**fields, "template_version": fields.get("template_version") or latest[fields["template"]]}
                          if isinstance(fields, dict) and "template" in fields and fields["template"] in latest
                          else fields) for channel, fields in messages.items()}

    out = dict(data)
    if isinstance(out.get("messages"), dict):
        out["messages"] = pinned(out["messages"])
    if isinstance(out.get("variants"), list):
        out["variants"] = [{**v, "messages": pinned(v["messages"])} if isinstance(v, dict)
                           and isinstance(v.get("messages"), dict) else v for v in out["variants"]]
    if isinstance(out.get("steps"), list):
        out["steps"] = [{**s, "send": {**s["send"], "messages": pinned(s["send"]["messages"])}}
                        if isinstance(s, dict) and isinstance(s.get("send"), dict)
                        and isinstance(s["send"].get("messages"), dict) else s for s in out["steps"]]
    return out
