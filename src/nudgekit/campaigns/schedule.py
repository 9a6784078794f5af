"""When a campaign's runs happen: at apply (no schedule), once at a time, or on a cron schedule — in the
workspace's time zone, or with `local_time` at the same wall-clock time in each person's own zone.

A run has a launch moment (when the scheduler queues it) and, with local_time, a wall-clock time: the run
launches when that time comes in the earliest zone on Earth (UTC+14) and each person's message waits in the
outbox until that time where they are.

:TRICKY: cron times are found in the zone they are read in (cronsim), so 10:00 stays 10:00 across a
daylight-saving change, and a time a change skips runs at the first moment after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from nudgekit.campaigns.spec import Schedule

EARLIEST = timezone(timedelta(hours=14), "UTC+14")
"""The first zone to reach any wall-clock time (Kiribati's Line Islands)."""


@dataclass(frozen=True)
class Run:
    launch: datetime
    """When the scheduler queues it."""
    occurrence: str
    """Names the run in its messages' keys: the same occurrence never sends twice to a person."""
    wall: datetime | None = None
    """With local_time: the naive wall-clock time it goes at in each person's zone."""

    def due_for(self, zone: ZoneInfo, now: datetime) -> datetime | None:
        """When a person in `zone` gets it (None: now). A wall time already past where they are goes now."""
        if self.wall is None:
            return None
        due = self.wall.replace(tzinfo=zone)
        return due if due > now else None


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def first(schedule: Schedule, occurrence: str, zone: ZoneInfo, now: datetime) -> Run | None:
    """The campaign's first run from `now` (an applied one-off: now, or at its time; None: a recurring one
    whose runs are all over)."""
    if schedule.kind == "now":
        return Run(now, occurrence)
    if schedule.kind == "at":
        assert schedule.at is not None
        if schedule.local_time:
            return Run(schedule.at.replace(tzinfo=EARLIEST), occurrence, schedule.at)
        return Run(_aware(schedule.at, zone), occurrence)
    return after(schedule, zone, now - timedelta(microseconds=1))


def after(schedule: Schedule, zone: ZoneInfo, moment: datetime) -> Run | None:
    """The first cron run launching after `moment` (None for a one-off, or past `until`)."""
    from cronsim import CronSim

    if schedule.cron is None:
        return None
    read_in = EARLIEST if schedule.local_time else zone
    launch = next(CronSim(schedule.cron, moment.astimezone(read_in)))
    if schedule.until is not None and launch > _aware(schedule.until, zone):
        return None
    wall = launch.replace(tzinfo=None)
    return Run(launch.astimezone(zone), wall.strftime("%Y-%m-%dT%H:%M"), wall if schedule.local_time else None)


def upcoming(schedule: Schedule, occurrence: str, zone: ZoneInfo, now: datetime, count: int = 3) -> list[Run]:
    """The next few runs, for plan to show."""
    runs: list[Run] = []
    run = first(schedule, occurrence, zone, now)
    while run is not None and len(runs) < count:
        runs.append(run)
        run = after(schedule, zone, run.launch)
    return runs
