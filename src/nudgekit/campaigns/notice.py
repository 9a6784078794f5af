"""The consent notices the law owes people (consent/notices.py) as a file campaigns-as-code applies: the
scheduler sends the notices due on every run, so no one has to remember a cron job.

    kind: notice
    name: consent_reconfirmation
    notices: [reconfirm]             # the two-year re-confirmation; result: the 14-day result notice
    schedule: {cron: "0 10 * * *"}    # every day at 10:00, the workspace's time (the default)
    lead_days: 30                    # tell people this many days before their two-year date
    channels: [email, sms, push]     # after the consent's own channel, the order to try
    per_run: 5000                    # at most this many a run; the rest go at the next

The words are the law's (the sender's name, what was consented to and when, how to keep or withdraw it), in
Korean, composed per person from their consent records; a notice file has no message to write. `plan` shows
what the next run would send, on a dry copy at the moment it launches, and preflight blocks a re-confirmation
that could not say how to withdraw from a channel. Each notice is claimed in the state DB before it goes, so
a notice file and `nudge consent notify` from cron never send the same notice twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from nudgekit.campaigns.preflight import Check
from nudgekit.campaigns.run import Progress
from nudgekit.campaigns.spec import NAME, Schedule, SpecError, Strict, validated
from nudgekit.config import Settings
from nudgekit.consent import notices
from nudgekit.consent.notices import NOTICE_CHANNELS, Kind, NoticeRun
from nudgekit.vocabulary import Channel, MessageChannel, MessagePurpose

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

DAILY = "0 10 * * *"
NoticeChannel = Literal["email", "sms", "push"]


class NoticeSpec(Strict):
    kind: Literal["notice"] = "notice"
    name: str = Field(pattern=NAME)
    description: str | None = None
    notices: list[Kind] = Field(min_length=1)
    """reconfirm: the two-year re-confirmation of an advertising consent; result: the notice of a consent,
    refusal or withdrawal, within 14 days of it."""
    schedule: Schedule = Field(default_factory=lambda: Schedule(cron=DAILY))
    lead_days: int = Field(30, ge=0, le=365)
    """A re-confirmation goes this many days before the two-year date."""
    within_days: int = Field(30, ge=1, le=365)
    """A result notice answers changes recorded in the last this many days."""
    channels: list[NoticeChannel] = Field(default_factory=lambda: [c.value for c in NOTICE_CHANNELS])
    per_run: int | None = Field(None, ge=1)
    """At most this many notices a run, the most urgent first; the rest wait for the next run."""

    @model_validator(mode="after")
    def _shape(self) -> NoticeSpec:
        if self.schedule.kind != "cron":
            raise ValueError(f"schedule: notices fall due every day, so a notice file runs on a cron schedule "
                             f"(e.g. cron: '{DAILY}', every day at 10:00)")
        if self.schedule.local_time:
            raise ValueError("schedule.local_time: notices go at the workspace's time; quiet hours keep each "
                             "person's night")
        if len(set(self.notices)) != len(self.notices):
            raise ValueError("notices: each kind once")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise ValueError("channels: at least one of email, sms and push, each once")
        return self

    # What the scheduler and plan read of any scheduled file (campaigns/live.py, campaigns/code.py).
    @property
    def occurrence(self) -> str:
        return "1"

    @property
    def canary(self) -> None:
        return None

    @property
    def purpose(self) -> MessagePurpose:
        return MessagePurpose.INFORMATIONAL

    @property
    def order(self) -> tuple[MessageChannel, ...]:
        return tuple(MessageChannel(c) for c in self.channels)

    @property
    def message_sets(self) -> list[tuple[str, Any]]:
        """None: a notice's words are composed per person, not written in the file."""
        return []


def parse(data: dict[str, Any], source: str) -> NoticeSpec:
    if {"purpose", "occurrence", "canary"} & set(data):
        raise SpecError(f"{source}: a notice is informational, runs on a schedule and is sent whole: remove "
                        "purpose, occurrence and canary")
    return validated(NoticeSpec, data, source)


