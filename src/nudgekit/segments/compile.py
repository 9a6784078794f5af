"""A segment -> one Ibis expression: everyone seen, joined with who they are and what they did, and a
boolean `member` column. The same expression runs on DuckDB and on Spark.

The people side (traits, contact points, consent, lists, stored stages) comes from the state DB as Arrow
tables (`segments/people.py`) joined in the backend; every behaviour condition becomes a few aggregates
in *one* pass over the events (only the event names the segment mentions, only as far back as it looks).

Semantics a marketer should know (docs/segments.md): every day is a calendar day in the workspace time
zone; `ne` and `not_in` also match people without that trait; a `sum` over no events is 0 while an `avg`
over none matches nothing; `first`/`last` match nobody who never performed the event.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from nudgekit.segments import model as m
from nudgekit.segments.people import Needs, consent_column, list_column, trait_column, trait_date_column
from nudgekit.store.activity import SEEN_TYPES, day_start, json_text
from nudgekit.store.backend import EventsView

HEX = "0123456789abcdef"


@ibis.udf.scalar.builtin
def conv(text: str, from_base: int, to_base: int) -> str:  # type: ignore[empty-body]
    """Spark's base conversion of a number written as text."""


def bucket_of(person_id: ir.StringValue, salt: str, engine: str = "duckdb") -> ir.IntegerValue:
    """0-99 from md5(salt:person_id): the first six hex digits as a number, modulo 100 — the same on every
    backend (in Python: `int(md5(f"{salt}:{id}").hexdigest()[:6], 16) % 100`).

    :TRICKY: one md5 per person: DuckDB reads '0x…' text as a number and Spark has `conv`; spelling the
    digits out one by one repeats the md5 six times (no engine shares the common subexpression)."""
    digits = (ibis.literal(f"{salt}:") + person_id).hexdigest("md5").substr(0, 6)
    if engine == "duckdb":
        return (ibis.literal("0x") + digits).cast("int64") % 100
    if engine == "pyspark":
        return conv(digits, 16, 10).cast("int64") % 100
    value: ir.IntegerValue = ibis.literal(0)
    for i in range(6):
        value = value + ibis.literal(HEX).find(digits.substr(i, 1)) * (16 ** (5 - i))
    return value % 100


def needs_of(segment: m.Segment) -> Needs:
    needs = Needs()
    for c in m.walk(segment.where):
        if isinstance(c, m.TraitCondition):
            needs.traits.add(c.trait)
            if c.test is None:
                needs.date_traits.add(c.trait)
        elif isinstance(c, m.ConsentCondition):
            needs.consents.add((c.consent.channel.value, c.consent.purpose.value))
        elif isinstance(c, m.ListCondition):
            needs.lists.add(c.list)
        elif isinstance(c, m.ReachableCondition):
            needs.reach = True
        elif isinstance(c, m.AcquisitionCondition):
            needs.acquisition = True
        elif isinstance(c, m.StageCondition):
            needs.stages = True
    return needs


def behaviours(segment: m.Segment) -> list[m.BehaviourCondition]:
    return [c for c in m.walk(segment.where) if isinstance(c, m.BehaviourCondition)]


@dataclass
class Context:
    today: date
    zone: str
    trait_types: dict[str, str]
    engine: str = "duckdb"
    leaf_ids: dict[int, int] = field(default_factory=dict)
    """id(behaviour condition) -> its number among the aggregates."""

    def day_start(self, day: date) -> datetime:
        return day_start(day, self.zone)


def _age(day: ir.DateValue, today: date) -> ir.IntegerValue:
    return ibis.literal(today).delta(day, unit="day")


def _window(day: ir.DateValue, window: m.Window, today: date) -> ir.BooleanValue:
    if window.within_last_days is not None:
        age = _age(day, today)
        return (age >= 0) & (age < window.within_last_days)
    if window.at_least_days_ago is not None:
        return _age(day, today) >= window.at_least_days_ago
    if window.between is not None:
        return (day >= window.between[0]) & (day <= window.between[1])
    return ibis.literal(True)


