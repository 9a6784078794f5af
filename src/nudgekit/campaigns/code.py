"""Campaigns as code: a folder of campaign files, `plan` (what would change and what would be sent, nothing
written) and `apply` (make it live).

Plan reads every file, compares it with the live version, and for each new or changed campaign launches its
next run on a dry copy of the workspace (campaigns/dry.py) as of the moment the run would launch: the
audience, control group, variants, channels, every skip and deferral with its reason, the cost and the
first and last send times are what apply's run then does on unchanged data. Preflight
(campaigns/preflight.py) reads that dry run; an error stops apply for that campaign, and the others go
ahead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from nudgekit.campaigns import approval, canary, engine, journey_plan, live, notice, preflight, schedule
from nudgekit.campaigns import journey as journeys
from nudgekit.campaigns import spec as specs
from nudgekit.campaigns.dry import dry_copy
from nudgekit.campaigns.journey import JourneySpec
from nudgekit.campaigns.notice import NoticeSpec
from nudgekit.campaigns.run import Outcome, Progress, launch
from nudgekit.campaigns.spec import CampaignSpec, SpecError
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import Profile
from nudgekit.templates import store as templates
from nudgekit.vocabulary import CampaignState

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Entry:
    """One campaign file as plan and apply see it."""

    file: str
    name: str | None = None
    change: str = "invalid"
    """new | changed | unchanged | invalid"""
    error: str | None = None
    spec: CampaignSpec | JourneySpec | NoticeSpec | None = None
    stored: dict[str, Any] | None = None
    digest: str | None = None
    live_version: int | None = None
    runs: list[schedule.Run] = field(default_factory=list)
    outcome: Outcome | None = None
    rest: Outcome | None = None
    """For a canary campaign: the rest of the audience, released after the wait if the guardrails hold."""
    checks: list[preflight.Check] = field(default_factory=list)
    journey: journey_plan.JourneyPlan | None = None
    note: str | None = None
    applied: dict[str, Any] | None = None
    approval: list[str] = field(default_factory=list)
    """Why this version waits for a second person's approval (empty: it goes live on apply)."""
    notices: dict[str, Any] | None = None
    """A notice file's next run (campaigns/notice.py)."""

    @property
    def blocked(self) -> bool:
        return self.error is not None or bool(preflight.blocking(self.checks))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "name": self.name, "change": self.change, "error": self.error,
                               "live_version": self.live_version, "blocked": self.blocked, "note": self.note}
        if isinstance(self.spec, JourneySpec):
            out["kind"] = self.spec.kind
            out["purpose"] = self.spec.purpose.value
            out["journey"] = self.journey.as_dict() if self.journey is not None else None
        elif self.spec is not None:
            out["kind"] = self.spec.kind
            out["purpose"] = self.spec.purpose.value
            out["schedule"] = {"type": self.spec.schedule.kind, "local_time": self.spec.schedule.local_time,
                               "next_runs": [{"launch": r.launch.astimezone(UTC).isoformat(),
                                              "occurrence": r.occurrence,
                                              "wall": r.wall.isoformat() if r.wall else None} for r in self.runs]}
        if isinstance(self.spec, NoticeSpec):
            out["notices"] = self.notices
        out["run"] = self.outcome.as_dict() if self.outcome is not None else None
        out["rest"] = self.rest.as_dict() if self.rest is not None else None
        out["preflight"] = [c.as_dict() for c in self.checks]
        out["approval"] = self.approval
        if self.applied is not None:
            out["applied"] = self.applied
        return out