def _counting(progress: Progress | None, label: str) -> Callable[[int, int], None] | None:
    """notices.send's (done, total) as the campaign bar's (label, total) -> advance(n)."""
    if progress is None:
        return None
    advance: Callable[[int], None] | None = None
    before = 0

    def step(done: int, total: int) -> None:
        nonlocal advance, before
        advance = advance or progress(label, total)
        advance(done - before)
        before = done

    return step


def send(ws: Workspace, spec: NoticeSpec, *, dry_run: bool = False, progress: Progress | None = None,
         label: str = "sending") -> NoticeRun:
    """Every notice the file's kinds have due now (dry: by which channel each would go)."""
    return notices.send(ws, dry_run=dry_run, within_days=spec.within_days, lead_days=spec.lead_days,
                        limit=spec.per_run, kinds=tuple(spec.notices), channels=spec.order,
                        campaign=spec.name, progress=_counting(progress, f"{label} {spec.name}"))


def summary(run: NoticeRun, keep: int = 3) -> dict[str, Any]:
    """What a run of the file did (or would do), in numbers, with the first `keep` notices as they read."""
    went = run.sent
    said = Counter(f"{t['channel']}: {t['reason']}" for n in run.unreachable for t in n["tried"])
    overdue = [n["due_by"] for n in went + run.unreachable if n["overdue"]]
    return {
        "due": run.due, "sent": len(went), "unreachable": len(run.unreachable), "taken_by_another_run": len(run.skipped),
        "left_for_next_run": max(0, run.due - len(went) - len(run.unreachable) - len(run.skipped)),
        "overdue": len(overdue), "first_overdue": min(overdue, default=None),
        "kinds": dict(Counter(n["kind"] for n in went)),
        "channels": dict(Counter(n["channel"] for n in went)),
        "why_unreachable": dict(said.most_common()),
        "samples": [{"user": n["user_id"] or n["profile_id"], "kind": n["kind"], "channel": n["channel"],
                     "title": n["title"], "text": n["text"]} for n in went[:keep]],
    }


def checks(spec: NoticeSpec, run: NoticeRun, seen: dict[str, Any], settings: Settings, launch: Any) -> list[Check]:
    """Preflight of a notice file on its next run (`run`, and its `summary`): a re-confirmation must say how
    to withdraw from every channel the person consented on (an error when one due cannot); the rest are
    warnings to act on."""
    when = launch.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")
    out = [Check("due", "ok", f"{len(run.sent):,} notice(s) go at the next run ({when})"
                 + (f"; {run.due:,} are due, per_run sends {spec.per_run:,} a run" if spec.per_run and
                    run.due > spec.per_run else ""))]
    if settings.sender.name:
        out.append(Check("sender", "ok", f"the notices name the sender as {settings.sender.name}"))
    else:
        out.append(Check("sender", "warning", f"[sender] name is not set: the notices name the sender as "
                         f"{settings.brand!r} (brand); set the registered name (전송자 명칭)"))
    if "reconfirm" in spec.notices:
        lacking: Counter[str] = Counter()
        for n in run.sent + run.unreachable:
            if n["kind"] == "reconfirm":
                held = {Channel(c["channel"]) for c in n["changes"]}
                lacking.update(notices.unsaid(settings, held).values())
        if lacking:
            out.append(Check("withdrawal", "error", "; ".join(
                f"{count:,} re-confirmation(s) could not say how to withdraw: set {setting}"
                for setting, count in lacking.most_common())))
        else:
            unset = notices.unsaid(settings, set(notices.BY_CONSENT))
            out.append(Check("withdrawal", "warning", "when a consent on " + ", ".join(c.value for c in unset)
                             + " comes due its notice could not say how to withdraw: set "
                             + "; ".join(dict.fromkeys(unset.values()))) if unset
                       else Check("withdrawal", "ok", "every notice says how to withdraw from each channel"))
    if seen["unreachable"]:
        out.append(Check("reach", "warning", f"{seen['unreachable']:,} person(s) no channel reaches ("
                         + ", ".join(f"{why} {count:,}" for why, count in list(seen["why_unreachable"].items())[:4])
                         + "): their notices stay due and are tried again at every run"))
    if seen["overdue"]:
        out.append(Check("overdue", "warning", f"{seen['overdue']:,} notice(s) are past the law's date already "
                         f"(the first was due by {seen['first_overdue'][:10]}): they go at the next run"))
    return out