def _compare(col: ir.Value, test: m.Test, cast: Any = None) -> ir.BooleanValue:
    conv = cast or (lambda v: v)
    op, value = test.op, test.value
    if op == m.Op.EXISTS:
        return col.notnull()
    if op == m.Op.NOT_EXISTS:
        return col.isnull()
    if op == m.Op.EQ:
        return (col == conv(value)).fill_null(False)
    if op == m.Op.NE:
        return (col != conv(value)).fill_null(True)
    if op == m.Op.IN:
        return col.isin([conv(v) for v in value]).fill_null(False)
    if op == m.Op.NOT_IN:
        return col.notin([conv(v) for v in value]).fill_null(True)
    if op == m.Op.LT:
        return (col < conv(value)).fill_null(False)
    if op == m.Op.LTE:
        return (col <= conv(value)).fill_null(False)
    if op == m.Op.GT:
        return (col > conv(value)).fill_null(False)
    if op == m.Op.GTE:
        return (col >= conv(value)).fill_null(False)
    if op == m.Op.BETWEEN:
        return ((col >= conv(value[0])) & (col <= conv(value[1]))).fill_null(False)
    if op == m.Op.CONTAINS:
        return col.cast("string").contains(str(value)).fill_null(False)  # type: ignore[attr-defined]
    raise AssertionError(op)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise m.SegmentError(f"{value!r} is not a number")
    return float(value)


def _trait(wide: ir.Table, c: m.TraitCondition, ctx: Context) -> ir.BooleanValue:
    col = wide[trait_column(c.trait)]
    kind = ctx.trait_types.get(c.trait, "string")
    if c.test is None:  # relative date: a datetime trait, or text holding an ISO date
        if kind not in ("datetime", "string"):
            raise m.SegmentError(f'trait "{c.trait}" is a {kind}, not a date: within_last_days / at_least_days_ago '
                                 "need a datetime trait (or text like 2026-11-24)")
        moment = wide[trait_date_column(c.trait)]
        window = m.Window(within_last_days=c.within_last_days, at_least_days_ago=c.at_least_days_ago)
        return (moment.notnull() & _window(moment.date(), window, ctx.today)).fill_null(False)
    test = c.test
    if test.op == m.Op.CONTAINS and kind == "list":
        element = json.dumps(test.value, ensure_ascii=False)
        import re

        return col.re_search(r"[\[,]\s*" + re.escape(element) + r"\s*[,\]]").fill_null(False)
    if kind == "number" and test.op not in m.NO_VALUE and test.op != m.Op.CONTAINS:
        return _compare(col, test, _number)
    if kind == "datetime" and test.op not in m.NO_VALUE:
        return _compare(col, test, lambda v: ctx.day_start(v if isinstance(v, date) else date.fromisoformat(str(v))))
    if kind == "boolean" and test.op not in m.NO_VALUE:
        return _compare(col, test, bool)
    return _compare(col, test, lambda v: v if isinstance(v, str) else json.dumps(v))


PLAIN_TEXT = re.compile(r"[A-Za-z0-9 _\-.:@#+,;!?()%$~*]+")
"""Characters JSON writers put down as themselves (Gson escapes < > & = ', PHP escapes /, Python escapes
everything outside ASCII, so those are left out)."""
NUMBER_TEXT = re.compile(r"[0-9eE+\-.]+")


def _needles(f: m.PropertyFilter) -> list[str]:
    """Texts at least one of which the raw JSON must contain for the filter to hold, or [] when unsure.

    Only for eq / in / contains on plain text that cannot be a number's text (a number's text may be
    rewritten by the JSON reader: 1e3 reads back as 1000.0)."""
    if f.op not in (m.Op.EQ, m.Op.IN, m.Op.CONTAINS):
        return []
    values = f.value if isinstance(f.value, list) else [f.value]
    plain = all(isinstance(v, str) and PLAIN_TEXT.fullmatch(v) and not NUMBER_TEXT.fullmatch(v) for v in values)
    return list(values) if values and len(values) <= 8 and plain else []


def _property_tests(ev: ir.Table, f: m.PropertyFilter, engine: str) -> list[ir.BooleanValue]:
    """The filter as tests to apply in order: a cheap text search of the raw JSON where it can rule rows
    out (parsing the JSON costs several times more; a view of P-PROBIO-30 among 15M product views: 1.39 s
    parsed, 0.18 s searched), then the exact test."""
    needles = _needles(f)
    exact = _property(ev, f, engine)
    if not needles:
        return [exact]
    hint = functools.reduce(operator.or_, [ev.properties.contains(n) for n in needles])
    return [hint.fill_null(False), exact]


