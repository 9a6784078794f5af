"""A segment, declared in YAML or JSON: a tree of AND / OR / NOT over conditions on who a person is and
what they did. Validated here (pydantic) so a mistake is reported with the place in the file and a reason
a marketer can act on; compiled to Ibis in `segments/compile.py`.

    name: lapsing_vips
    description: spent 100,000원 in 90 days, quiet for two weeks
    where:
      all:
        - event: order_completed
          sum: {property: revenue, gte: 100000}
          within_last_days: 90
        - event: app_opened
          performed: false
          within_last_days: 14
        - consent: {channel: sms, purpose: advertising}
        - not: {stage: [churn, uninstall]}

Every condition kind is documented in docs/segments.md.
"""

from __future__ import annotations

import json
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from nudgekit.vocabulary import Channel, Purpose, Stage


class SegmentError(ValueError):
    """A segment file that cannot be used, with every problem found, each with its place."""


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    BETWEEN = "between"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


NO_VALUE = (Op.EXISTS, Op.NOT_EXISTS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Test(Strict):
    """A comparison: `op` and `value` (`between` takes [low, high], `in`/`not_in` a list)."""

    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Test:
        if self.op in NO_VALUE:
            if self.value is not None:
                raise ValueError(f'"{self.op}" takes no value')
        elif self.value is None:
            raise ValueError(f'"{self.op}" needs a value')
        elif self.op in (Op.IN, Op.NOT_IN) and not isinstance(self.value, list):
            raise ValueError(f'"{self.op}" needs a list of values, like [a, b]')
        elif self.op == Op.BETWEEN and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError('"between" needs two values: [low, high] (both included)')
        return self


class Window(Strict):
    """When: the last N days (today counts as one), or between two dates (both included)."""

    within_last_days: int | None = Field(None, ge=1, le=3650)
    at_least_days_ago: int | None = Field(None, ge=0, le=3650)
    between: tuple[date, date] | None = None

    @model_validator(mode="after")
    def _one(self) -> Window:
        given = [k for k in ("within_last_days", "at_least_days_ago", "between") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of within_last_days, at_least_days_ago, between (got {', '.join(given)})")
        if self.between and self.between[0] > self.between[1]:
            raise ValueError("between: the first date must not be after the second")
        return self

    @property
    def empty(self) -> bool:
        return self.within_last_days is None and self.at_least_days_ago is None and self.between is None


class TraitCondition(Strict):
    """A profile trait: `trait: plan, op: eq, value: premium`, or a relative date
    (`trait: signup_at, within_last_days: 7`)."""

    trait: str = Field(min_length=1, max_length=255)
    op: Op | None = None
    value: Any = None
    within_last_days: int | None = Field(None, ge=1, le=3650)
    at_least_days_ago: int | None = Field(None, ge=0, le=3650)

    @model_validator(mode="after")
    def _shape(self) -> TraitCondition:
        relative = self.within_last_days is not None or self.at_least_days_ago is not None
        if relative and self.op is not None:
            raise ValueError("give either op/value or a relative date (within_last_days / at_least_days_ago)")
        if not relative and self.op is None:
            raise ValueError('give op (eq, ne, in, not_in, contains, lt, lte, gt, gte, between, exists, '
                             'not_exists) or a relative date')
        if self.op is not None:
            Test(op=self.op, value=self.value)
        return self

    @property
    def test(self) -> Test | None:
        return Test(op=self.op, value=self.value) if self.op else None


class PropertyFilter(Strict):
    """A property of the event: `{property: category, op: eq, value: 장건강}`."""

    property: str = Field(min_length=1, max_length=255)
    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _value(self) -> PropertyFilter:
        Test(op=self.op, value=self.value)
        return self


class CountTest(Strict):
    """How many times: at least (gte), at most (lte), exactly (eq); combine gte and lte for a range."""

    gte: int | None = Field(None, ge=0)
    lte: int | None = Field(None, ge=0)
    eq: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _some(self) -> CountTest:
        if self.gte is None and self.lte is None and self.eq is None:
            raise ValueError("count needs gte (at least), lte (at most) or eq (exactly)")
        if self.eq is not None and (self.gte is not None or self.lte is not None):
            raise ValueError("count: eq cannot be combined with gte or lte")
        return self


class AmountTest(Strict):
    """The sum or average of a numeric property: `{property: revenue, gte: 100000}`."""

    property: str = Field(min_length=1, max_length=255)
    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None
    eq: float | None = None

    @model_validator(mode="after")
    def _some(self) -> AmountTest:
        if all(getattr(self, k) is None for k in ("gte", "lte", "gt", "lt", "eq")):
            raise ValueError("give a bound: gte, lte, gt, lt or eq")
        return self


class BehaviourCondition(Strict):
    """Did the person perform an event: how often, when first or last, how much in total or on average."""

    event: str = Field(min_length=1, max_length=255)
    where: list[PropertyFilter] = Field(default_factory=list)
    performed: bool | None = None
    """false: did not perform it (in the window). Same as count: {eq: 0}."""
    count: CountTest | None = None
    sum: AmountTest | None = None
    avg: AmountTest | None = None
    first: Window | None = None
    """When they performed it the first time (ever, matching `where`)."""
    last: Window | None = None
    """When they performed it the last time."""
    within_last_days: int | None = Field(None, ge=1, le=3650)
    between: tuple[date, date] | None = None

    @model_validator(mode="after")
    def _shape(self) -> BehaviourCondition:
        if self.within_last_days is not None and self.between is not None:
            raise ValueError("give within_last_days or between, not both")
        if self.between and self.between[0] > self.between[1]:
            raise ValueError("between: the first date must not be after the second")
        if self.performed is not None and self.count is not None:
            raise ValueError("give performed or count, not both")
        if (self.first or self.last) and (self.within_last_days is not None or self.between is not None):
            raise ValueError("first/last already say when; leave out within_last_days and between")
        if self.first and self.first.empty or self.last and self.last.empty:
            raise ValueError("first/last need within_last_days, at_least_days_ago or between")
        return self

    @property
    def window(self) -> Window:
        return Window(within_last_days=self.within_last_days, between=self.between)


class StageCondition(Strict):
    """Lifecycle stage (as stored by the last `nudge lifecycle run` or at-once resurrection)."""

    stage: list[Stage]
    entered_within_last_days: int | None = Field(None, ge=1, le=3650)
    lapsing: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stage"), str):
            return {**data, "stage": [data["stage"]]}
        return data


class ReachableCondition(Strict):
    """Can we reach them on a channel at all: a valid push token, a phone, an email, Kakao."""

    reachable: Literal["push", "sms", "email", "kakao"]


class ConsentRef(Strict):
    channel: Channel
    purpose: Purpose = Purpose.ADVERTISING


class ConsentCondition(Strict):
    """Consent currently granted for (channel, purpose); `granted: false` for the ones without it."""

    consent: ConsentRef
    granted: bool = True


ACQUISITION_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "install_source")


class AcquisitionCondition(Strict):
    """Where they came from: first-touch UTM parameters and install source. A value or a test each."""

    utm_source: Any = None
    utm_medium: Any = None
    utm_campaign: Any = None
    install_source: Any = None

    @model_validator(mode="after")
    def _some(self) -> AcquisitionCondition:
        if all(getattr(self, f) is None for f in ACQUISITION_FIELDS):
            raise ValueError(f"give one of {', '.join(ACQUISITION_FIELDS)}")
        for f in ACQUISITION_FIELDS:
            value = getattr(self, f)
            if isinstance(value, dict):
                Test(**value)
        return self

    def tests(self) -> dict[str, Test]:
        out = {}
        for f in ACQUISITION_FIELDS:
            value = getattr(self, f)
            if value is None:
                continue
            if isinstance(value, dict):
                out[f] = Test(**value)
            elif isinstance(value, list):
                out[f] = Test(op=Op.IN, value=value)
            else:
                out[f] = Test(op=Op.EQ, value=value)
        return out


class BucketRange(Strict):
    salt: str = Field(min_length=1, max_length=100)
    from_: int = Field(0, alias="from", ge=0, le=100)
    to: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> BucketRange:
        if self.from_ >= self.to:
            raise ValueError("bucket: from must be below to (buckets 0-99; from included, to excluded)")
        return self


class BucketCondition(Strict):
    """A stable random bucket 0-99 from the user id and a salt: `bucket: {salt: spring, from: 0, to: 10}`
    is 10% of everyone, the same 10% every time, for splits and holdouts."""

    bucket: BucketRange


class ListCondition(Strict):
    """A member of a manual list (`nudge segment list add NAME FILE`)."""

    list: str = Field(min_length=1, max_length=100)


class AllOf(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(Strict):
    not_: Condition = Field(alias="not")


KINDS = {"all": "all", "any": "any", "not": "not", "trait": "trait", "event": "event", "stage": "stage",
         "reachable": "reachable", "consent": "consent", "bucket": "bucket", "list": "list",
         **{f: "acquisition" for f in ACQUISITION_FIELDS}}


def _kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {AllOf: "all", AnyOf: "any", NotOf: "not", TraitCondition: "trait", BehaviourCondition: "event",
                StageCondition: "stage", ReachableCondition: "reachable", ConsentCondition: "consent",
                BucketCondition: "bucket", ListCondition: "list", AcquisitionCondition: "acquisition"}[type(value)]
    if isinstance(value, dict):
        for key in value:
            if key in KINDS:
                return KINDS[key]
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("all")] | Annotated[AnyOf, Tag("any")] | Annotated[NotOf, Tag("not")]
    | Annotated[TraitCondition, Tag("trait")] | Annotated[BehaviourCondition, Tag("event")]
    | Annotated[StageCondition, Tag("stage")] | Annotated[ReachableCondition, Tag("reachable")]
    | Annotated[ConsentCondition, Tag("consent")] | Annotated[BucketCondition, Tag("bucket")]
    | Annotated[ListCondition, Tag("list")] | Annotated[AcquisitionCondition, Tag("acquisition")],
    Discriminator(_kind, custom_error_type="unknown_condition",
                  custom_error_message=f"a condition starts with one of: {', '.join(KINDS)}"),
]

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


