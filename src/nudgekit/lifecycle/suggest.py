"""`nudge lifecycle suggest`: propose the churn window and usage cycle from how users actually return.

For every person, the gaps between consecutive active days (in the look-back period) are counted; a
daily app's gaps are mostly 1, a weekly app's mostly 7. The usage cycle is proposed as the gap within
which 75% of returns happen, the churn window as the gap within which 90% happen (rounded up to a day).

:TRICKY: gaps still open (a person who has not come back yet) are not counted: they are not returns.
That makes the proposal slightly short for apps whose users come back rarely; the distribution is shown
so a person can judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis

from nudgekit.store.backend import EventsView

USAGE_SHARE = 0.75
CHURN_SHARE = 0.90


@dataclass
class Suggestion:
    as_of: date
    lookback_days: int
    returns: int
    people: int
    histogram: list[tuple[int, int]]
    """(gap in days, how many returns had that gap), by gap."""
    usage_cycle_days: int | None
    churn_days: int | None

    def quantile(self, share: float) -> int | None:
        total = sum(n for _, n in self.histogram)
        running = 0
        for gap, n in self.histogram:
            running += n
            if running >= share * total:
                return gap
        return None

    def as_dict(self) -> dict[str, Any]:
        total = sum(n for _, n in self.histogram) or 1
        running = 0
        rows = []
        for gap, n in self.histogram:
            running += n
            rows.append({"gap_days": gap, "returns": n, "share": n / total, "cumulative": running / total})
        return {"as_of": self.as_of.isoformat(), "lookback_days": self.lookback_days, "returns": self.returns,
                "people": self.people, "usage_cycle_days": self.usage_cycle_days, "churn_days": self.churn_days,
                "rule": {"usage_cycle_days": f"{USAGE_SHARE:.0%} of returns happen within it",
                         "churn_days": f"{CHURN_SHARE:.0%} of returns happen within it"},
                "distribution": rows}


def suggest(view: EventsView, as_of: date, lookback_days: int = 180) -> Suggestion:
    days = view.person_days
    start = as_of - timedelta(days=lookback_days)
    active = (days.filter((days.active > 0) & (days.day <= as_of) & (days.day > start))
              .select("person_id", "day").distinct())
    previous = active.day.lag().over(group_by=active.person_id, order_by=active.day)
    gaps = active.mutate(gap=active.day.delta(previous, unit="day")).filter(ibis._.gap.notnull())
    histogram = view.con.execute(gaps.group_by("gap").aggregate(returns=gaps.count()).order_by("gap"))
    people = int(view.con.execute(gaps.person_id.nunique()))
    pairs = [(int(g), int(n)) for g, n in zip(histogram["gap"], histogram["returns"], strict=True)]
    result = Suggestion(as_of, lookback_days, sum(n for _, n in pairs), people, pairs, None, None)
    if pairs:
        result.usage_cycle_days = result.quantile(USAGE_SHARE)
        result.churn_days = result.quantile(CHURN_SHARE)
    return result
