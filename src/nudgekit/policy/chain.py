"""The chain: the rules in the order the architecture fixes (purpose -> consent -> suppression -> control
group -> label -> the channel's own check -> night -> quiet hours -> frequency cap -> budget), run for one
message and one person.

At a gate (QUEUE, HANDOVER) the first rule that does not say SEND ends the pass, whatever it held is given
back, and the pass is recorded in the same transaction as the frequency-cap and budget claims — before any
message leaves. A dry run (CHECK) asks every rule, claims nothing and records nothing, so it can say every
reason at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.policy import budget, caps, channel, consent, control, label, night, purpose, quiet, suppression
from nudgekit.policy.decision import Candidate, Decision, Person, Ruling, State
from nudgekit.store.state import PolicyEvaluation
from nudgekit.vocabulary import Action

Rule = Callable[[Candidate, Person, datetime, State], Decision]

CHAIN: tuple[tuple[str, Rule], ...] = (
    (purpose.RULE, purpose.decide),
    (consent.RULE, consent.decide),
    (suppression.RULE, suppression.decide),
    (control.RULE, control.decide),
    (label.RULE, label.decide),
    (channel.RULE, channel.decide),
    (night.RULE, night.decide),
    (quiet.RULE, quiet.decide),
    (caps.RULE, caps.decide),
    (budget.RULE, budget.decide),
)
RULES = tuple(name for name, _ in CHAIN)


def evaluate(candidate: Candidate, person: Person, now: datetime, state: State) -> Ruling:
    decisions: list[Decision] = []
    final: Decision | None = None
    for _name, decide in CHAIN:
        if final is not None and state.claims:
            break
        decision = decide(candidate, person, now, state)
        decisions.append(decision)
        if decision.message is not None:
            candidate = dataclasses.replace(candidate, message=decision.message,
                                            checked=decision.checked or candidate.checked)
        if final is None and decision.action != Action.SEND:
            final = decision
    action, reason = (final.action, final.reason) if final else (Action.SEND, "send")
    return Ruling(action, reason, tuple(decisions), candidate, state.stage, now,
                  until=final.until if final else None, test_user=person.test)


def gate(candidate: Candidate, person: Person, now: datetime, state: State) -> Ruling:
    """Evaluate at a gate and record it (in the caller's transaction). A message that may not go now undoes
    what its pass claimed (a slot taken from a lower-priority message included) and gives back the
    frequency-cap slot and budget it held from an earlier gate."""
    caps.lock(state.session, person.profile_id)
    savepoint = state.session.begin_nested()
    ruling = evaluate(candidate, person, now, state)
    if ruling.sends:
        savepoint.commit()
    else:
        savepoint.rollback()
        release(state.session, candidate.message_id)
    return record(state.session, ruling, person)


def release(session: Session, message_id: str) -> None:
    caps.release(session, message_id)
    budget.release(session, message_id)


def record(session: Session, ruling: Ruling, person: Person) -> Ruling:
    c = ruling.candidate
    row = PolicyEvaluation(
        message_id=c.message_id, campaign=c.campaign, profile_id=person.profile_id,
        channel=c.channel.value, purpose=c.purpose.value, stage=ruling.stage.value, at=ruling.at,
        action=ruling.action.value, reason=ruling.reason, until=ruling.until, test_user=person.test,
        decisions=[d.as_dict() for d in ruling.decisions])
    session.add(row)
    session.flush()
    return dataclasses.replace(ruling, evaluation_id=row.id)


def recorded(session: Session, *, profile_id: str | None = None, campaign: str | None = None,
             message_id: str | None = None, limit: int = 20) -> list[PolicyEvaluation]:
    """Recorded passes, newest first."""
    query = select(PolicyEvaluation)
    if profile_id is not None:
        query = query.where(PolicyEvaluation.profile_id == profile_id)
    if campaign is not None:
        query = query.where(PolicyEvaluation.campaign == campaign)
    if message_id is not None:
        query = query.where(PolicyEvaluation.message_id == message_id)
    return list(session.scalars(query.order_by(PolicyEvaluation.id.desc()).limit(limit)))
