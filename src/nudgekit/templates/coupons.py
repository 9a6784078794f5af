"""Coupon codes from a pool: `{{ coupon.welcome }}` gives each message its own code from the pool `welcome`.

Codes are loaded in advance (`nudge coupon load welcome codes.csv`) and given out in the order they were
loaded. A send takes the codes of its messages in the transaction that puts them in the outbox, so a code is
held by exactly one message; a message that does not go out (skipped by the policy chain, unreachable,
failed, its campaign cancelled) gives its code back. A message sent again under the same id keeps its code.
A pool with no free code left skips the person as `no_coupon`, never sends a message without its code.

Preview and dry runs show the next free codes without taking them.

:TRICKY: two sends taking from one pool at once must not take the same code: PostgreSQL skips rows another
transaction holds (FOR UPDATE SKIP LOCKED); SQLite has one writer at a time.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import CouponCode, in_batches
from nudgekit.templates.render import names_under

POOL = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A pool's name is what a template writes after `coupon.`: lower-case letters, digits and _, a letter first."""
MAX_CODE = 64
HEADERS = {"code", "codes", "coupon", "coupon_code", "쿠폰", "쿠폰번호", "쿠폰코드", "코드"}
"""A first line that says what the column is, not a code."""


def check_pool(name: str) -> str:
    name = (name or "").strip()
    if not POOL.fullmatch(name):
        raise FieldError("pool", f"{name!r} cannot be a pool's name: a template writes coupon.NAME, so use "
                         "lower-case letters, digits and _ (a letter first, at most 64)")
    return name


def code_problem(code: str) -> str | None:
    """Why a code cannot be given out, or None."""
    if not code:
        return "the code is empty"
    if len(code) > MAX_CODE:
        return f"the code is longer than {MAX_CODE} characters"
    if any(c.isspace() for c in code) or not code.isprintable():
        return "the code has a space or an invisible character in it"
    if any(mark in code for mark in ("{{", "}}", "{%", "%}")):
        return "the code has template braces in it"
    return None


def used(texts: Iterable[str]) -> set[str]:
    """The pools templates read (`coupon.welcome`, `coupon["welcome"]`)."""
    return names_under(texts, "coupon")