def _property(ev: ir.Table, f: m.PropertyFilter, engine: str) -> ir.BooleanValue:
    text = json_text(ev.properties, f.property, engine)
    test = m.Test(op=f.op, value=f.value)
    if f.op in m.NO_VALUE:
        return text.notnull() if f.op == m.Op.EXISTS else text.isnull()
    sample = f.value[0] if isinstance(f.value, list) and f.value else f.value
    if isinstance(sample, bool):
        return _compare(text.lower(), test, lambda v: "true" if v else "false")
    if isinstance(sample, int | float) and f.op != m.Op.CONTAINS:
        return _compare(text.try_cast("float64"), test, float)
    return _compare(text, test, str)


def _moments(window: m.Window, ctx: Context) -> tuple[datetime | None, datetime | None]:
    """A window of local days as instants [from, until): no per-event date conversion needed."""
    if window.within_last_days is not None:
        return ctx.day_start(ctx.today - timedelta(days=window.within_last_days - 1)), ctx.day_start(
            ctx.today + timedelta(days=1))
    if window.at_least_days_ago is not None:
        return None, ctx.day_start(ctx.today - timedelta(days=window.at_least_days_ago - 1))
    if window.between is not None:
        return ctx.day_start(window.between[0]), ctx.day_start(window.between[1] + timedelta(days=1))
    return None, None


def _in_moments(ts: ir.TimestampValue, window: m.Window, ctx: Context) -> ir.BooleanValue:
    start, until = _moments(window, ctx)
    out: ir.BooleanValue = ibis.literal(True)
    if start is not None:
        out = out & (ts >= start)
    if until is not None:
        out = out & (ts < until)
    return out


def behaviour_aggregates(view: EventsView, leaves: list[m.BehaviourCondition], ctx: Context) -> ir.Table:
    """Per person, the aggregates the behaviour leaves test: one pass over the events they mention.

    Aggregated per actor first, resolved to people, then merged (see `store/backend.py`'s :TRICKY:);
    an average is carried as a sum and a count until the merge."""
    if view.actor_events is None:
        return _aggregate(view.events, leaves, ctx, view.engine, ("person_id",))
    by_actor = _aggregate(view.actor_events, leaves, ctx, view.engine, ("actor", "is_anon"))
    resolved = view.resolve(by_actor)
    merged = {}
    for name in by_actor.columns:
        if name in ("actor", "is_anon"):
            continue
        column = resolved[name]
        merged[name] = column.min() if name.endswith("_first") else column.max() if name.endswith("_last") else (
            column.sum())
    out = resolved.group_by("person_id").aggregate(**merged)
    for i, c in enumerate(leaves):
        if c.avg is not None:
            out = out.mutate(**{f"b{i}_avg": out[f"b{i}_avgsum"] / out[f"b{i}_avgn"].nullif(0)})
    return out


