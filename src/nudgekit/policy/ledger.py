"""What the rules read and claim besides the message and the person — frequency-cap claims, campaign budgets,
the prepaid balance, dead addresses — for a whole batch of messages at once: read in a few queries once the
batch's people are locked, changed in memory as each message passes, written back together (`flush`) in
the gate's transaction.

A pass that does not end in SEND undoes what it changed (`mark`, then `undo`), as a savepoint would: every
change records how to take itself back.

:TRICKY: caps must hold with many workers and campaigns at once, so nothing is read before the batch's
people are locked (`lock`): on PostgreSQL a transaction-scoped advisory lock per person, taken in sorted
order so two batches sharing people cannot deadlock; on SQLite a write to one `cap_locks` row, which takes the
database's write lock before anything is read, so a waiting gate never counts from a stale snapshot. A
campaign's spend is read FOR UPDATE (sorted, after the people) and written back as a difference, so two
workers cannot both spend its last won.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from nudgekit.channels import balance, feedback, registry
from nudgekit.config import Settings
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import (
    BalanceAccount,
    BudgetClaim,
    CampaignSpend,
    CapClaim,
    CapLock,
    PushToken,
    Suppression,
    in_batches,
    insert_missing,
)
from nudgekit.vocabulary import MessageChannel, TokenStatus

LIVE = ("held", "spent")
SQLITE_LOCK = "*"
"""The `cap_locks` row every gate writes first on SQLite: one writer holds the whole database there."""
CLAIM_COLUMNS = ("message_id", "profile_id", "channel", "purpose", "campaign", "priority", "at", "state", "by")
CLAIMS = select(*(getattr(CapClaim, c) for c in CLAIM_COLUMNS))
HOLDS = select(BudgetClaim.message_id, BudgetClaim.campaign, BudgetClaim.cents, BudgetClaim.at, BudgetClaim.released)


@dataclass
class Claim:
    """A message's slot under the frequency caps (a `cap_claims` row)."""

    message_id: str
    profile_id: str
    channel: str
    purpose: str
    campaign: str | None
    priority: int
    at: datetime
    state: str
    by: str | None = None


@dataclass
class Hold:
    """A message's share of its campaign's budget (a `budget_claims` row)."""

    message_id: str
    campaign: str
    cents: int
    at: datetime
    released: bool


def lock_key(profile_id: str) -> int:
    """The person's PostgreSQL advisory lock (a signed 64-bit number)."""
    return int.from_bytes(hashlib.sha256(profile_id.encode()).digest()[:8], "big", signed=True)


def lock(session: Session, profile_ids: Iterable[str]) -> None:
    """Wait for, then hold until commit, the right to claim for these people (see the module's :TRICKY:)."""
    ids = sorted(set(profile_ids))
    if not ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        keys = sorted({lock_key(i) for i in ids})
        session.execute(text("SELECT count(pg_advisory_xact_lock(k)) FROM "
                             "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS ordered"), {"keys": keys})
        return
    insert_missing(session, CapLock, profile_id=SQLITE_LOCK, claims=0)
    session.execute(update(CapLock).where(CapLock.profile_id == SQLITE_LOCK).values(claims=CapLock.claims + 1))


