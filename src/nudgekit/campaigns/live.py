"""What is live: each campaign's applied versions, its state and next run, its runs — and the scheduler's
tick, which launches the runs that are due.

:TRICKY: any number of processes may tick (every `nudge serve`, `nudge campaign tick` from cron). A run is
taken by moving the campaign's `next_run_at` on with a compare-and-set UPDATE and inserting the run's row in
the same transaction: only one process wins it. A process that dies while queueing leaves the run
`launching`; a later tick relaunches a run left that way for `RELAUNCH_AFTER`, which adds only the messages
the first launch did not (their keys are in the outbox already). A recurring campaign whose runs were missed
while nothing ticked (the server down for a day) launches the latest of them only, never each in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nudgekit.campaigns import schedule
from nudgekit.campaigns.notice import NoticeSpec
from nudgekit.campaigns.schedule import Run
from nudgekit.campaigns.spec import CampaignSpec
from nudgekit.store.state import Campaign, CampaignRun, CampaignVersion
from nudgekit.vocabulary import CampaignState, RunState

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

RELAUNCH_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Live:
    name: str
    kind: str
    version: int
    state: str
    next_run_at: datetime | None
    digest: str
    spec: dict[str, Any]
    applied_by: str | None
    approved_by: str | None


def current(session: Session, name: str) -> Live | None:
    row = session.get(Campaign, name)
    if row is None:
        return None
    version = session.get(CampaignVersion, (name, row.version))
    assert version is not None
    return Live(name, row.kind, row.version, row.state, row.next_run_at, version.digest, version.spec,
                version.applied_by, version.approved_by)


def store(session: Session, name: str, spec: dict[str, Any], digest: str, source: str | None, applied_by: str | None,
          now: datetime, state: CampaignState, next_run_at: datetime | None) -> int:
    """Add a version and make it the live one; returns its number."""
    latest = session.scalar(select(func.max(CampaignVersion.version)).where(CampaignVersion.name == name)) or 0
    version = latest + 1
    session.add(CampaignVersion(name=name, version=version, spec=spec, digest=digest, source=source,
                                applied_by=applied_by, applied_at=now))
    row = session.get(Campaign, name, with_for_update=True)
    if row is None:
        session.add(Campaign(name=name, kind=spec.get("kind", "campaign"), version=version, state=state.value,
                             next_run_at=next_run_at, created_at=now, updated_at=now))
    else:
        row.version, row.state, row.next_run_at, row.updated_at, row.detail = version, state.value, next_run_at, now, None
        row.kind = spec.get("kind", "campaign")  # a name may change from campaign to journey
    session.flush()
    return version


def scheduled(stored: dict[str, Any]) -> CampaignSpec | NoticeSpec:
    """A stored version of a file the scheduler runs: a campaign, or a notice file."""
    return NoticeSpec.model_validate(stored) if stored.get("kind") == "notice" else CampaignSpec.model_validate(stored)


def has_run(session: Session, name: str, occurrence: str) -> CampaignRun | None:
    return session.get(CampaignRun, (name, occurrence))


def runs(session: Session, name: str, limit: int = 20) -> list[CampaignRun]:
    return list(session.scalars(select(CampaignRun).where(CampaignRun.campaign == name)
                                .order_by(CampaignRun.due_at.desc()).limit(limit)))


def _take(session: Session, row: Campaign, now: datetime, zone: Any,
          ) -> tuple[CampaignSpec | NoticeSpec, Run] | None:
    """Claim the campaign's due run (compare-and-set on next_run_at); None when another process has."""
    version = session.get(CampaignVersion, (row.name, row.version))
    assert version is not None
    spec = scheduled(version.spec)
    due = row.next_run_at
    assert due is not None
    run = schedule.first(spec.schedule, spec.occurrence, zone, due) if spec.schedule.kind != "cron" \
        else schedule.after(spec.schedule, zone, due - timedelta(microseconds=1))
    if run is None:
        return None
    following = schedule.after(spec.schedule, zone, run.launch)
    while following is not None and following.launch <= now:  # missed while nothing ticked: only the latest goes
        run, following = following, schedule.after(spec.schedule, zone, following.launch)
    taken = session.execute(update(Campaign).where(
        Campaign.name == row.name, Campaign.next_run_at == due, Campaign.state == CampaignState.SCHEDULED.value,
    ).values(next_run_at=following.launch if following else None, updated_at=now,
             state=(CampaignState.SCHEDULED if following else CampaignState.FINISHED).value,
             ).returning(Campaign.name)).scalar()
    if taken is None or has_run(session, row.name, run.occurrence) is not None:
        return None
    session.add(CampaignRun(campaign=row.name, occurrence=run.occurrence, version=row.version,
                            state=RunState.LAUNCHING.value, due_at=run.launch, started_at=now))
    return spec, run