def _aggregate(ev: ir.Table, leaves: list[m.BehaviourCondition], ctx: Context, engine: str,
               keys: tuple[str, ...]) -> ir.Table:
    names = sorted({c.event for c in leaves})
    relevant = ev.filter(ev.event.isin(names))
    bounds = [_lower_bound(c, ctx.today) for c in leaves]
    if all(b is not None for b in bounds):
        earliest = min(b for b in bounds if b is not None)
        relevant = relevant.filter(relevant.timestamp >= ctx.day_start(earliest))
    # only the events some leaf counts (its name, inside its window) reach the grouping: "did not open the
    # app in 7 days" must not drag 90 days of app opens along because another leaf looks back 90 days
    wanted = [(relevant.event == c.event) & (ibis.literal(True) if c.first or c.last
                                             else _in_moments(relevant.timestamp, c.window, ctx)) for c in leaves]
    relevant = relevant.filter(functools.reduce(operator.or_, wanted))
    ts = relevant.timestamp
    metrics: dict[str, ir.Value] = {}
    for i, c in enumerate(leaves):
        named = relevant.event == c.event
        inside = named & _in_moments(ts, c.window, ctx)
        tests = [test for f in c.where for test in _property_tests(relevant, f, engine)]

        def only(guard: ir.BooleanValue, value: ir.Value, tests: list[ir.BooleanValue] = tests) -> ir.Value:
            """`value` on the events passing `guard` and the property tests, else NULL.

            :TRICKY: nested CASEs, not `agg(where=...)`: an aggregate's argument is computed for every row
            before its filter applies, so a JSON property would be parsed on every event scanned; a CASE
            parses it only on the rows its (cheap) guard lets through."""
            for test in reversed(tests):
                value = ibis.cases((test, value))
            return ibis.cases((guard, value))

        one = ibis.literal(1, "int8")
        metrics[f"b{i}_count"] = only(inside, one).count()
        if c.sum is not None:
            amount = json_text(relevant.properties, c.sum.property, engine).try_cast("float64")
            metrics[f"b{i}_sum"] = only(inside, amount).sum()
        if c.avg is not None:
            amount = only(inside, json_text(relevant.properties, c.avg.property, engine).try_cast("float64"))
            if keys == ("person_id",):
                metrics[f"b{i}_avg"] = amount.mean()
            else:
                metrics[f"b{i}_avgsum"] = amount.sum()
                metrics[f"b{i}_avgn"] = amount.count()
        if c.first is not None:
            metrics[f"b{i}_first"] = only(named, ts).min()
        if c.last is not None:
            metrics[f"b{i}_last"] = only(named, ts).max()
    return relevant.group_by(list(keys)).aggregate(**metrics)


def _lower_bound(c: m.BehaviourCondition, today: date) -> date | None:
    """The oldest day a leaf looks at, or None when it needs all history."""
    if c.first or c.last:
        return None
    if c.within_last_days is not None:
        return today - timedelta(days=c.within_last_days - 1)
    if c.between is not None:
        return c.between[0]
    return None


AMOUNT_OPS = (("gte", operator.ge), ("lte", operator.le), ("gt", operator.gt), ("lt", operator.lt),
              ("eq", operator.eq))


def _amount_tests(value: Any, t: m.AmountTest) -> list[Any]:
    """Each bound of `t` applied to `value` (a column, or a plain number)."""
    return [op(value, getattr(t, name)) for name, op in AMOUNT_OPS if getattr(t, name) is not None]


def _amount(col: ir.NumericValue, t: m.AmountTest) -> ir.BooleanValue:
    return functools.reduce(operator.and_, _amount_tests(col, t), ibis.literal(True)).fill_null(False)


def _behaviour(wide: ir.Table, c: m.BehaviourCondition, ctx: Context) -> ir.BooleanValue:
    i = ctx.leaf_ids[id(c)]
    count = wide[f"b{i}_count"].fill_null(0)
    tests: list[ir.BooleanValue] = []
    if c.performed is False:
        tests.append(count == 0)
    elif c.count is not None:
        if c.count.eq is not None:
            tests.append(count == c.count.eq)
        if c.count.gte is not None:
            tests.append(count >= c.count.gte)
        if c.count.lte is not None:
            tests.append(count <= c.count.lte)
    if c.sum is not None:
        tests.append(_amount(wide[f"b{i}_sum"].fill_null(0), c.sum))
    if c.avg is not None:
        tests.append(_amount(wide[f"b{i}_avg"], c.avg))
    if c.first is not None:
        tests.append(_in_moments(wide[f"b{i}_first"], c.first, ctx).fill_null(False))
    if c.last is not None:
        tests.append(_in_moments(wide[f"b{i}_last"], c.last, ctx).fill_null(False))
    if not tests:
        tests.append(count >= 1)
    out = tests[0]
    for t in tests[1:]:
        out = out & t
    return out


def _stage(wide: ir.Table, c: m.StageCondition, ctx: Context) -> ir.BooleanValue:
    out = wide.stage.isin([s.value for s in c.stage]).fill_null(False)
    if c.entered_within_last_days is not None:
        out = out & _window(wide.stage_since.date(), m.Window(within_last_days=c.entered_within_last_days),
                            ctx.today).fill_null(False)
    if c.lapsing is not None:
        out = out & (wide.lapsing.fill_null(False) == c.lapsing)
    return out