def files_in(directory: Path) -> list[Path]:
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise FieldError("directory", f"{directory}: no such folder")
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read(ws: Workspace, directory: Path) -> tuple[list[Entry], list[str]]:
    """Every campaign file's entry (invalid ones with their error) and the files that are not campaigns."""
    entries: list[Entry] = []
    ignored: list[str] = []
    seen: dict[str, str] = {}
    with ws.sessions() as session:
        latest = {t["name"]: t["version"] for t in templates.listing(session) if t["kind"] == "message"}
        for path in files_in(directory):
            entry = Entry(str(path))
            try:
                data = specs.read(path)
                if data is None:
                    ignored.append(str(path))
                    continue
                resolved = specs.pin(specs.resolve(data, path), latest)
                entry.spec = parse(resolved, str(path))
            except SpecError as exc:
                entry.error = str(exc)
                entries.append(entry)
                continue
            entry.name = entry.spec.name
            if entry.name in seen:
                entry.error = f"{path}: the name {entry.name!r} is also used by {seen[entry.name]}"
                entries.append(entry)
                continue
            seen[entry.name] = str(path)
            missing = sorted(specs.templates_named(entry.spec) - set(latest))
            if missing:
                entry.error = f"{path}: no saved template called {', '.join(missing)} (nudge template list)"
                entries.append(entry)
                continue
            entry.stored = entry.spec.model_dump(mode="json", by_alias=True) if isinstance(entry.spec, JourneySpec) \
                else {**entry.spec.model_dump(mode="json"), "channels": [c.value for c in entry.spec.order]}
            entry.digest = specs.digest(entry.stored)
            now = live.current(session, entry.name)
            entry.live_version = now.version if now else None
            entry.change = "new" if now is None else "unchanged" if now.digest == entry.digest else "changed"
            entries.append(entry)
    return entries, ignored


def parse(data: dict[str, Any], source: str) -> CampaignSpec | JourneySpec | NoticeSpec:
    """A campaign, journey or notice file's spec, by its kind."""
    kind = data.get("kind")
    return journeys.parse(data, source) if kind == "journey" else notice.parse(data, source) if kind == "notice" \
        else specs.parse(data, source)


def _everyone(ws: Workspace) -> int:
    with ws.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Profile)) or 0)


def _dry_run(ws: Workspace, entry: Entry, everyone: int, progress: Progress | None) -> None:
    """The entry's next run on a dry copy, and preflight on it."""
    spec = entry.spec
    assert spec is not None
    if isinstance(spec, JourneySpec):
        assert entry.stored is not None and entry.digest is not None
        try:
            entry.journey, entry.outcome = journey_plan.plan(ws, spec, entry.stored, entry.digest,
                                                             ws.settings.campaigns.sample)
        except FieldError as exc:
            entry.error = f"{entry.file}: {exc.field}: {exc.reason}"
            return
        entry.checks = journey_plan.checks(spec, entry.outcome, ws.settings)
        audience = spec.audience
        _needs_approval(ws, entry, lambda: len(ws.segment_members(audience.segment_of(spec.name))) if audience
                        else everyone)
        return
    now = ws.clock()
    entry.runs = schedule.upcoming(spec.schedule, spec.occurrence, ws.settings.zone, now)
    if isinstance(spec, NoticeSpec):
        _plan_notices(ws, entry, spec)
        return
    with ws.sessions() as session:
        sent = live.has_run(session, spec.name, spec.occurrence) if spec.schedule.kind != "cron" else None
    if sent is not None:
        entry.note = (f"already launched as occurrence {spec.occurrence!r} on {sent.due_at:%Y-%m-%d %H:%M} UTC: "
                      "this edit sends nothing (give it a new occurrence to send it again)")
        entry.runs = []
        return
    if not entry.runs:
        entry.note = "no runs left in its schedule"
        return
    run = entry.runs[0]
    keep = ws.settings.campaigns.sample
    with dry_copy(ws, max(now, run.launch)) as copy:
        try:
            outcome = launch(copy, spec, run, part="canary" if spec.canary else "all", keep=keep,
                             progress=progress, label="planning")
            if spec.canary is not None:
                entry.rest = launch(copy, spec, run, part="rest", keep=keep, progress=progress, label="planning")
        except FieldError as exc:
            entry.error = f"{entry.file}: {exc.field}: {exc.reason}"
            return
    entry.outcome = outcome
    whole = outcome.plus(entry.rest) if entry.rest is not None else outcome
    sends_at = run.wall or max(now, run.launch).astimezone(ws.settings.zone)
    entry.checks = preflight.run(spec, whole, ws.settings, everyone, sends_at)
    _needs_approval(ws, entry, lambda: whole.audience)


