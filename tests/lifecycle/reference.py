"""An independent reference of the six stages in plain Python: the oracle the engine is checked against.

It follows docs/lifecycle.md literally — every gap between consecutive active days, every uninstall
signal — without the engine's one-pass shortcuts (bitmaps, "first active day in the window").
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from nudgekit.config import LifecycleSettings


@dataclass(frozen=True)
class Ev:
    person: str
    type: str
    event: str | None
    at: datetime
    props: dict | None = None


def _is_activity(e: Ev, cfg: LifecycleSettings) -> bool:
    if e.type not in ("track", "page", "screen"):
        return False
    name = e.event or ""
    if any(fnmatch.fnmatchcase(name, p) for p in cfg.ignore_events):
        return False
    return not cfg.activity_events or any(fnmatch.fnmatchcase(name, p) for p in cfg.activity_events)


def _revenue(e: Ev, cfg: LifecycleSettings) -> float:
    if e.type != "track" or e.event != cfg.revenue_event or not e.props:
        return 0.0
    value = e.props.get(cfg.revenue_property)
    try:
        return float(value) if value is not None and not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        return 0.0


def stages(events: list[Ev], as_of: date, cfg: LifecycleSettings, zone: str,
           token_invalid: dict[str, datetime] | None = None) -> dict[str, tuple[str, bool]]:
    """person -> (stage, lapsing)."""
    tz = ZoneInfo(zone)
    by_person: dict[str, list[Ev]] = defaultdict(list)
    for e in events:
        if e.type in ("identify", "track", "page", "screen") and e.at.astimezone(tz).date() <= as_of:
            by_person[e.person].append(e)
    revenue = {}
    for person, evs in by_person.items():
        revenue[person] = round(sum(_revenue(e, cfg) for e in evs
                                    if (as_of - e.at.astimezone(tz).date()).days < cfg.power_revenue_days), 2)
    spenders = sorted((r for r in revenue.values() if r > 0), reverse=True)
    threshold = None
    if cfg.power_revenue_top_percent > 0 and spenders:
        k = max(1, math.ceil(len(spenders) * cfg.power_revenue_top_percent / 100))
        threshold = spenders[k - 1]
    out = {}
    for person, evs in by_person.items():
        day = lambda e: e.at.astimezone(tz).date()  # noqa: E731
        first_day = min(day(e) for e in evs)
        acts = sorted((e for e in evs if _is_activity(e, cfg)), key=lambda e: e.at)
        active_days = sorted({day(e) for e in acts})
        signals = [e.at for e in evs if e.type == "track" and any(
            fnmatch.fnmatchcase(e.event or "", p) for p in cfg.uninstall_events)]
        if token_invalid and person in token_invalid and token_invalid[person].astimezone(tz).date() <= as_of:
            signals.append(token_invalid[person])
        last_act = acts[-1].at if acts else None
        last_signal = max(signals) if signals else None
        lapsing = not active_days or (as_of - active_days[-1]).days >= cfg.usage_cycle_days
        age = lambda d: (as_of - d).days  # noqa: E731
        if last_signal is not None and (last_act is None or last_signal > last_act):
            stage = "uninstall"
        elif age(active_days[-1] if active_days else first_day) >= cfg.churn_days:
            stage = "churn"
        elif age(first_day) < cfg.new_days:
            stage = "new"
        elif _returned(active_days, acts, signals, as_of, cfg, tz):
            stage = "resurrected"
        elif (sum(1 for d in active_days if age(d) < cfg.power_window_days) >= cfg.power_active_days
              or (threshold is not None and revenue[person] >= threshold)):
            stage = "power"
        else:
            stage = "current"
        out[person] = (stage, lapsing)
    return out


def _returned(active_days: list[date], acts: list[Ev], signals: list[datetime], as_of: date,
              cfg: LifecycleSettings, tz: ZoneInfo) -> bool:
    in_window = lambda d: (as_of - d).days < cfg.resurrected_days  # noqa: E731
    for previous, current in zip(active_days, active_days[1:], strict=False):
        if in_window(current) and (current - previous).days >= cfg.churn_days:
            return True
    for signal in signals:
        after = [e.at for e in acts if e.at >= signal]  # activity at the signal's very moment counts as after
        if after and in_window(min(after).astimezone(tz).date()):
            return True
    return False


def to_messages(events: list[Ev]) -> list[dict]:
    """Segment-shaped messages for the Python API."""
    out = []
    seen: dict[str, int] = {}
    for e in events:
        key = hashlib.sha1(repr(e).encode()).hexdigest()[:16]
        seen[key] = seen.get(key, 0) + 1  # the same event twice is two events, in any batch split
        m = {"type": e.type, "userId": e.person, "timestamp": e.at.isoformat(), "messageId": f"{key}-{seen[key]}"}
        if e.type == "track":
            m["event"] = e.event
            m["properties"] = e.props or {}
        elif e.type in ("page", "screen"):
            m["name"] = e.event
            m["properties"] = e.props or {}
        else:
            m["traits"] = {}
        out.append(m)
    return out


def to_rows(events: list[Ev]) -> dict[str, list]:
    """Columns for a raw events table (person_id, type, event, timestamp, properties)."""
    return {
        "person_id": [e.person for e in events],
        "type": [e.type for e in events],
        "event": [e.event for e in events],
        "timestamp": [e.at for e in events],
        "properties": [json.dumps(e.props) if e.props is not None else None for e in events],
    }
