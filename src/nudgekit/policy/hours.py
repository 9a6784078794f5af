"""Hours of the day in a person's own time zone: windows like 21:00-08:00 that may wrap past midnight, and
the next moment a window opens or closes.

:TRICKY: "08:00 local" is computed as a wall-clock time in the person's zone and then turned into a moment,
so a deferral across a DST change or the date line lands on the recipient's 08:00, not on 08:00 plus a fixed
offset taken when the decision was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_SPELLED = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class Window:
    """[start, end) in local wall-clock time; start > end wraps past midnight (21:00-08:00)."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def holds(self, moment: datetime, zone: ZoneInfo) -> bool:
        """Whether the moment, read on a clock in `zone`, falls inside the window."""
        local = moment.astimezone(zone).time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def closes_after(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """The first moment after `moment` at which the local clock reads `end`."""
        return next_local(moment, zone, self.end)


def parse_window(value: str) -> Window:
    """"21:00-08:00" -> Window; ValueError in words for anything else."""
    found = _SPELLED.match(value)
    if not found:
        raise ValueError(f"{value!r} is not a window of hours; write it as HH:MM-HH:MM, e.g. 21:00-08:00")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"{value!r} is not a window of hours (hours 00-23, minutes 00-59)")
    start, end = time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2)
    if start == end:
        raise ValueError(f"{value!r} starts and ends at the same time; it would be empty")
    return Window(start, end)


def next_local(moment: datetime, zone: ZoneInfo, at: time) -> datetime:
    """The first moment strictly after `moment` whose wall-clock time in `zone` is `at` (skipping a day
    on which DST leaves that time out)."""
    day = moment.astimezone(zone).date()
    for offset in range(0, 4):
        wall = datetime.combine(day + timedelta(days=offset), at, tzinfo=zone)
        candidate = wall.astimezone(ZoneInfo("UTC"))
        if candidate.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
            continue  # a time DST skips on that day
        if candidate > moment:
            return candidate
    raise AssertionError("no such local time in four days")  # pragma: no cover
