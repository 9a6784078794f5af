"""Rule 8, frequency caps: at most N messages to a person within a rolling window — workspace-wide and per
channel ([[policy.caps]], e.g. one advertising push a day, three a week across all campaigns) and per
campaign (at most one of its messages per person within N hours).

A message takes a slot under every cap that covers it: held when it is queued, spent when it is handed to a
provider, released when it did not go. When a cap is full, a message of higher priority takes the slot of
the lowest-priority message still held (queued, not yet sent), which gives back its budget and is skipped at
hand-over; a spent slot is never taken back.

:TRICKY: caps must hold with many workers and campaigns at once. Every gate first updates the person's
`cap_locks` row (`lock`, called by policy.chain.gate), which makes gates for the same person wait for each
other (a row lock on PostgreSQL, the database's write lock on SQLite); counting and claiming happen after it
in that same transaction. It must be the transaction's first statement that writes or opens a savepoint: on
SQLite that is what takes the write lock before anything is read, so a waiting gate never counts from a
stale snapshot (and SQLite never refuses it as "database is locked").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from nudgekit.policy import budget
from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip
from nudgekit.store.state import CapClaim, CapLock, insert_missing
from nudgekit.vocabulary import MessageChannel, PolicyStage

RULE = "frequency_cap"
LIVE = ("held", "spent")
KAKAO = (MessageChannel.ALIMTALK.value, MessageChannel.BRAND_MESSAGE.value)


@dataclass(frozen=True)
class Cap:
    limit: int
    hours: float
    channel: str = "*"
    purpose: str = "advertising"
    campaign: str | None = None
    """For a campaign's own cap: only its messages count."""

    def covers(self, channel: str, purpose: str, campaign: str | None) -> bool:
        if self.campaign is not None:
            return campaign == self.campaign
        channel_ok = self.channel == "*" or channel == self.channel or (self.channel == "kakao" and channel in KAKAO)
        return channel_ok and self.purpose in ("*", purpose)

    def words(self) -> tuple[str, str]:
        span = _span(self.hours)
        if self.campaign is not None:
            return (f"this campaign at most {self.limit} per person per {span[0]}",
                    f"이 캠페인은 한 사람에게 {span[1]}에 {self.limit}번까지")
        what = "" if self.purpose == "*" else f"{self.purpose} "
        where = "all channels" if self.channel == "*" else self.channel
        return (f"at most {self.limit} {what}message{'s' if self.limit > 1 else ''} on {where} per {span[0]}",
                f"{where}에서 {span[1]}에 {self.limit}번까지")