class Segment(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w\-. ]+$")
    description: str | None = None
    where: Condition


def parse(data: Any, source: str = "segment") -> Segment:
    try:
        return Segment.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            parts: list[str] = []
            for p in e["loc"]:  # a tagged union repeats its tag: where.all.all.0 -> where.all.0
                if not str(p).startswith(("function-", "tagged-union")) and (not parts or parts[-1] != str(p)):
                    parts.append(str(p))
            place = ".".join(parts)
            problems.append(f"{place or '(top)'}: {e['msg'].removeprefix('Value error, ')}")
        raise SegmentError(f"{source} is not a valid segment:\n  " + "\n  ".join(dict.fromkeys(problems))) from None


def load(path: Path) -> Segment:
    """Read a segment from a .yaml/.yml or .json file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SegmentError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise SegmentError(f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SegmentError(f"{path}: cannot be read as {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                           f"{exc}") from None
    if not isinstance(data, dict):
        raise SegmentError(f"{path}: a segment is a mapping with name and where")
    return parse(data, str(path))


def walk(condition: Any) -> list[Any]:
    """Every condition in the tree, parents before children."""
    out = [condition]
    if isinstance(condition, AllOf):
        for c in condition.all:
            out += walk(c)
    elif isinstance(condition, AnyOf):
        for c in condition.any:
            out += walk(c)
    elif isinstance(condition, NotOf):
        out += walk(condition.not_)
    return out
