"""Rule 8, frequency caps: at most N messages to a person within a rolling window — workspace-wide and per
channel ([[policy.caps]], e.g. one advertising push a day, three a week across all campaigns) and per
campaign (at most one of its messages per person within N hours).

A message takes a slot under every cap that covers it: held when it is queued, spent when it is handed to a
provider, released when it did not go. When a cap is full, a message of higher priority takes the slot of
the lowest-priority message still held (queued, not yet sent), which gives back its budget and is skipped at
hand-over; a spent slot is never taken back.

Counting and claiming read and change the gate's ledger (policy.ledger), loaded for the whole batch after
its people are locked, so caps hold with many workers and campaigns at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip
from nudgekit.policy.ledger import LIVE, Claim, Ledger
from nudgekit.store.state import CapClaim
from nudgekit.vocabulary import MessageChannel, PolicyStage

RULE = "frequency_cap"
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
    key = (RULE, candidate.channel, purpose, candidate.campaign, candidate.once_per_hours)
    if key not in state.memo:
        caps = [Cap(c.limit, c.hours, c.channel, c.purpose) for c in state.settings.policy.caps]
        found = [c for c in caps if c.covers(candidate.channel.value, purpose, candidate.campaign)]
        if candidate.campaign is not None and candidate.once_per_hours:
            found.append(Cap(1, candidate.once_per_hours, campaign=candidate.campaign))
        state.memo[key] = found
    return state.memo[key]


def used(ledger: Ledger, profile_id: str, cap: Cap, now: datetime, besides: str) -> int:
    """The person's live claims the cap counts, besides the message's own."""
    return sum(1 for c in ledger.live(profile_id, now - timedelta(hours=cap.hours))
               if c.message_id != besides and cap.covers(c.channel, c.purpose, c.campaign))


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    caps = caps_for(candidate, state)
    if not caps:
        return send(RULE, "no_caps", "No frequency cap covers it.", "발송 빈도 제한이 없습니다.")
    ledger = state.book()
    if state.claims:
        mine = ledger.claim_of(candidate.message_id)
        if mine is not None and mine.state in LIVE:
            if state.stage == PolicyStage.HANDOVER:
                ledger.change(mine, state="spent")
            return send(RULE, "slot_held", "Holds its place under the frequency caps since it was queued.",
                        "대기열에 들어갈 때 받은 발송 빈도 자리를 씁니다.")
        if mine is not None and mine.state == "bumped":
            return skip(RULE, "bumped", f"A higher-priority message ({mine.by}) took its place under the "
                        "frequency cap.", f"우선순위가 더 높은 메시지({mine.by})가 발송 빈도 자리를 가져갔습니다.")
    full = [cap for cap in caps if used(ledger, person.profile_id, cap, now, candidate.message_id) >= cap.limit]
    if full and state.claims:
        victim = _lowest_held(ledger, person.profile_id, full, candidate, now)
        if victim is not None:
            ledger.change(victim, state="bumped", by=candidate.message_id)
            ledger.release_budget(victim.message_id)
            _claim(ledger, candidate, person, now, state.stage)
            return send(RULE, "took_slot", f"Took the place of lower-priority message {victim.message_id} "
                        f"(campaign {victim.campaign}), still queued.",
                        f"우선순위가 낮은 대기 메시지 {victim.message_id}의 자리를 가져왔습니다.")
    if full:
        en, ko = full[0].words()
        return skip(RULE, "capped", f"Frequency cap reached: {en}.", f"발송 빈도 제한에 걸렸습니다: {ko}.")
    if state.claims:
        _claim(ledger, candidate, person, now, state.stage)
    return send(RULE, "under_cap", "Under every frequency cap.", "발송 빈도 제한 이내입니다.")


def _lowest_held(ledger: Ledger, profile_id: str, full: list[Cap], candidate: Candidate, now: datetime) -> Claim | None:
    """The lowest-priority queued message whose slot, given up, would make room under every full cap."""
    held = [c for c in ledger.live(profile_id, now - timedelta(hours=max(c.hours for c in full)))
            if c.state == "held" and c.priority < candidate.priority]
    for claim in sorted(held, key=lambda c: (c.priority, -c.at.timestamp())):
        if all(cap.covers(claim.channel, claim.purpose, claim.campaign)
               and claim.at > now - timedelta(hours=cap.hours) for cap in full):
            return claim
    return None


def _claim(ledger: Ledger, candidate: Candidate, person: Person, now: datetime, stage: PolicyStage) -> None:
    ledger.put(Claim(candidate.message_id, person.profile_id, candidate.channel.value, candidate.purpose.value,
                     candidate.campaign, candidate.priority, now, "held" if stage == PolicyStage.QUEUE else "spent"))


def release(session: Session, message_id: str) -> None:
    """Give back the slot of a message that did not go (skipped later in the chain, or refused by the vendor)."""
    session.execute(update(CapClaim).where(CapClaim.message_id == message_id, CapClaim.state.in_(LIVE))
                    .values(state="released"))