def predicate(wide: ir.Table, c: Any, ctx: Context) -> ir.BooleanValue:
    if isinstance(c, m.AllOf):
        parts = [predicate(wide, x, ctx) for x in c.all]
        out = parts[0]
        for p in parts[1:]:
            out = out & p
        return out
    if isinstance(c, m.AnyOf):
        parts = [predicate(wide, x, ctx) for x in c.any]
        out = parts[0]
        for p in parts[1:]:
            out = out | p
        return out
    if isinstance(c, m.NotOf):
        return ~predicate(wide, c.not_, ctx)
    if isinstance(c, m.TraitCondition):
        return _trait(wide, c, ctx)
    if isinstance(c, m.BehaviourCondition):
        return _behaviour(wide, c, ctx)
    if isinstance(c, m.StageCondition):
        return _stage(wide, c, ctx)
    if isinstance(c, m.ReachableCondition):
        return wide[f"reach__{c.reachable}"].fill_null(False)
    if isinstance(c, m.ConsentCondition):
        granted = wide[consent_column(c.consent.channel.value, c.consent.purpose.value)].fill_null(False)
        return granted if c.granted else ~granted
    if isinstance(c, m.AcquisitionCondition):
        out: ir.BooleanValue = ibis.literal(True)
        for name, test in c.tests().items():
            out = out & _compare(wide[name], test, str)
        return out
    if isinstance(c, m.BucketCondition):
        b = bucket_of(wide.person_id, c.bucket.salt, ctx.engine)
        return (b >= c.bucket.from_) & (b < c.bucket.to)
    if isinstance(c, m.ListCondition):
        return wide[list_column(c.list)].fill_null(False)
    raise AssertionError(type(c))


def universe(view: EventsView, people: ir.Table) -> ir.Table:
    """Everyone: every profile in the state DB and every person seen in the events."""
    if view.from_rollup:
        seen = view.person_days.select(person_id=view.person_days.person_id.cast("string"))  # NOT NULL there
    else:
        seen = view.events.filter(view.events.type.isin(SEEN_TYPES)).select("person_id")
    return people.select("person_id").union(seen, distinct=True)


def needs_an_event(c: m.BehaviourCondition) -> bool:
    """True when the leaf cannot hold for someone with no matching event (mirrors `_behaviour` at zero)."""
    if c.performed is False:
        return False
    holds_at_zero: list[bool] = []
    if c.count is not None:
        holds_at_zero.append((c.count.eq is None or c.count.eq == 0) and (c.count.gte or 0) <= 0)
    if c.sum is not None:
        holds_at_zero.append(all(_amount_tests(0, c.sum)))  # a sum over nothing is 0
    if c.avg is not None or c.first is not None or c.last is not None:
        holds_at_zero.append(False)  # NULL when nothing was performed
    return not all(holds_at_zero) if holds_at_zero else True


def evaluate(segment: m.Segment, view: EventsView, people: ir.Table, stages: ir.Table | None, *, today: date,
             zone: str, trait_types: dict[str, str], everyone: ir.Table | None = None,
             members_only: bool = False) -> ir.Table:
    """Everyone (or `everyone`), their people columns, and `member`.

    `members_only`: the caller keeps members only, so when the segment requires (AND at its top) an event
    leaf that nobody without a matching event can meet, start from the people the events aggregate found
    instead of from everyone — the same members, without joining every person ever seen."""
    ctx = Context(today, zone, trait_types, view.engine)
    leaves = behaviours(segment)
    aggregates = None
    if leaves:
        ctx.leaf_ids = {id(c): i for i, c in enumerate(leaves)}
        aggregates = behaviour_aggregates(view, leaves, ctx)
    top = segment.where.all if isinstance(segment.where, m.AllOf) else [segment.where]
    narrow = (members_only and everyone is None and aggregates is not None
              and any(isinstance(c, m.BehaviourCondition) and needs_an_event(c) for c in top))
    def add(wide: ir.Table, other: ir.Table) -> ir.Table:
        joined = wide.left_join(other, "person_id")
        return joined.drop(*[c for c in joined.columns if c.endswith("_right")])

    if narrow:
        assert aggregates is not None
        wide = add(aggregates, people)
    else:
        wide = add(everyone if everyone is not None else universe(view, people), people)
        if aggregates is not None:
            wide = add(wide, aggregates)
    if stages is not None:
        wide = add(wide, stages)
    return wide.mutate(member=predicate(wide, segment.where, ctx))
