"""Test sends: every message of a campaign file — each A/B variant's, each journey send step's, each notice
of a notice file, on every channel it names — sent now to the workspace's internal test users ([policy]
test_list, `nudge list add`) and their devices, rendered for each of them, before anyone else sees it.

A test send goes through the policy chain like any message (the tester's consent, the night rule: the law
does not exempt colleagues), outside the campaign: no budget, no send window, no campaign cap, not in its
results. Only people on the test list get one, so a typo cannot send a draft to a customer. Each call sends
afresh (its keys are new each time), and each row says what happened to it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from nudgekit.campaigns import code
from nudgekit.campaigns.journey import JourneySpec
from nudgekit.campaigns.notice import NoticeSpec
from nudgekit.campaigns.run import prepare_messages
from nudgekit.consent import notices
from nudgekit.delivery import outbox
from nudgekit.delivery import plan as planning
from nudgekit.delivery.worker import Worker
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import OutboxMessage, SegmentListMember

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace


def testers(ws: Workspace, users: list[str] | None) -> list[str]:
    """The test users' profile ids: those named (each must be on the test list), else the whole list."""
    listed = ws.settings.policy.test_list
    with ws.sessions() as session:
        members = list(session.scalars(select(SegmentListMember.profile_id).where(
            SegmentListMember.list_name == listed).order_by(SegmentListMember.profile_id)))
    if not users:
        if not members:
            raise FieldError("to", f"nobody is on the test list {listed!r}: add your own user with "
                             f"`nudge list add {listed} FILE` (a CSV with a user_id column)")
        return members
    chosen = []
    for user in users:
        profile_id = ws.resolve(user)
        if profile_id is None:
            raise FieldError("to", f"no user {user!r} in this workspace")
        if profile_id not in members:
            raise FieldError("to", f"{user!r} is not on the test list {listed!r}: test sends go to internal "
                             f"test users only (`nudge list add {listed} FILE`)")
        chosen.append(profile_id)
    return chosen


def send(ws: Workspace, directory: Path, *, name: str | None = None, to: list[str] | None = None
         ) -> dict[str, Any]:
    """Send every message of the folder's campaigns (or the one called `name`) to the test users now."""
    entries, _ = code.read(ws, directory)
    if name is not None:
        entries = [e for e in entries if e.name == name]
        if not entries:
            raise FieldError("name", f"no campaign called {name!r} in {directory}")
    broken = [e.error for e in entries if e.error is not None]
    if broken:
        raise FieldError("file", "; ".join(str(b) for b in broken))
    people = testers(ws, to)
    stamp = uuid.uuid4().hex[:16]
    wanted: list[tuple[planning.Request, str]] = []
    labels: dict[str, dict[str, Any]] = {}
    unsent: list[dict[str, Any]] = []
    for entry in entries:
        spec = entry.spec
        assert spec is not None and entry.digest is not None
        if isinstance(spec, NoticeSpec):
            unsent += _notices(ws, spec, entry.digest, people, stamp, wanted, labels)
            continue
        options = {k: v for k, v in {"night": spec.night, "goods": list(spec.goods)}.items() if v}
        for where, messages in spec.message_sets:
            ready = prepare_messages(ws, spec.purpose, messages, where)
            for channel, (fields, prepared) in ready.items():
                for profile_id in people:
                    key = "/".join(("test", spec.name, entry.digest[:12], where, channel.value, profile_id, stamp))
                    wanted.append((planning.Request(key, channel, fields, options, None, None, spec.in_doubt,
                                                    template=prepared), profile_id))
                    labels[outbox.message_id_for(key)] = {
                        "campaign": spec.name, "kind": "journey" if isinstance(spec, JourneySpec) else "campaign",
                        "message": _label(where), "channel": channel.value}
    planning.plan(ws, wanted)
    asyncio.run(Worker(ws).once(list(labels)))
    with ws.sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.message_id.in_(list(labels)))).all()
        sends = [{**labels[r.message_id], "user": r.profile_id, "state": r.state, "reason": r.reason,
                  "detail": r.detail, "message_id": r.message_id} for r in rows]
    sends += unsent
    sends.sort(key=lambda s: (s["campaign"], s["message"], s["channel"], s["user"]))
    return {"testers": people, "sends": sends}


def _notices(ws: Workspace, spec: NoticeSpec, digest: str, testers: list[str], stamp: str,
             wanted: list[tuple[planning.Request, str]], labels: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each notice of the file, on each of its channels, as it would read for each tester today (from their
    own consent records, due or not); a row for each tester it would have nothing to tell."""
    unsent = []
    now = ws.clock()
    for profile_id in testers:
        with ws.sessions() as session:
            found = {kind: notices.as_today(session, profile_id, kind, now) for kind in spec.notices}
        for kind, notice in found.items():
            label = {"campaign": spec.name, "kind": spec.kind, "message": f"{kind} notice"}
            if notice is None:
                unsent.append({**label, "channel": "", "user": profile_id, "state": "skipped",
                               "reason": "no_consent_record", "message_id": None,
                               "detail": "has made no advertising consent choice, so the notice would have "
                                         "nothing to tell: record one for this test user first"})
                continue
            title, text = notices.words(ws, notice)
            for channel in spec.order:
                key = "/".join(("test", spec.name, digest[:12], kind, channel.value, profile_id, stamp))
                fields = notices.message_fields(channel, title, text)
                wanted.append((planning.Request(key, channel, fields, {}, None, None, "resend"), profile_id))
                labels[outbox.message_id_for(key)] = {**label, "channel": channel.value}
    return unsent


def _label(where: str) -> str:
    """`variants.b.messages` -> variant b; `steps.push.send.messages` -> step push; `messages` -> message."""
    parts = where.split(".")
    if parts[0] == "variants":
        return f"variant {parts[1]}"
    if parts[0] == "steps":
        return f"step {parts[1]}"
    return "message"
