"""The workspace's prepaid message points (KRW): what sends through real providers reserve their price
from, and what stops a send when it runs out (`nudge balance`).

A workspace without a top-up has no prepaid balance and its sends are not limited (the provider bills it
afterwards); the first `nudge balance add` opens the account. The sandbox sends nothing and costs nothing.

:TRICKY: a reservation is one conditional UPDATE (`balance >= price`) plus a ledger row keyed by the
message id, in one savepoint: two sends cannot spend the same points, and the same message reserves once
however often it is retried. A send that certainly did not go out is refunded; an uncertain one is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nudgekit.store.state import BalanceAccount, BalanceEntry

ACCOUNT = 1
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Balance:
    prepaid: bool
    """False until the first top-up: sends are not limited."""
    balance_krw: float
    topped_up_krw: float
    spent_krw: float
    """Reserved by sends and not refunded."""
    messages: int

    def as_dict(self) -> dict[str, Any]:
        return {"prepaid": self.prepaid, "balance_krw": self.balance_krw, "topped_up_krw": self.topped_up_krw,
                "spent_krw": self.spent_krw, "messages": self.messages}


MAX_KRW = Decimal("1e11")


def krw(value: float | Decimal | str) -> Decimal:
    """An amount in KRW to the won-cent; ValueError for anything that is not a finite amount we can keep."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount of KRW") from None
    if not amount.is_finite() or abs(amount) >= MAX_KRW:
        raise ValueError(f"{value!r} is not an amount of KRW we can keep (at most 100,000,000,000)")
    return amount.quantize(CENT)


def top_up(session: Session, amount: float | Decimal, now: datetime, note: str | None = None) -> None:
    """Add points (opening the account on the first top-up)."""
    value = krw(amount)
    if value <= 0:
        raise ValueError("a top-up is a positive amount of KRW")
    account = session.get(BalanceAccount, ACCOUNT)
    if account is None:
        session.add(BalanceAccount(id=ACCOUNT, balance_krw=value, updated_at=now))
    else:
        session.execute(update(BalanceAccount).where(BalanceAccount.id == ACCOUNT).values(
            balance_krw=BalanceAccount.balance_krw + value, updated_at=now))
    session.add(BalanceEntry(at=now, kind="top_up", amount_krw=value, note=note))


def reserve(session: Session, message_id: str, channel: str, price: float, now: datetime) -> str | None:
    """Take the message's price from the balance; None when taken (or nothing to take), else why not."""
    value = krw(price)
    if value <= 0 or session.get(BalanceAccount, ACCOUNT) is None:
        return None
    try:
        with session.begin_nested():
            taken = session.execute(update(BalanceAccount).where(
                BalanceAccount.id == ACCOUNT, BalanceAccount.balance_krw >= value).values(
                balance_krw=BalanceAccount.balance_krw - value, updated_at=now))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                left = session.scalar(select(BalanceAccount.balance_krw).where(BalanceAccount.id == ACCOUNT))
                return (f"not enough message points: this message costs {value:,.2f} KRW and {left:,.2f} KRW are "
                        "left; top up with `nudge balance add`").replace(".00 ", " ")
            session.add(BalanceEntry(at=now, kind="reserve", amount_krw=-value, message_id=message_id,
                                     channel=channel))
    except IntegrityError:
        return None  # reserved before: the same message is paid for once
    return None


def refund(session: Session, message_id: str, now: datetime) -> bool:
    """Give back what the message reserved, once; True when something was given back."""
    reserved = session.scalar(select(BalanceEntry).where(BalanceEntry.message_id == message_id,
                                                         BalanceEntry.kind == "reserve"))
    if reserved is None:
        return False
    try:
        with session.begin_nested():
            session.add(BalanceEntry(at=now, kind="refund", amount_krw=-reserved.amount_krw, message_id=message_id,
                                     channel=reserved.channel))
            session.flush()
            session.execute(update(BalanceAccount).where(BalanceAccount.id == ACCOUNT).values(
                balance_krw=BalanceAccount.balance_krw - reserved.amount_krw, updated_at=now))
    except IntegrityError:
        return False
    return True


def summary(session: Session) -> Balance:
    account = session.get(BalanceAccount, ACCOUNT)
    totals = {kind: total for kind, total in session.execute(
        select(BalanceEntry.kind, func.sum(BalanceEntry.amount_krw)).group_by(BalanceEntry.kind))}
    counted = select(func.count()).select_from(BalanceEntry)
    reserved = session.scalar(counted.where(BalanceEntry.kind == "reserve")) or 0
    refunded = session.scalar(counted.where(BalanceEntry.kind == "refund")) or 0
    spent = -(totals.get("reserve") or 0) - (totals.get("refund") or 0)
    return Balance(account is not None, float(account.balance_krw) if account else 0.0,
                   float(totals.get("top_up") or 0), float(spent), int(reserved) - int(refunded))


def history(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(select(BalanceEntry).order_by(BalanceEntry.id.desc()).limit(limit))
    return [{"at": r.at.isoformat(), "kind": r.kind, "amount_krw": float(r.amount_krw), "message_id": r.message_id,
             "channel": r.channel, "note": r.note} for r in rows]