class Ledger:
    def __init__(self, session: Session, *, claims: bool) -> None:
        self.session = session
        self.claims = claims
        """Whether passes may claim (a gate) or only read (a dry run)."""
        self._claims: dict[str, Claim] = {}
        self._people: dict[str, list[Claim]] = defaultdict(list)
        self._since_for: dict[str, datetime] = {}
        """Per person loaded: claims made after this moment are all known."""
        self._stored_claims: set[str] = set()
        self._holds: dict[str, Hold | None] = {}
        self._stored_holds: set[str] = set()
        self._spend: dict[str, int] = {}
        self._spent_more: dict[str, int] = defaultdict(int)
        self._balance: int | None | bool = False
        self._dead: dict[tuple[MessageChannel, str], str | None] = {}
        self._numbers: dict[tuple[MessageChannel, str], str | FieldError] = {}
        self._dirty_claims: set[str] = set()
        self._dirty_holds: set[str] = set()
        self._undo: list[Callable[[], None]] = []

    # -- loading ----------------------------------------------------------------------------------

    def load(self, profile_ids: Iterable[str], message_ids: Iterable[str], since: datetime,
             campaigns: Iterable[str] = ()) -> None:
        """Read, for the batch: the people's claims made after `since` (the longest cap window), the
        messages' own claims and budget shares, and the campaigns' spend (locked at a gate)."""
        self._load_people(sorted(set(profile_ids) - self._since_for.keys()), since)
        mine = sorted(set(message_ids) - self._claims.keys())
        for chunk in in_batches(mine):
            for row in self.session.execute(CLAIMS.where(CapClaim.message_id.in_(chunk))):
                self._keep(Claim(*row))
        wanted = sorted(set(message_ids) - self._holds.keys())
        for chunk in in_batches(wanted):
            for row in self.session.execute(HOLDS.where(BudgetClaim.message_id.in_(chunk))):
                self._holds[row.message_id] = Hold(*row)
                self._stored_holds.add(row.message_id)
        for message_id in wanted:
            self._holds.setdefault(message_id, None)
        for campaign in sorted(set(campaigns) - self._spend.keys()):
            self._load_spend(campaign)

    def _load_people(self, people: list[str], since: datetime) -> None:
        for chunk in in_batches(people):
            for row in self.session.execute(CLAIMS.where(CapClaim.profile_id.in_(chunk), CapClaim.at > since)):
                self._keep(Claim(*row))
        self._since_for.update(dict.fromkeys(people, since))

    def _keep(self, claim: Claim) -> None:
        if claim.message_id in self._claims:
            return
        self._claims[claim.message_id] = claim
        self._people[claim.profile_id].append(claim)
        self._stored_claims.add(claim.message_id)

    def _load_spend(self, campaign: str) -> int:
        if campaign not in self._spend:
            query = select(CampaignSpend.spent_cents).where(CampaignSpend.campaign == campaign)
            if self.claims:
                insert_missing(self.session, CampaignSpend, campaign=campaign, spent_cents=0)
                query = query.with_for_update()
            self._spend[campaign] = int(self.session.scalar(query) or 0)
        return self._spend[campaign]

    def prefetch_dead(self, addresses: Iterable[tuple[MessageChannel, str]]) -> None:
        """Read at once which of these addresses are known not to receive."""
        wanted: dict[MessageChannel, set[str]] = defaultdict(set)
        for channel, address in addresses:
            if (channel, address) not in self._dead:
                wanted[channel].add(address)
        for channel, found in wanted.items():
            keys = {feedback.suppression_key(channel, a): a for a in found}
            for address in found:
                self._dead[(channel, address)] = None
            for chunk in in_batches(sorted(keys)):
                if channel == MessageChannel.PUSH:
                    for token, reason in self.session.execute(select(PushToken.token, PushToken.status_reason).where(
                            PushToken.token.in_(chunk), PushToken.status == TokenStatus.INVALID.value)):
                        self._dead[(channel, token)] = feedback.dead_token(reason)
                    continue
                for row in self.session.execute(select(Suppression).where(
                        Suppression.channel == channel.value, Suppression.address.in_(chunk))):
                    address = keys[row[0].address]
                    self._dead[(channel, address)] = feedback.dead_address(channel, address, row[0])

    # -- reading ----------------------------------------------------------------------------------

    def dead(self, channel: MessageChannel, address: str) -> str | None:
        """Why this address must not be tried again on the channel, or None."""
        if (channel, address) not in self._dead:
            self._dead[(channel, address)] = feedback.known_dead(self.session, channel, address)
        return self._dead[(channel, address)]

    def recipient(self, channel: MessageChannel, number: str, settings: Settings) -> str:
        """The number as the channel's provider takes it (FieldError when it cannot), worked out once per
        number."""
        key = (channel, number)
        if key not in self._numbers:
            try:
                self._numbers[key] = registry.recipient(channel, number, settings)
            except FieldError as exc:
                self._numbers[key] = exc
        found = self._numbers[key]
        if isinstance(found, FieldError):
            raise found
        return found

    def claim_of(self, message_id: str) -> Claim | None:
        if message_id not in self._claims:
            row = self.session.execute(CLAIMS.where(CapClaim.message_id == message_id)).first()
            if row is None:
                return None
            self._keep(Claim(*row))
        return self._claims[message_id]

    def live(self, profile_id: str, since: datetime) -> list[Claim]:
        """The person's held and spent claims made after `since`."""
        if profile_id not in self._since_for or since < self._since_for[profile_id]:
            self._load_people([profile_id], since)
        return [c for c in self._people[profile_id] if c.state in LIVE and c.at > since]

    def balance_cents(self) -> int | None:
        """What the prepaid balance has left (None: the workspace has no account), read once."""
        if self._balance is False:
            self._balance = self.session.scalar(select(BalanceAccount.balance_cents).where(
                BalanceAccount.id == balance.ACCOUNT))
        return self._balance  # type: ignore[return-value]

    def spent(self, campaign: str) -> int:
        return self._load_spend(campaign)

    def hold_of(self, message_id: str) -> Hold | None:
        if message_id not in self._holds:
            row = self.session.execute(HOLDS.where(BudgetClaim.message_id == message_id)).first()
            self._holds[message_id] = Hold(*row) if row is not None else None
            if row is not None:
                self._stored_holds.add(message_id)
        return self._holds[message_id]

    # -- changing ---------------------------------------------------------------------------------

    def mark(self) -> int:
        return len(self._undo)

    def undo(self, mark: int) -> None:
        while len(self._undo) > mark:
            self._undo.pop()()

    def change(self, claim: Claim, **values: object) -> None:
        before = {k: getattr(claim, k) for k in values}
        for key, value in values.items():
            setattr(claim, key, value)
        self._dirty_claims.add(claim.message_id)

        def back() -> None:
            for key, value in before.items():
                setattr(claim, key, value)
        self._undo.append(back)

    def put(self, claim: Claim) -> None:
        """Claim a slot for a message (or move its old claim to the new values)."""
        current = self._claims.get(claim.message_id)
        if current is not None:  # the same message, so the same person
            self.change(current, **{c: getattr(claim, c) for c in CLAIM_COLUMNS[1:]})
            return
        self._claims[claim.message_id] = claim
        self._people[claim.profile_id].append(claim)
        self._dirty_claims.add(claim.message_id)

        def drop() -> None:
            del self._claims[claim.message_id]
            self._people[claim.profile_id].remove(claim)
        self._undo.append(drop)

    def release_slot(self, message_id: str) -> None:
        claim = self.claim_of(message_id)
        if claim is not None and claim.state in LIVE:
            self.change(claim, state="released")

    def take_budget(self, campaign: str, message_id: str, cents: int, limit: int, now: datetime) -> bool:
        """Take the message's share if the campaign's spend stays within `limit`."""
        if self.spent(campaign) + cents > limit:
            return False
        self._add_spend(campaign, cents)
        old = self.hold_of(message_id)
        new = Hold(message_id, campaign, cents, now, False)
        self._holds[message_id] = new
        self._dirty_holds.add(message_id)
        self._undo.append(lambda: self._holds.__setitem__(message_id, old))
        return True

    def release_budget(self, message_id: str) -> None:
        """Give a message's share back to its campaign (it did not go)."""
        held = self.hold_of(message_id)
        if held is None or held.released:
            return
        self._add_spend(held.campaign, -held.cents)
        self._holds[message_id] = Hold(held.message_id, held.campaign, held.cents, held.at, True)
        self._dirty_holds.add(message_id)
        self._undo.append(lambda: self._holds.__setitem__(message_id, held))

    def _add_spend(self, campaign: str, cents: int) -> None:
        self._spend[campaign] = self.spent(campaign) + cents
        self._spent_more[campaign] += cents

        def back() -> None:
            self._spend[campaign] -= cents
            self._spent_more[campaign] -= cents
        self._undo.append(back)

    # -- writing ----------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the passes changed; they can no longer be undone."""
        session = self.session
        claims = [self._claims[m] for m in sorted(self._dirty_claims) if m in self._claims]
        new = [c for c in claims if c.message_id not in self._stored_claims]
        old = [c for c in claims if c.message_id in self._stored_claims]
        if new:
            session.connection().execute(insert(CapClaim), [{c: getattr(claim, c) for c in CLAIM_COLUMNS}
                                                            for claim in new])
        if old:
            session.execute(update(CapClaim), [{c: getattr(claim, c) for c in CLAIM_COLUMNS} for claim in old])
        self._stored_claims.update(c.message_id for c in new)
        holds = [h for m in sorted(self._dirty_holds) if (h := self._holds.get(m)) is not None]
        new_holds = [h for h in holds if h.message_id not in self._stored_holds]
        old_holds = [h for h in holds if h.message_id in self._stored_holds]
        if new_holds:
            session.connection().execute(insert(BudgetClaim), [dict(h.__dict__) for h in new_holds])
        if old_holds:
            session.execute(update(BudgetClaim), [dict(h.__dict__) for h in old_holds])
        self._stored_holds.update(h.message_id for h in new_holds)
        for campaign, cents in sorted(self._spent_more.items()):
            if cents:
                session.execute(update(CampaignSpend).where(CampaignSpend.campaign == campaign).values(
                    spent_cents=CampaignSpend.spent_cents + cents))
        self._spent_more.clear()
        self._dirty_claims.clear()
        self._dirty_holds.clear()
        self._undo.clear()


def window_start(now: datetime, hours: Iterable[float]) -> datetime:
    """The earliest claim any of these cap windows counts."""
    return now - timedelta(hours=max([0.0, *hours]))

