"""The workspace's prepaid message points (KRW): what sends through real providers reserve their price
from, and what stops a send when it runs out (`nudge balance`).

A workspace without a top-up has no prepaid balance and its sends are not limited (the provider bills it
afterwards); the first `nudge balance add` opens the account. The sandbox sends nothing and costs nothing.

:TRICKY: a reservation is one conditional UPDATE (`balance >= price`) plus a ledger row keyed by the
message id and attempt, in one savepoint: two sends cannot spend the same points, and a message holds at
most one reservation at a time. A send that certainly did not go out is refunded, and pays again when it
is retried; an uncertain one is not refunded. Amounts are hundredths of a won, as integers.
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
MAX_KRW = Decimal("1e11")


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


def cents(value: float | Decimal | str) -> int:
    """An amount in KRW as hundredths of a won; ValueError for anything that is not a finite amount we keep."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount of KRW") from None
    if not amount.is_finite() or abs(amount) >= MAX_KRW:
        raise ValueError(f"{value!r} is not an amount of KRW we can keep (at most 100,000,000,000)")
    return int((amount * 100).to_integral_value())


def _krw(value: int) -> str:
    return f"{value / 100:,.2f}".removesuffix(".00")


def top_up(session: Session, amount: float | Decimal, now: datetime, note: str | None = None) -> None:
    """Add points (opening the account on the first top-up)."""
    value = cents(amount)
    if value <= 0:
        raise ValueError("a top-up is a positive amount of KRW")
    if session.get(BalanceAccount, ACCOUNT) is None:
        try:
            with session.begin_nested():
                session.add(BalanceAccount(id=ACCOUNT, balance_cents=0, updated_at=now))
        except IntegrityError:
            pass  # opened by a concurrent first top-up
    session.execute(update(BalanceAccount).where(BalanceAccount.id == ACCOUNT).values(
        balance_cents=BalanceAccount.balance_cents + value, updated_at=now))
    session.add(BalanceEntry(at=now, kind="top_up", amount_cents=value, note=note))


def _attempts(session: Session, message_id: str) -> tuple[int, int]:
    """How many times the message reserved, and how many of those were refunded."""
    rows = {kind: count for kind, count in session.execute(select(BalanceEntry.kind, func.count()).where(
        BalanceEntry.message_id == message_id).group_by(BalanceEntry.kind))}
    return int(rows.get("reserve", 0)), int(rows.get("refund", 0))


def opened(session: Session) -> bool:
    """Whether the workspace keeps a prepaid balance (a first top-up opens it)."""
    return session.get(BalanceAccount, ACCOUNT) is not None


def reserve(session: Session, message_id: str, channel: str, price: float, now: datetime) -> str | None:
    """Take the message's price from the balance; None when taken (or nothing to take, or already paid and
    not refunded), else why not."""
    value = cents(price)
    if value <= 0 or session.get(BalanceAccount, ACCOUNT) is None:
        return None
    reserved, refunded = _attempts(session, message_id)
    if reserved > refunded:
        return None  # paid for and not given back: the same message is paid for once
    try:
        with session.begin_nested():
            taken = session.execute(update(BalanceAccount).where(
                BalanceAccount.id == ACCOUNT, BalanceAccount.balance_cents >= value).values(
                balance_cents=BalanceAccount.balance_cents - value, updated_at=now))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                left = session.scalar(select(BalanceAccount.balance_cents).where(BalanceAccount.id == ACCOUNT)) or 0
                return (f"not enough message points: this message costs {_krw(value)} KRW and {_krw(left)} KRW "
                        "are left; top up with `nudge balance add`")
            session.add(BalanceEntry(at=now, kind="reserve", amount_cents=-value, message_id=message_id,
                                     attempt=reserved + 1, channel=channel))
    except IntegrityError:
        return None  # a concurrent call reserved this attempt
    return None


def refund(session: Session, message_id: str, now: datetime) -> bool:
    """Give back the message's outstanding reservation; True when something was given back."""
    reserved, refunded = _attempts(session, message_id)
    if reserved <= refunded:
        return False
    taken = session.scalar(select(BalanceEntry).where(BalanceEntry.message_id == message_id,
                                                      BalanceEntry.kind == "reserve",
                                                      BalanceEntry.attempt == refunded + 1))
    if taken is None:
        return False
    try:
        with session.begin_nested():
            session.add(BalanceEntry(at=now, kind="refund", amount_cents=-taken.amount_cents, message_id=message_id,
                                     attempt=refunded + 1, channel=taken.channel))
            session.flush()
            session.execute(update(BalanceAccount).where(BalanceAccount.id == ACCOUNT).values(
                balance_cents=BalanceAccount.balance_cents - taken.amount_cents, updated_at=now))
    except IntegrityError:
        return False
    return True


def summary(session: Session) -> Balance:
    account = session.get(BalanceAccount, ACCOUNT)
    totals = {kind: int(total or 0) for kind, total in session.execute(
        select(BalanceEntry.kind, func.sum(BalanceEntry.amount_cents)).group_by(BalanceEntry.kind))}
    counted = select(func.count()).select_from(BalanceEntry)
    reserved = session.scalar(counted.where(BalanceEntry.kind == "reserve")) or 0
    refunded = session.scalar(counted.where(BalanceEntry.kind == "refund")) or 0
    spent = -totals.get("reserve", 0) - totals.get("refund", 0)
    return Balance(account is not None, account.balance_cents / 100 if account else 0.0,
                   totals.get("top_up", 0) / 100, spent / 100, int(reserved) - int(refunded))


def history(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(select(BalanceEntry).order_by(BalanceEntry.id.desc()).limit(limit))
    return [{"at": r.at.isoformat(), "kind": r.kind, "amount_krw": r.amount_cents / 100, "message_id": r.message_id,
             "attempt": r.attempt if r.message_id else None, "channel": r.channel, "note": r.note} for r in rows]
