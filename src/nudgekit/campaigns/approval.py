"""Approval: a campaign or journey whose file says `requires_approval`, or that matches one of the workspace's
[[campaigns.approval]] rules (e.g. advertising to more than 50,000 people), is stored by `nudge apply` but
waits; it goes live only when a second person named in [campaigns] approvers approves that exact version.
Applying an edit stores a new version, which waits again: an approval never carries over to other content.

Who is who is the name `apply` and `approve` are given (--as, NUDGE_USER, else the login name): the record
says who did what, and the rule keeps one person from both applying and approving. It is accountability, not
authentication — anyone who can write the state database can write anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from nudgekit.campaigns import live
from nudgekit.campaigns.journey import JourneySpec
from nudgekit.campaigns.spec import CampaignSpec
from nudgekit.config import Settings
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import Campaign, CampaignVersion
from nudgekit.vocabulary import CampaignState

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace


def reasons(spec: CampaignSpec | JourneySpec, reach: Callable[[], int], settings: Settings) -> list[str]:
    """Why this version needs a second person's approval (empty: it does not). `reach` counts a campaign
    run's audience, or everyone who could enter a journey — only when a rule asks how many."""
    out = ["the file says requires_approval"] if spec.requires_approval else []
    channels = {c.value for _, messages in spec.message_sets for c in messages}
    counted: list[int] = []
    for rule in settings.campaigns.approval:
        if rule.purpose is not None and rule.purpose != spec.purpose.value:
            continue
        if rule.channels and not channels & set(rule.channels):
            continue
        if rule.audience_over is None:
            out.append(f"the workspace's rule for {rule.said()}")
            continue
        counted = counted or [reach()]
        if counted[0] > rule.audience_over:
            out.append(f"the workspace's rule for {rule.said()} ({counted[0]:,})")
    return out


def claim(ws: Workspace, name: str, version: int, by: str) -> dict[str, Any]:
    """Check that `by` may approve version `version` of `name` now; returns the version's stored spec. Raises
    FieldError saying why not."""
    approvers = ws.settings.campaigns.approvers
    if by not in approvers:
        raise FieldError("by", f"{by!r} is not an approver: [campaigns] approvers in nudge.toml names "
                         + (", ".join(approvers) if approvers else "nobody"))
    with ws.sessions() as session:
        now = live.current(session, name)
        row = session.get(CampaignVersion, (name, version))
        if now is None or row is None:
            raise FieldError("version", f"{name!r} has no version {version} (nudge campaign show {name})")
        if version != now.version:
            raise FieldError("version", f"version {version} of {name!r} was replaced by version {now.version} "
                             f"(applied by {_said(now.applied_by)}): an edit voids an approval, review and "
                             f"approve version {now.version}")
        if row.approved_by is not None:
            raise FieldError("version", f"version {version} of {name!r} was approved already, by {row.approved_by}")
        if now.state != CampaignState.AWAITING_APPROVAL:
            raise FieldError("version", f"version {version} of {name!r} does not need approval (it is {now.state})")
        if row.applied_by == by:
            raise FieldError("by", f"{by} applied version {version}: a second person must approve it")
        return dict(row.spec)


def record(ws: Workspace, name: str, version: int, by: str, state: CampaignState, next_run_at: datetime | None,
           cursor: str | None = None) -> bool:
    """Write the approval and the state it goes live in, if the version is still the one waiting
    (compare-and-set: of two approvers at once, or an apply in between, only one wins)."""
    now = ws.clock()
    with ws.sessions.begin() as session:
        values: dict[str, Any] = {"state": state.value, "next_run_at": next_run_at, "updated_at": now}
        if cursor is not None:
            values["cursor"] = cursor
        moved = session.execute(update(Campaign).where(
            Campaign.name == name, Campaign.version == version,
            Campaign.state == CampaignState.AWAITING_APPROVAL.value).values(**values).returning(Campaign.name)).scalar()
        if moved is None:
            return False
        session.execute(update(CampaignVersion).where(
            CampaignVersion.name == name, CampaignVersion.version == version).values(approved_by=by, approved_at=now))
    return True


def _said(who: str | None) -> str:
    return who or "someone unnamed"
