"""The chain: the rules in the order the architecture fixes (purpose -> consent -> suppression -> control
group -> label -> the channel's own check -> night -> quiet hours -> frequency cap -> budget), run for one
message and one person.

At a gate (QUEUE, HANDOVER) the first rule that does not say SEND ends the pass, whatever it held is given
back, and the pass is recorded in the same transaction as the frequency-cap and budget claims — before any
message leaves. A gate takes a batch of messages at once: what the rules read and claim is loaded for all of
them together and written back together (policy.ledger). A dry run (CHECK) asks every rule, claims nothing
and records nothing, so it can say every reason at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from nudgekit.policy import budget, caps, channel, consent, control, label, night, purpose, quiet, suppression
from nudgekit.policy.decision import Candidate, Decision, Person, Ruling, State
from nudgekit.policy.ledger import Ledger, lock, window_start
from nudgekit.profiles.contacts import FieldError
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
    """Evaluate one message at a gate and record it (in the caller's transaction): `gate_many` of one."""
    return gate_many([(candidate, person)], now, state)[0]


def gate_many(items: list[tuple[Candidate, Person]], now: datetime, state: State, *,
              locked: bool = False) -> list[Ruling]:
    """Evaluate a batch of messages at a gate and record every pass (in the caller's transaction, which must
    not have written yet: the people are locked first, see policy.ledger). A message that may not go now
    undoes what its pass claimed (a slot taken from a lower-priority message included) and gives back the
    frequency-cap slot and budget it held from an earlier gate. `locked`: the caller locked the people
    already (policy.ledger.lock), to read what must not change before the gate."""
    ledger = prepare(state, items, now, locked=locked)
    rulings = []
    for candidate, person in items:
        mark = ledger.mark()
        ruling = evaluate(candidate, person, now, state)
        if not ruling.sends:
            ledger.undo(mark)
            ledger.release_slot(candidate.message_id)
            ledger.release_budget(candidate.message_id)
        rulings.append(ruling)
    ledger.flush()
    return record(state.session, rulings, [person for _, person in items])


def prepare(state: State, items: list[tuple[Candidate, Person]], now: datetime, *, locked: bool = False) -> Ledger:
    """The batch's ledger: its people locked (at a gate), their claims, the messages' shares of budget, the
    campaigns' spend and which of their addresses are dead, read at once."""
    ledger = Ledger(state.session, claims=state.claims)
    people = [person.profile_id for _, person in items]
    if state.claims and not locked:
        lock(state.session, people)
    hours = [cap.hours for cap in state.settings.policy.caps]
    hours += [c.once_per_hours for c, _ in items if c.once_per_hours]
    ledger.load(people, [c.message_id for c, _ in items], window_start(now, hours),
                {c.campaign for c, _ in items if c.campaign is not None and c.budget_krw is not None})
    addresses = []
    for candidate, person in items:
        try:
            found = suppression.as_sent(candidate, suppression.addresses(candidate, person), ledger, state.settings)
        except FieldError:
            continue  # the rule says why
        addresses += [(candidate.channel, address) for address in found]
    ledger.prefetch_dead(addresses)
    state.ledger = ledger
    return ledger


def release(session: Session, message_id: str) -> None:
    caps.release(session, message_id)
    budget.release(session, message_id)


def record(session: Session, rulings: list[Ruling], people: list[Person]) -> list[Ruling]:
    """Write the passes (one row each, in one statement); a single ruling comes back with its row's id."""
    if not rulings:
        return []
    rows = []
    for ruling, person in zip(rulings, people, strict=True):
        c = ruling.candidate
        rows.append({"message_id": c.message_id, "campaign": c.campaign, "profile_id": person.profile_id,
                     "channel": c.channel.value, "purpose": c.purpose.value, "stage": ruling.stage.value,
                     "at": ruling.at, "action": ruling.action.value, "reason": ruling.reason, "until": ruling.until,
                     "test_user": person.test, "decisions": [d.as_dict() for d in ruling.decisions]})
    if len(rows) > 1:  # a batch: its callers do not ask for the rows' ids
        session.connection().execute(insert(PolicyEvaluation), rows)
        return rulings
    evaluation_id = session.connection().execute(insert(PolicyEvaluation).returning(PolicyEvaluation.id),
                                                 rows[0]).scalar_one()
    return [dataclasses.replace(rulings[0], evaluation_id=evaluation_id)]


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
