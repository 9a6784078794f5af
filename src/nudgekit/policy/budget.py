"""Rule 9, budget: a message whose price is more than the prepaid balance has left, or would take its
campaign past its budget, is skipped with the reason.

The balance is only read here; the send reserves from it atomically when it is handed to a provider
(channels.balance). A campaign's budget is claimed here, at the gate, in the gate's ledger (policy.ledger),
which holds the campaign's spend locked until the gate's transaction ends, so two workers cannot both spend
its last won; a message that did not go gives its share back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from nudgekit.channels import balance
from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip
from nudgekit.store.state import BudgetClaim, CampaignSpend

RULE = "budget"


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    price = candidate.checked.cost_krw
    ledger = state.book()
    if price > 0 and state.charges(candidate.channel):
        left_cents = ledger.balance_cents()
        if left_cents is not None and left_cents < balance.cents(price):
            left = left_cents / 100
            return skip(RULE, "no_balance", f"Costs {price:g} KRW; the prepaid balance has {left:,g} KRW left "
                        "(`nudge balance add`).", f"{price:g}원이 드는데 충전 잔액이 {left:,g}원입니다.")
    if candidate.campaign is None or candidate.budget_krw is None:
        return send(RULE, "affordable", f"Costs {price:g} KRW.", f"{price:g}원.")
    cents, limit = balance.cents(price), balance.cents(candidate.budget_krw)
    if state.claims:
        held = ledger.hold_of(candidate.message_id)
        if held is not None and not held.released:
            return send(RULE, "budget_held", "Its share of the campaign budget is already held.",
                        "캠페인 예산에서 이미 몫을 받았습니다.")
        if ledger.take_budget(candidate.campaign, candidate.message_id, cents, limit, now):
            return send(RULE, "within_budget", f"Costs {price:g} KRW, within the campaign budget "
                        f"({candidate.budget_krw:g} KRW).", f"{price:g}원, 캠페인 예산 이내입니다.")
    elif ledger.spent(candidate.campaign) + cents <= limit:
        return send(RULE, "within_budget", f"Costs {price:g} KRW, within the campaign budget.",
                    f"{price:g}원, 캠페인 예산 이내입니다.")
    used = ledger.spent(candidate.campaign) / 100
    return skip(RULE, "over_budget", f"Costs {price:g} KRW; the campaign has spent {used:,g} of its "
                f"{candidate.budget_krw:,g} KRW budget.",
                f"{price:g}원이 드는데 캠페인 예산 {candidate.budget_krw:,g}원 중 {used:,g}원을 이미 썼습니다.")


def release(session: Session, message_id: str) -> None:
    """Give a message's share back to its campaign (it did not go)."""
    row = session.get(BudgetClaim, message_id)
    if row is None or row.released:
        return
    row.released = True
    session.execute(update(CampaignSpend).where(CampaignSpend.campaign == row.campaign).values(
        spent_cents=CampaignSpend.spent_cents - row.cents))