def _span(hours: float) -> tuple[str, str]:
    if hours % 24 == 0:
        days = int(hours // 24)
        return ("day", "하루") if days == 1 else (f"{days} days", f"{days}일")
    return (f"{hours:g} hours", f"{hours:g}시간")


def caps_for(candidate: Candidate, state: State) -> list[Cap]:
    purpose = candidate.purpose.value
    caps = [Cap(c.limit, c.hours, c.channel, c.purpose) for c in state.settings.policy.caps]
    found = [c for c in caps if c.covers(candidate.channel.value, purpose, candidate.campaign)]
    if candidate.campaign is not None and candidate.once_per_hours:
        found.append(Cap(1, candidate.once_per_hours, campaign=candidate.campaign))
    return found


def _covered(cap: Cap, now: datetime) -> list[ColumnElement[bool]]:
    """The WHERE terms for the live claims a cap counts."""
    where: list[ColumnElement[bool]] = [CapClaim.state.in_(LIVE), CapClaim.at > now - timedelta(hours=cap.hours)]
    if cap.campaign is not None:
        where.append(CapClaim.campaign == cap.campaign)
        return where
    if cap.channel == "kakao":
        where.append(CapClaim.channel.in_(KAKAO))
    elif cap.channel != "*":
        where.append(CapClaim.channel == cap.channel)
    if cap.purpose != "*":
        where.append(CapClaim.purpose == cap.purpose)
    return where


def used(session: Session, profile_id: str, cap: Cap, now: datetime, besides: str) -> int:
    query = select(func.count()).select_from(CapClaim).where(
        CapClaim.profile_id == profile_id, CapClaim.message_id != besides, *_covered(cap, now))
    return int(session.scalar(query) or 0)


def lock(session: Session, profile_id: str) -> None:
    """Wait for, then hold until commit, the right to claim for this person (see the module's :TRICKY:)."""
    insert_missing(session, CapLock, profile_id=profile_id, claims=0)
    session.execute(update(CapLock).where(CapLock.profile_id == profile_id).values(claims=CapLock.claims + 1))


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    caps = caps_for(candidate, state)
    if not caps:
        return send(RULE, "no_caps", "No frequency cap covers it.", "발송 빈도 제한이 없습니다.")
    session = state.session
    if state.claims:
        mine = session.get(CapClaim, candidate.message_id)
        if mine is not None and mine.state in LIVE:
            if state.stage == PolicyStage.HANDOVER:
                mine.state = "spent"
            return send(RULE, "slot_held", "Holds its place under the frequency caps since it was queued.",
                        "대기열에 들어갈 때 받은 발송 빈도 자리를 씁니다.")
        if mine is not None and mine.state == "bumped":
            return skip(RULE, "bumped", f"A higher-priority message ({mine.by}) took its place under the "
                        "frequency cap.", f"우선순위가 더 높은 메시지({mine.by})가 발송 빈도 자리를 가져갔습니다.")
    full = [cap for cap in caps if used(session, person.profile_id, cap, now, candidate.message_id) >= cap.limit]
    if full and state.claims:
        victim = _lowest_held(session, person.profile_id, full, candidate, now)
        if victim is not None:
            victim.state, victim.by = "bumped", candidate.message_id
            budget.release(session, victim.message_id)
            _claim(session, candidate, person, now, state.stage)
            return send(RULE, "took_slot", f"Took the place of lower-priority message {victim.message_id} "
                        f"(campaign {victim.campaign}), still queued.",
                        f"우선순위가 낮은 대기 메시지 {victim.message_id}의 자리를 가져왔습니다.")
    if full:
        en, ko = full[0].words()
        return skip(RULE, "capped", f"Frequency cap reached: {en}.", f"발송 빈도 제한에 걸렸습니다: {ko}.")
    if state.claims:
        _claim(session, candidate, person, now, state.stage)
    return send(RULE, "under_cap", "Under every frequency cap.", "발송 빈도 제한 이내입니다.")


def _lowest_held(session: Session, profile_id: str, full: list[Cap], candidate: Candidate,
                 now: datetime) -> CapClaim | None:
    """The lowest-priority queued message whose slot, given up, would make room under every full cap."""
    query = select(CapClaim).where(CapClaim.profile_id == profile_id, CapClaim.state == "held",
                                   CapClaim.priority < candidate.priority,
                                   CapClaim.at > now - timedelta(hours=max(c.hours for c in full)))
    held = session.scalars(query.order_by(CapClaim.priority, CapClaim.at.desc())).all()
    for claim in held:
        if all(cap.covers(claim.channel, claim.purpose, claim.campaign)
               and claim.at > now - timedelta(hours=cap.hours) for cap in full):
            return claim
    return None


def _claim(session: Session, candidate: Candidate, person: Person, now: datetime, stage: PolicyStage) -> None:
    values = {"profile_id": person.profile_id, "channel": candidate.channel.value,
              "purpose": candidate.purpose.value, "campaign": candidate.campaign, "priority": candidate.priority,
              "at": now, "state": "held" if stage == PolicyStage.QUEUE else "spent", "by": None}
    mine = session.get(CapClaim, candidate.message_id)
    if mine is None:
        session.add(CapClaim(message_id=candidate.message_id, **values))
    else:
        for key, value in values.items():
            setattr(mine, key, value)
    session.flush()


def release(session: Session, message_id: str) -> None:
    """Give back the slot of a message that did not go (skipped later in the chain, or refused by the vendor)."""
    session.execute(update(CapClaim).where(CapClaim.message_id == message_id, CapClaim.state.in_(LIVE))
                    .values(state="released"))