def _plan_notices(ws: Workspace, entry: Entry, spec: NoticeSpec) -> None:
    """A notice file's next run, dry, on the workspace as it will be when the run launches."""
    if not entry.runs:
        entry.note = "no runs left in its schedule"
        return
    launch = entry.runs[0].launch
    with dry_copy(ws, launch) as copy:
        found = notice.send(copy, spec, dry_run=True)
    entry.notices = notice.summary(found)
    entry.checks = notice.checks(spec, found, entry.notices, ws.settings, launch)


def _needs_approval(ws: Workspace, entry: Entry, reach: Callable[[], int]) -> None:
    assert entry.spec is not None
    entry.approval = approval.reasons(entry.spec, reach, ws.settings)
    if not entry.approval:
        return
    approvers = ws.settings.campaigns.approvers
    why = "; ".join(entry.approval)
    entry.checks.append(
        preflight.Check("approval", "warning", f"waits for approval by one of {', '.join(approvers)} ({why})")
        if approvers else preflight.Check("approval", "error", f"needs approval ({why}) but [campaigns] "
                                          "approvers in nudge.toml names nobody who could give it"))


def plan(ws: Workspace, directory: Path, *, progress: Progress | None = None) -> dict[str, Any]:
    """What apply would change and send; writes nothing."""
    entries, ignored = read(ws, directory)
    everyone = _everyone(ws)
    for entry in entries:
        if entry.error is None and entry.change != "unchanged":
            _dry_run(ws, entry, everyone, progress)
    return _report(ws, directory, entries, ignored)


def apply(ws: Workspace, directory: Path, *, applied_by: str | None = None, progress: Progress | None = None
          ) -> dict[str, Any]:
    """Make every new or changed campaign that passes preflight live; launch the runs due now."""
    entries, ignored = read(ws, directory)
    everyone = _everyone(ws)
    for entry in entries:
        if entry.error is not None or entry.change == "unchanged":
            continue
        _dry_run(ws, entry, everyone, progress)
        if entry.blocked:
            continue
        assert entry.spec is not None and entry.stored is not None and entry.digest is not None
        if entry.approval:
            with ws.sessions.begin() as session:
                version = live.store(session, entry.spec.name, entry.stored, entry.digest, entry.file, applied_by,
                                     ws.clock(), CampaignState.AWAITING_APPROVAL, None)
            entry.applied = {"version": version, "state": CampaignState.AWAITING_APPROVAL.value}
            continue
        if isinstance(entry.spec, JourneySpec):
            entry.applied = _go_live(ws, entry, applied_by)
            continue
        first = entry.runs[0] if entry.runs else None
        state = CampaignState.SCHEDULED if first is not None else CampaignState.FINISHED
        with ws.sessions.begin() as session:
            version = live.store(session, entry.spec.name, entry.stored, entry.digest, entry.file, applied_by,
                                 ws.clock(), state, first.launch if first else None)
        entry.applied = {"version": version, "state": state.value, "runs": []}
        if first is not None and first.launch <= ws.clock():
            entry.applied["runs"] = tick(ws, only=entry.spec.name, progress=progress)
    return _report(ws, directory, entries, ignored)


def _go_live(ws: Workspace, entry: Entry, applied_by: str | None) -> dict[str, Any]:
    """A journey's new version takes new entrants; people in flight finish on the version they entered."""
    spec = entry.spec
    assert isinstance(spec, JourneySpec) and entry.stored is not None and entry.digest is not None
    now = ws.clock()
    with ws.sessions.begin() as session:
        before = live.current(session, spec.name)
        version = live.store(session, spec.name, entry.stored, entry.digest, entry.file, applied_by, now,
                             CampaignState.LIVE, None)
        if before is None or before.kind != "journey" or JourneySpec.model_validate(before.spec).entry != spec.entry:
            live.set_cursor(session, spec.name, engine.start_cursor(ws, spec))
    went = engine.went_live(ws, spec)
    return {"version": version, "state": CampaignState.LIVE.value, **went}