def read_codes(path: Path) -> Iterator[tuple[int, str]]:
    """(line, code) from a text or CSV file: the first column of each line; a first line naming the column
    (`code`, `쿠폰번호` ...) and blank lines are passed over."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp949")  # Korean Excel's CSV
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        code = row[0].strip()
        if number == 1 and code.lower() in HEADERS:
            continue
        yield number, code


@dataclass
class Loaded:
    """What loading a file of codes did."""

    pool: str
    added: int = 0
    already: int = 0
    """Codes the pool had before (left as they were)."""
    repeated: int = 0
    """Codes written twice in what was loaded (loaded once)."""
    bad: list[dict[str, Any]] = field(default_factory=list)
    """Lines that were not loaded: line, code and why."""
    free: int = 0
    """Codes of the pool no message holds, once loaded."""

    def as_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "added": self.added, "already": self.already, "repeated": self.repeated,
                "bad": self.bad, "free": self.free}


def load(session: Session, pool: str, codes: Iterable[tuple[int, str]], now: datetime) -> Loaded:
    """Add codes to a pool (made by its first code); a code it has already is left alone, a bad line is
    reported and the rest loaded."""
    pool = check_pool(pool)
    result = Loaded(pool)
    fresh: dict[str, None] = {}
    for line, code in codes:
        code = code.strip()
        problem = code_problem(code)
        if problem is not None:
            result.bad.append({"line": line, "code": code[:80], "why": problem})
        elif code in fresh:
            result.repeated += 1
        else:
            fresh[code] = None
    wanted = list(fresh)
    for chunk in in_batches(wanted):
        have = set(session.scalars(select(CouponCode.code).where(CouponCode.pool == pool,
                                                                 CouponCode.code.in_(chunk))))
        rows = [{"pool": pool, "code": c, "loaded_at": now} for c in chunk if c not in have]
        if rows:
            session.execute(CouponCode.__table__.insert(), rows)
        result.already += len(have)
        result.added += len(rows)
    result.free = free(session, pool)
    return result


def pools(session: Session) -> list[dict[str, Any]]:
    """Every pool: its codes, how many are free and taken, when codes were last loaded."""
    rows = session.execute(select(
        CouponCode.pool, func.count(), func.count(CouponCode.message_id), func.max(CouponCode.loaded_at),
        func.max(CouponCode.taken_at)).group_by(CouponCode.pool).order_by(CouponCode.pool))
    return [{"pool": pool, "codes": total, "free": total - taken, "taken": taken, "last_loaded": loaded,
             "last_taken": last_taken} for pool, total, taken, loaded, last_taken in rows]


def free(session: Session, pool: str) -> int:
    return session.scalar(select(func.count()).where(CouponCode.pool == pool, CouponCode.message_id.is_(None))) or 0


def known(session: Session, names: Iterable[str]) -> set[str]:
    """The names that are pools (have codes loaded)."""
    names = sorted(set(names))
    if not names:
        return set()
    return set(session.scalars(select(CouponCode.pool).where(CouponCode.pool.in_(names)).distinct()))


def find(session: Session, code: str) -> list[dict[str, Any]]:
    """The code in every pool that has it: whether a message holds it, which, for whom and since when."""
    rows = session.scalars(select(CouponCode).where(CouponCode.code == code.strip()).order_by(CouponCode.pool))
    return [{"pool": r.pool, "code": r.code, "loaded_at": r.loaded_at, "message_id": r.message_id,
             "profile_id": r.profile_id, "taken_at": r.taken_at} for r in rows]


def take(session: Session, wanted: Mapping[str, list[tuple[str, str | None]]],
         now: datetime) -> dict[str, dict[str, str]]:
    """Codes for messages: pool -> [(message id, profile id)] in, message id -> {pool: code} out. A message
    that holds a code of the pool already keeps it; the others take free codes in load order, as many as
    there are; a message left without one is missing from the answer for that pool."""
    given: dict[str, dict[str, str]] = {}
    for pool, messages in wanted.items():
        ids = list(dict.fromkeys(m for m, _ in messages))
        held: dict[str, str] = {}
        for chunk in in_batches(ids):
            held.update({m: c for m, c in session.execute(select(CouponCode.message_id, CouponCode.code).where(
                CouponCode.pool == pool, CouponCode.message_id.in_(chunk)))})
        owners = dict(messages)
        needing = [m for m in ids if m not in held]
        if needing:
            free_rows = session.execute(
                select(CouponCode.id, CouponCode.code).where(CouponCode.pool == pool, CouponCode.message_id.is_(None))
                .order_by(CouponCode.id).limit(len(needing)).with_for_update(skip_locked=True)).all()
            if free_rows:
                session.execute(update(CouponCode), [
                    {"id": row.id, "message_id": m, "profile_id": owners[m], "taken_at": now}
                    for row, m in zip(free_rows, needing, strict=False)])
            held.update({m: row.code for row, m in zip(free_rows, needing, strict=False)})
        for message_id, code in held.items():
            given.setdefault(message_id, {})[pool] = code
    return given


def peek(session: Session, wanted: Mapping[str, list[Any]]) -> dict[Any, dict[str, str]]:
    """The codes `take` would give (pool -> keys in, key -> {pool: code} out), taking none: the next free
    codes of each pool, one per key."""
    shown: dict[Any, dict[str, str]] = {}
    for pool, keys in wanted.items():
        codes = session.scalars(select(CouponCode.code).where(
            CouponCode.pool == pool, CouponCode.message_id.is_(None)).order_by(CouponCode.id).limit(len(keys)))
        for key, code in zip(keys, codes, strict=False):
            shown.setdefault(key, {})[pool] = code
    return shown


def release(session: Session, message_ids: Iterable[str]) -> None:
    """Give back the codes of messages that do not go out."""
    ids = sorted(set(message_ids))
    for chunk in in_batches(ids):
        session.execute(update(CouponCode).where(CouponCode.message_id.in_(chunk)).values(
            message_id=None, profile_id=None, taken_at=None))
