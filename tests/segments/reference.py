"""Segments evaluated in plain Python over the test world: the oracle for the Ibis compiler."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

from nudgekit.segments import model as m

from .world import TODAY, ZONE, Person

TZ = ZoneInfo(ZONE)


def local_day(moment: datetime) -> date:
    return moment.astimezone(TZ).date()


def in_window(day: date, w: m.Window) -> bool:
    age = (TODAY - day).days
    if w.within_last_days is not None:
        return 0 <= age < w.within_last_days
    if w.at_least_days_ago is not None:
        return age >= w.at_least_days_ago
    if w.between is not None:
        return w.between[0] <= day <= w.between[1]
    return True


def compare(value, test: m.Test, conv=lambda v: v) -> bool:  # type: ignore[no-untyped-def]
    op, v = test.op, test.value
    if op == m.Op.EXISTS:
        return value is not None
    if op == m.Op.NOT_EXISTS:
        return value is None
    if op in (m.Op.NE, m.Op.NOT_IN) and value is None:
        return True
    if value is None:
        return False
    if op == m.Op.EQ:
        return value == conv(v)
    if op == m.Op.NE:
        return value != conv(v)
    if op == m.Op.IN:
        return value in [conv(x) for x in v]
    if op == m.Op.NOT_IN:
        return value not in [conv(x) for x in v]
    if op == m.Op.LT:
        return value < conv(v)
    if op == m.Op.LTE:
        return value <= conv(v)
    if op == m.Op.GT:
        return value > conv(v)
    if op == m.Op.GTE:
        return value >= conv(v)
    if op == m.Op.BETWEEN:
        return conv(v[0]) <= value <= conv(v[1])
    if op == m.Op.CONTAINS:
        return str(v) in str(value)
    raise AssertionError(op)


KINDS = {"plan": "string", "points": "number", "vip": "boolean", "signup_at": "datetime", "tags": "list"}


def trait(p: Person, c: m.TraitCondition) -> bool:
    value = p.traits.get(c.trait)
    kind = KINDS.get(c.trait, "string")
    if kind == "datetime" and value is not None:
        value = datetime.fromisoformat(value)
    if c.test is None:
        window = m.Window(within_last_days=c.within_last_days, at_least_days_ago=c.at_least_days_ago)
        return value is not None and in_window(local_day(value), window)
    t = c.test
    if kind == "list" and t.op == m.Op.CONTAINS:
        return value is not None and t.value in value
    if kind == "list" and value is not None:
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if kind == "datetime" and t.op not in m.NO_VALUE:
        def start(v):  # type: ignore[no-untyped-def]
            return datetime.combine(v if isinstance(v, date) else date.fromisoformat(str(v)), datetime.min.time(), TZ)
        return compare(value, t, start)
    if kind == "number" and t.op not in m.NO_VALUE:
        return compare(None if value is None else float(value), t, float)
    return compare(value, t, lambda v: v if isinstance(v, str | bool) else json.dumps(v))


def prop_ok(props: dict, f: m.PropertyFilter) -> bool:
    value = props.get(f.property)
    test = m.Test(op=f.op, value=f.value)
    if f.op in m.NO_VALUE:
        return compare(value, test)
    sample = f.value[0] if isinstance(f.value, list) and f.value else f.value
    if isinstance(sample, int | float) and not isinstance(sample, bool) and f.op != m.Op.CONTAINS:
        try:
            number = float(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        return compare(number, test, float)
    return compare(None if value is None else str(value), test, str)


def number(v):  # type: ignore[no-untyped-def]
    try:
        return float(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def amount(total: float | None, t: m.AmountTest) -> bool:
    if total is None:
        return False
    checks = [(t.gte, total >= (t.gte or 0)), (t.lte, total <= (t.lte or 0)), (t.gt, total > (t.gt or 0)),
              (t.lt, total < (t.lt or 0)), (t.eq, total == (t.eq or 0))]
    return all(ok for bound, ok in checks if bound is not None)


def behaviour(p: Person, c: m.BehaviourCondition) -> bool:
    base = [(name, ts, props) for name, ts, props in p.events
            if name == c.event and all(prop_ok(props, f) for f in c.where)]
    inside = [e for e in base if in_window(local_day(e[1]), c.window) and (TODAY - local_day(e[1])).days >= 0]
    tests = []
    if c.performed is False:
        tests.append(len(inside) == 0)
    elif c.count is not None:
        if c.count.eq is not None:
            tests.append(len(inside) == c.count.eq)
        if c.count.gte is not None:
            tests.append(len(inside) >= c.count.gte)
        if c.count.lte is not None:
            tests.append(len(inside) <= c.count.lte)
    if c.sum is not None:
        values = [number(e[2].get(c.sum.property)) for e in inside]
        tests.append(amount(sum(v for v in values if v is not None), c.sum))
    if c.avg is not None:
        values = [v for v in (number(e[2].get(c.avg.property)) for e in inside) if v is not None]
        tests.append(amount(sum(values) / len(values) if values else None, c.avg))
    if c.first is not None:
        tests.append(bool(base) and in_window(min(local_day(e[1]) for e in base), c.first))
    if c.last is not None:
        tests.append(bool(base) and in_window(max(local_day(e[1]) for e in base), c.last))
    if not tests:
        tests.append(len(inside) >= 1)
    return all(tests)


def bucket(pid: str, salt: str) -> int:
    return int(hashlib.md5(f"{salt}:{pid}".encode()).hexdigest()[:6], 16) % 100


def holds(p: Person, c) -> bool:  # type: ignore[no-untyped-def]
    if isinstance(c, m.AllOf):
        return all(holds(p, x) for x in c.all)
    if isinstance(c, m.AnyOf):
        return any(holds(p, x) for x in c.any)
    if isinstance(c, m.NotOf):
        return not holds(p, c.not_)
    if isinstance(c, m.TraitCondition):
        return trait(p, c)
    if isinstance(c, m.BehaviourCondition):
        return behaviour(p, c)
    if isinstance(c, m.StageCondition):
        ok = p.stage in [s.value for s in c.stage]
        if c.entered_within_last_days is not None:
            ok = ok and p.stage_since is not None and in_window(local_day(p.stage_since),
                                                              m.Window(within_last_days=c.entered_within_last_days))
        if c.lapsing is not None:
            ok = ok and bool(p.lapsing) == c.lapsing
        return ok
    if isinstance(c, m.ReachableCondition):
        return {"push": p.push, "sms": p.phone, "email": p.email, "kakao": p.kakao}[c.reachable]
    if isinstance(c, m.ConsentCondition):
        granted = p.consents.get(c.consent.channel.value, False) if c.consent.purpose.value == "advertising" else False
        return granted if c.granted else not granted
    if isinstance(c, m.AcquisitionCondition):
        return all(compare(p.utm_source if name == "utm_source" else None, t, str) for name, t in c.tests().items())
    if isinstance(c, m.BucketCondition):
        return c.bucket.from_ <= bucket(p.id, c.bucket.salt) < c.bucket.to
    if isinstance(c, m.ListCondition):
        return p.listed and c.list == "picked"
    raise AssertionError(type(c))


def members(world: dict[str, Person], segment: m.Segment) -> set[str]:
    return {pid for pid, p in world.items() if holds(p, segment.where)}