def approve(ws: Workspace, name: str, version: int, by: str, *, progress: Progress | None = None
            ) -> dict[str, Any]:
    """A second person approves exactly this version: preflight runs again on today's data and, passing, the
    version goes live as apply would have made it (its due run launched, a journey taking people in from
    now: nobody entered while it waited)."""
    stored = approval.claim(ws, name, version, by)
    entry = Entry(f"version {version}", name, "approving", stored=stored, digest=specs.digest(stored),
                  live_version=version)
    entry.spec = JourneySpec.model_validate(stored) if stored.get("kind") == "journey" \
        else CampaignSpec.model_validate(stored)
    _dry_run(ws, entry, _everyone(ws), progress)
    errors = [c.message for c in preflight.blocking(entry.checks)] + ([entry.error] if entry.error else [])
    if errors:
        raise FieldError("preflight", f"version {version} of {name!r} fails preflight on today's data, so it "
                         "cannot go live: " + "; ".join(errors))
    result = {"campaign": name, "version": version, "approved_by": by}
    if isinstance(entry.spec, JourneySpec):
        if not approval.record(ws, name, version, by, CampaignState.LIVE, None, engine.start_cursor(ws, entry.spec)):
            raise FieldError("version", f"version {version} of {name!r} stopped waiting while it was checked")
        return {**result, "state": CampaignState.LIVE.value, **engine.went_live(ws, entry.spec)}
    first = entry.runs[0] if entry.runs else None
    state = CampaignState.SCHEDULED if first is not None else CampaignState.FINISHED
    if not approval.record(ws, name, version, by, state, first.launch if first else None):
        raise FieldError("version", f"version {version} of {name!r} stopped waiting while it was checked")
    result.update(state=state.value, note=entry.note, runs=[])
    if first is not None and first.launch <= ws.clock():
        result["runs"] = tick(ws, only=name, progress=progress)
    return result