def due_runs(ws: Workspace, *, only: str | None = None) -> list[tuple[CampaignSpec | NoticeSpec, Run, int]]:
    """Claim every run due now (and relaunch those a dead process left launching)."""
    now = ws.clock()
    taken: list[tuple[CampaignSpec | NoticeSpec, Run, int]] = []
    query = select(Campaign).where(Campaign.next_run_at <= now, Campaign.state == CampaignState.SCHEDULED.value)
    if only is not None:
        query = query.where(Campaign.name == only)
    with ws.sessions() as session:
        names = list(session.scalars(query.with_only_columns(Campaign.name).order_by(Campaign.next_run_at)))
    for name in names:
        with ws.sessions.begin() as session:
            row = session.get(Campaign, name)
            if row is None or row.next_run_at is None or row.next_run_at > now:
                continue
            got = _take(session, row, now, ws.settings.zone)
            if got is not None:
                taken.append((*got, row.version))
    stale = select(CampaignRun).where(CampaignRun.state == RunState.LAUNCHING.value,
                                      CampaignRun.started_at < now - RELAUNCH_AFTER)
    if only is not None:
        stale = stale.where(CampaignRun.campaign == only)
    with ws.sessions.begin() as session:
        for left in session.scalars(stale.with_for_update(skip_locked=True)):
            version = session.get(CampaignVersion, (left.campaign, left.version))
            assert version is not None
            spec = scheduled(version.spec)
            left.started_at = now
            wall = left.due_at.astimezone(schedule.EARLIEST).replace(tzinfo=None) if spec.schedule.local_time \
                else None
            taken.append((spec, Run(left.due_at, left.occurrence, wall), left.version))
    return taken


def set_run(session: Session, name: str, occurrence: str, **values: Any) -> None:
    session.execute(update(CampaignRun).where(CampaignRun.campaign == name, CampaignRun.occurrence == occurrence)
                    .values(**values))


def finish(ws: Workspace, name: str, occurrence: str, result: dict[str, Any]) -> None:
    with ws.sessions.begin() as session:
        set_run(session, name, occurrence, state=RunState.QUEUED.value, finished_at=ws.clock(), result=result)


def hold_canary(ws: Workspace, name: str, occurrence: str, release_at: datetime, result: dict[str, Any]) -> None:
    with ws.sessions.begin() as session:
        set_run(session, name, occurrence, state=RunState.CANARY.value, release_at=release_at, result={"canary": result})


def canaries_due(ws: Workspace, *, only: str | None = None, force: bool = False
                 ) -> list[tuple[CampaignSpec, Run, dict[str, Any]]]:
    """Claim the canary runs whose wait is over (`force`: also halted ones, released by a person)."""
    now = ws.clock()
    states = [RunState.CANARY.value, *([RunState.HALTED.value] if force else [])]
    query = select(CampaignRun).where(CampaignRun.state.in_(states))
    if not force:
        query = query.where(CampaignRun.release_at <= now)
    if only is not None:
        query = query.where(CampaignRun.campaign == only)
    taken = []
    with ws.sessions() as session:
        candidates = [(r.campaign, r.occurrence, r.state) for r in session.scalars(query)]
    for name, occurrence, state in candidates:
        with ws.sessions.begin() as session:
            got = session.execute(update(CampaignRun).where(
                CampaignRun.campaign == name, CampaignRun.occurrence == occurrence, CampaignRun.state == state)
                .values(state=RunState.RELEASING.value, started_at=now).returning(CampaignRun.version)).scalar()
            if got is None:
                continue
            row = session.get(CampaignRun, (name, occurrence))
            version = session.get(CampaignVersion, (name, got))
            assert row is not None and version is not None
            spec = CampaignSpec.model_validate(version.spec)
            wall = row.due_at.astimezone(schedule.EARLIEST).replace(tzinfo=None) if spec.schedule.local_time \
                else None
            taken.append((spec, Run(row.due_at, occurrence, wall), dict(row.result or {})))
    return taken


def settle_canary(ws: Workspace, name: str, occurrence: str, result: dict[str, Any], *, halted: str | None) -> None:
    """The canary run released (its result gains the rest), or halted with why (the campaign paused)."""
    now = ws.clock()
    with ws.sessions.begin() as session:
        set_run(session, name, occurrence, result=result, detail=halted,
                state=(RunState.HALTED if halted else RunState.QUEUED).value, finished_at=None if halted else now)
        if halted:
            session.execute(update(Campaign).where(Campaign.name == name).values(
                state=CampaignState.PAUSED.value, detail=f"canary guardrail: {halted}", updated_at=now))


def set_state(ws: Workspace, name: str, state: CampaignState, next_run_at: datetime | None) -> None:
    with ws.sessions.begin() as session:
        session.execute(update(Campaign).where(Campaign.name == name).values(
            state=state.value, next_run_at=next_run_at, detail=None, updated_at=ws.clock()))


def set_cursor(session: Session, name: str, cursor: str | None) -> None:
    session.execute(update(Campaign).where(Campaign.name == name).values(cursor=cursor))