def tick(ws: Workspace, *, only: str | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Launch every run that is due now, and release (or halt) every canary whose wait is over; what each
    queued."""
    done = []
    for spec, run, version in live.due_runs(ws, only=only):
        if isinstance(spec, NoticeSpec):
            sent = notice.summary(notice.send(ws, spec, progress=progress))
            live.finish(ws, spec.name, run.occurrence, sent)
            done.append({"campaign": spec.name, "kind": spec.kind, "version": version, "occurrence": run.occurrence,
                         "stage": "all", "launch": run.launch.astimezone(UTC).isoformat(), "notices": sent})
            continue
        result = launch(ws, spec, run, part="canary" if spec.canary else "all", progress=progress).as_dict()
        if spec.canary is not None:
            release_at = ws.clock() + timedelta(minutes=spec.canary.wait_minutes)
            live.hold_canary(ws, spec.name, run.occurrence, release_at, result)
        else:
            live.finish(ws, spec.name, run.occurrence, result)
        done.append({"campaign": spec.name, "version": version, "occurrence": run.occurrence,
                     "stage": "canary" if spec.canary else "all", "launch": run.launch.astimezone(UTC).isoformat(),
                     "run": result})
    done += release(ws, only=only, progress=progress)
    if only is None:
        walked = engine.tick(ws)
        if walked["entered"] or walked["steps"]:
            done.append({"journeys": walked})
    return done


def release(ws: Workspace, *, only: str | None = None, force: bool = False, progress: Progress | None = None
            ) -> list[dict[str, Any]]:
    """Read the guardrails of each canary whose wait is over: all within their limits, the rest of the
    audience is queued; one over, the campaign is paused and says why. `force`: a person releases a halted
    canary anyway."""
    done = []
    for spec, run, result in live.canaries_due(ws, only=only, force=force):
        rails = canary.read(ws, spec, run.occurrence)
        result["guardrails"] = [g.as_dict() for g in rails]
        tripped = [g for g in rails if g.tripped]
        item = {"campaign": spec.name, "occurrence": run.occurrence, "launch": run.launch.astimezone(UTC).isoformat(),
                "guardrails": result["guardrails"]}
        if tripped and not force:
            why = "; ".join(g.said() for g in tripped)
            with contextlib.suppress(FieldError):  # nothing of the canary left waiting: nothing to pause
                ws.control_send(spec.name, "pause")
            live.settle_canary(ws, spec.name, run.occurrence, result, halted=why)
            done.append({**item, "stage": "halted", "detail": why, "run": result.get("canary")})
            continue
        rest = launch(ws, spec, run, part="rest", progress=progress).as_dict()
        result["rest"] = rest
        live.settle_canary(ws, spec.name, run.occurrence, result, halted=None)
        done.append({**item, "stage": "released", "run": rest})
    return done


def _report(ws: Workspace, directory: Path, entries: list[Entry], ignored: list[str]) -> dict[str, Any]:
    return {"directory": str(directory), "at": ws.clock().astimezone(UTC).isoformat(),
            "campaigns": [e.as_dict() for e in entries], "ignored": ignored,
            "blocked": [e.name or e.file for e in entries if e.blocked]}


def control(ws: Workspace, name: str, action: str) -> list[dict[str, Any]]:
    """pause | resume | cancel a campaign: its sending (delivery's campaign state) and its schedule together.
    Resume releases a canary a guardrail halted and skips recurring runs missed while paused; returns what
    it released."""
    if action not in ("pause", "resume", "cancel"):
        raise FieldError("action", "say pause, resume or cancel")
    with ws.sessions() as session:
        now = live.current(session, name)
    if now is None:
        raise FieldError("campaign", f"no campaign called {name!r} has been applied (nudge campaign list)")
    if now.state == CampaignState.CANCELLED:
        raise FieldError("campaign", f"{name!r} was cancelled: apply it under a new name to send it again")
    if now.state == CampaignState.AWAITING_APPROVAL and action != "cancel":
        raise FieldError("campaign", f"version {now.version} of {name!r} waits for approval (nudge campaign approve); "
                         "until then nothing of it runs")
    if now.kind == "journey":
        return _control_journey(ws, name, action)
    released = release(ws, only=name, force=True) if action == "resume" else []
    with contextlib.suppress(FieldError):  # nothing queued yet: only the schedule changes
        ws.control_send(name, action)
    following = now.next_run_at
    spec = live.scheduled(now.spec)
    if action == "cancel":
        following = None
    elif action == "resume" and spec.schedule.kind == "cron" and following is not None and following < ws.clock():
        run = schedule.after(spec.schedule, ws.settings.zone, ws.clock())
        following = run.launch if run else None
    state = {"pause": CampaignState.PAUSED, "cancel": CampaignState.CANCELLED}.get(
        action, CampaignState.SCHEDULED if following is not None else CampaignState.FINISHED)
    live.set_state(ws, name, state, following)
    return released


def _control_journey(ws: Workspace, name: str, action: str) -> list[dict[str, Any]]:
    """pause: nobody enters or walks on (exits still count); resume: both again, the waits that ran out
    meanwhile walk at once; cancel: everyone in it leaves, for good."""
    with contextlib.suppress(FieldError):
        ws.control_send(name, action)
    state = {"pause": CampaignState.PAUSED, "resume": CampaignState.LIVE, "cancel": CampaignState.CANCELLED}[action]
    live.set_state(ws, name, state, None)
    if action == "cancel":
        return [{"journey": name, "exited": engine.cancel(ws, name)}]
    if action == "resume":
        return [{"journey": name, "steps": dict(engine.advance(ws))}]
    return []
