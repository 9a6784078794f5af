"""A worker: claims due outbox rows in batches, runs the policy chain again at hand-over, calls providers
(their batch API where they have one) at the pace settings allow, and writes every outcome.

One step: recover rows whose worker died -> claim (each speed-limited campaign takes its share of its
bucket) -> gate each row (HANDOVER: consent read again, held slots spent; skip or defer written in the
same transaction) -> group the envelopes by provider -> for each chunk: wait for the provider's tokens,
mark the rows `handing` and write the records a crash must find, call, write the outcomes.

What an outcome does to its row (`settle`): accepted -> sent; uncertain -> retried when the provider drops
repeats or the row says `resend`, else in doubt; rate limited -> queued after Retry-After (the whole
provider waits too); retryable -> queued after backoff until `max_attempts` faults; permanent or invalid
recipient -> failed, or on Kakao the fallback text message is queued as its own row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from nudgekit.channels import feedback, providers
from nudgekit.channels.check import Checked
from nudgekit.channels.provider import Envelope, Outcome, Provider, Verdict
from nudgekit.channels.receipts import person_event
from nudgekit.config import Settings
from nudgekit.delivery import circuit, handover, outbox, pacing
from nudgekit.policy import chain, ledger, people, suppression
from nudgekit.policy.decision import Candidate, purpose_of
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import OutboxMessage, limit_page_cache
from nudgekit.templates import coupons
from nudgekit.vocabulary import Action, EventName, MessageChannel, OutboxState, PolicyStage

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

log = logging.getLogger("nudgekit.delivery")
REPORT_SECONDS = 10.0
DRAIN_SECONDS = 5.0
PAGE_CACHE_MIB = 8
"""A worker's SQLite page cache per connection: its memory stays flat however big the campaign."""
LONG_WAIT = 5.0
"""A provider wait longer than this (seconds) gives the rows back instead of holding them."""


@dataclass
class Stats:
    """What a worker did (since it started)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    deferred: int = 0
    skipped: int = 0
    failed: int = 0
    in_doubt: int = 0
    fell_back: int = 0
    recovered: int = 0
    calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Ready:
    """A row the chain let through, with the message as it must go out and its envelopes."""

    row: OutboxMessage
    candidate: Candidate
    envelopes: list[Envelope]
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    @property
    def checked(self) -> Checked:
        return self.candidate.checked


class Worker:
    def __init__(self, ws: Workspace, *, name: str | None = None,
                 sleep: Callable[[float], Awaitable[Any]] | None = None, rng: random.Random | None = None,
                 drain: bool = True) -> None:
        self.ws = ws
        self.drains = drain
        """Whether it moves its spooled events into the event store now and then (`_drain`); a worker
        process does not (`nudge worker`): the event store's memory would be most of its own."""
        self.settings = ws.settings.delivery
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.sleep = sleep or asyncio.sleep
        self.rng = rng or random.Random()
        self.stats = Stats()
        self._claims = itertools.count(1)
        self._providers: dict[str, Provider] = {}
        self._idempotent: dict[str, bool] = {}
        self._receipts_at: datetime | None = None
        self._events: list[dict[str, Any]] = []
        self._drained_at: float | None = None
        limit_page_cache(ws.engine, PAGE_CACHE_MIB)

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ws.clock

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False, stop: Callable[[], bool] = lambda: False,
                  receipts: bool = True, report: Callable[[Stats], None] | None = None) -> Stats:
        """Work until `stop()` says so, or (until_idle) until nothing is due now. A fault in one round (the
        database away for a moment) is logged and the round tried again after a pause: a long-running
        worker does not die of it; its claimed rows come back to it or another worker when their lease ends.
        `report` hears the stats every REPORT_SECONDS while they change."""
        reported, last = time.monotonic(), self.stats.as_dict()
        try:
            while not stop():
                try:
                    done = await self.step()
                    if receipts:
                        await self._receipts()
                except Exception:  # noqa: BLE001 — see the docstring
                    if until_idle:
                        raise
                    log.exception("delivery worker %s: a round failed; trying again", self.name)
                    await self.sleep(self.settings.poll_seconds)
                    continue
                if report is not None and time.monotonic() - reported >= REPORT_SECONDS \
                        and self.stats.as_dict() != last:
                    report(self.stats)
                    reported, last = time.monotonic(), self.stats.as_dict()
                if done:
                    continue
                if until_idle:
                    break
                await self.sleep(self._idle_wait())
        finally:
            await self.aclose()
            if self.drains:
                self._drain()
            if report is not None and self.stats.as_dict() != last:
                report(self.stats)
        return self.stats

    async def once(self, ids: list[str]) -> Stats:
        """Send these rows now if they are due (the transactional send), then close."""
        try:
            await self.step(ids)
        finally:
            await self.aclose()
        return self.stats

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()

    def _idle_wait(self) -> float:
        with self.ws.sessions() as session:
            due = session.scalar(select(OutboxMessage.due_at).where(OutboxMessage.state.in_(outbox.WAITING))
                                 .order_by(OutboxMessage.due_at).limit(1))
        left = (due - self.clock()).total_seconds() if due is not None else 0.0
        if left <= 0:  # nothing, or only what waits for a paused campaign or provider
            return self.settings.poll_seconds
        return min(self.settings.poll_seconds, left)

    async def step(self, ids: list[str] | None = None) -> int:
        """One round: recover, claim, gate, hand over. Returns the rows claimed."""
        now = self.clock()
        with self.ws.sessions.begin() as session:
            recovered = outbox.recover(session, now, self.idempotent)
        self.stats.recovered += recovered.requeued + len(recovered.resent) + len(recovered.in_doubt)
        self.stats.in_doubt += len(recovered.in_doubt)
        token = f"{self.name}#{next(self._claims)}"
        rows = self._claim(token, now, ids)
        if not rows:
            return 0
        self.stats.claimed += len(rows)
        ready = self._gate(token, rows)
        groups: dict[str, list[tuple[Ready, Envelope]]] = {}
        for item in ready:
            for e in item.envelopes:
                groups.setdefault(providers.route(self.ws.settings, e.channel, e.to), []).append((item, e))
        for name, items in groups.items():
            await self._send_group(token, name, items)
        self._flush_events()
        return len(rows)

    # -- claiming and gating ----------------------------------------------------------------------

    def _claim(self, token: str, now: datetime, ids: list[str] | None) -> list[OutboxMessage]:
        lease = timedelta(seconds=self.settings.lease_seconds)
        with self.ws.sessions.begin() as session:
            paused = circuit.paused(session, now)
            speeds = outbox.speeds(session) if ids is None else {}
        stopped = [c.value for c in MessageChannel if any(self._routes_to(c, name) for name in paused)]
        room, rows = self.settings.batch_size, []
        for campaign, per_minute in speeds.items():
            rate = per_minute / 60
            with self.ws.sessions.begin() as session:
                granted, _wait = pacing.take(session, f"campaign:{campaign}", rate, room, now)
                got = outbox.claim(session, token, now, granted, lease, campaign=campaign, not_channels=stopped)
                pacing.give_back(session, f"campaign:{campaign}", granted - len(got), rate, now)
            rows += got
            room -= len(got)
        with self.ws.sessions.begin() as session:
            rows += outbox.claim(session, token, now, room, lease, not_campaigns=speeds, not_channels=stopped,
                                 ids=ids)
        return rows

    def _gate(self, token: str, rows: list[OutboxMessage]) -> list[Ready]:
        """The HANDOVER gate for the claimed rows, together, their skips and deferrals written in the same
        transaction."""
        ws, now = self.ws, self.clock()
        ready: list[Ready] = []
        done: list[tuple[OutboxMessage, OutboxState, str, str]] = []
        with ws.sessions.begin() as session:
            ledger.lock(session, [row.profile_id for row in rows if row.profile_id])
            state = ws._policy_state(session, PolicyStage.HANDOVER)
            state.charges = self._charges
            persons = people.load_many(session, ws.settings, [row.profile_id for row in rows if row.profile_id])
            judged: list[tuple[OutboxMessage, Candidate]] = []
            for row in rows:
                try:
                    candidate = ws._candidate(state, MessageChannel(row.channel), dict(row.fields), {
                        **row.options, "message_id": row.message_id, "campaign": row.campaign, "to": row.to})
                except FieldError as exc:
                    done.append((row, OutboxState.FAILED, "invalid_message", str(exc)))
                    continue
                if row.profile_id not in persons:
                    done.append((row, OutboxState.SKIPPED, "no_person",
                                 f"no person {row.profile_id!r} in this workspace"))
                    continue
                judged.append((row, candidate))
            rulings = chain.gate_many([(c, persons[row.profile_id]) for row, c in judged], now, state, locked=True)
            ended = [(row.message_id, self._ended(end, reason, detail, now)) for row, end, reason, detail in done]
            for (row, _), ruling in zip(judged, rulings, strict=True):
                if ruling.action == Action.SKIP:
                    words = next((d.en for d in ruling.decisions if d.reason == ruling.reason), ruling.reason)
                    ended.append((row.message_id, self._ended(OutboxState.SKIPPED, ruling.reason, words, now)))
                    continue
                if ruling.action == Action.DEFER:
                    assert ruling.until is not None
                    ended.append((row.message_id, {
                        "state": OutboxState.DEFERRED.value, "due_at": ruling.until, "reason": ruling.reason,
                        "worker": None, "lease_until": None, "updated_at": now}))
                    self.stats.deferred += 1
                    continue
                item = self._reachable(session, token, row, ruling.candidate, persons[row.profile_id], state, now)
                if item is not None:
                    ready.append(item)
            rendered = {row.message_id for row in rows if row.source is not None}  # only these can hold codes
            coupons.release(session, [m for m, values in ended if m in rendered
                                      and values["state"] != OutboxState.DEFERRED.value])
            outbox.settle(session, token, OutboxState.CLAIMED, ended)
        return ready

    def _reachable(self, session: Any, token: str, row: OutboxMessage, final: Candidate, person: Any, state: Any,
                   now: datetime) -> Ready | None:
        """The envelopes of a row the chain let through, one per address that can still receive; a row with
        none fails (or, on Kakao, falls back)."""
        kind = final.channel
        book = state.book()
        live = [a for a in suppression.addresses(final, person) if book.dead(kind, a) is None]
        if not live:
            chain.release(session, row.message_id)
            if row.source is not None:
                coupons.release(session, [row.message_id])
            self._finish(session, token, row, OutboxState.FAILED, "unreachable",
                         "every address it could go to is known not to receive", now)
            return None
        if kind in feedback.KAKAO and feedback.unreachable_on_kakao(session, live[0], person.profile_id):
            chain.release(session, row.message_id)
            self._fall_back(session, token, row, final, live[0], "unreachable on Kakao (known before)", now)
            return None
        envelopes = [handover.envelope(row.message_id if i == 0 else f"{row.message_id}:{i}", kind, address,
                                       final.message, final.checked, person.profile_id)
                     for i, address in enumerate(live)]
        return Ready(row, final, envelopes)

    # -- handing over -----------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = providers.PROVIDERS[name](
                providers.Context(self.ws.settings, self.ws.sessions, self.clock))
        return self._providers[name]

    def _charges(self, channel: MessageChannel) -> bool:
        return self.provider(providers.route(self.ws.settings, channel)).capabilities.charges

    def idempotent(self, name: str) -> bool:
        """Whether the provider drops a repeated message id (so sending again after a crash is safe)."""
        if name not in self._idempotent:
            try:
                self._idempotent[name] = self.provider(name).capabilities.idempotency
            except (KeyError, ValueError, OSError):
                self._idempotent[name] = False
        return self._idempotent[name]

    def _rate(self, name: str, provider: Provider) -> float | None:
        return self.settings.rate_per_second.get(name) or provider.capabilities.rate_per_second

    async def _send_group(self, token: str, name: str, items: list[tuple[Ready, Envelope]]) -> None:
        provider = self.provider(name)
        size = max(1, provider.capabilities.batch_size)
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            rest = items[start:]
            with self.ws.sessions.begin() as session:
                gate = circuit.enter(session, name, self.clock())
            if not gate.open:
                self._give_back(token, rest, gate.until or self.clock())
                return
            if gate.probe:
                chunk = chunk[:1]
            wait = await self._pace(name, provider, len(chunk))
            if wait is not None:
                self._give_back(token, rest, self.clock() + timedelta(seconds=wait))
                return
            await self._hand(token, name, provider, chunk)
            if gate.probe and len(items) > start + 1:
                await self._send_group(token, name, items[start + 1:])
                return

    async def _pace(self, name: str, provider: Provider, count: int) -> float | None:
        """Wait until the provider's bucket has `count` tokens; returns the wait left when it is too long to
        hold the rows (the rows go back), else None."""
        rate = self._rate(name, provider)
        bucket = f"provider:{name}"
        got = 0
        while True:
            now = self.clock()
            with self.ws.sessions.begin() as session:
                if rate is None:
                    wait = pacing.blocked(session, bucket, now)
                    granted = count if wait == 0 else 0
                else:
                    granted, wait = pacing.take(session, bucket, rate, count - got, now)
            got += granted
            if got >= count:
                return None
            if wait > LONG_WAIT:
                if rate is not None and got:
                    with self.ws.sessions.begin() as session:
                        pacing.give_back(session, bucket, got, rate, self.clock())
                return wait
            await self.sleep(max(wait, 0.001))

    def _give_back(self, token: str, items: list[tuple[Ready, Envelope]], due: datetime) -> None:
        ids = sorted({item.row.message_id for item, _ in items})
        with self.ws.sessions.begin() as session:
            outbox.release(session, token, ids, due, self.clock())

    async def _hand(self, token: str, name: str, provider: Provider, chunk: list[tuple[Ready, Envelope]]) -> None:
        now = self.clock()
        ids = sorted({item.row.message_id for item, _ in chunk})
        with self.ws.sessions.begin() as session:
            session.execute(update(OutboxMessage).where(
                OutboxMessage.message_id.in_(ids), OutboxMessage.worker == token,
                OutboxMessage.state.in_(outbox.HELD)).values(
                state=OutboxState.HANDING.value, provider=name, attempts=OutboxMessage.attempts + 1, updated_at=now))
            handing = set(session.scalars(select(OutboxMessage.message_id).where(
                outbox.mine(token, OutboxState.HANDING, *ids))))
            chunk = [(item, e) for item, e in chunk if item.row.message_id in handing]
            again = any(item.row.attempts > 0 for item, _ in chunk)
            refused = handover.begin(session, [handover.Handed(e, item.checked.cost_krw) for item, e in chunk],
                                     provider, now, again=again)
        going = [(item, e) for item, e in chunk if e.message_id not in refused]
        outcomes = await handover.call(provider, [e for _, e in going]) if going else []
        self.stats.calls += 1 if going else 0
        answered = dict(refused)
        answered.update({e.message_id: o for (_, e), o in zip(going, outcomes, strict=True)})
        now = self.clock()
        with self.ws.sessions.begin() as session:
            handover.end(session, [e for _, e in going], outcomes, provider, now)
            attempts = []
            for item, e in chunk:
                outcome = answered[e.message_id]
                item.outcomes[e.message_id] = outcome
                attempts.append({"message_id": item.row.message_id, "attempt": item.row.attempts + 1, "at": now,
                                 "worker": self.name, "provider": name, "address": e.to,
                                 "verdict": outcome.verdict.value, "code": (outcome.code or "")[:64] or None,
                                 "detail": outcome.detail or None, "retry_after": outcome.retry_after})
            outbox.insert_attempts(session, attempts)
            settled = []
            for item in {id(i): i for i, _ in chunk}.values():
                if len(item.outcomes) == len(item.envelopes):
                    values = self._settle(session, token, item, name, provider, now)
                    if values:
                        settled.append((item.row.message_id, values))
            outbox.settle(session, token, OutboxState.HANDING, settled)
            if outcomes:
                worked = circuit.judge(outcomes)
                detail = next((f"{o.code}: {o.detail}" for o in outcomes if o.verdict != Verdict.ACCEPTED), "")
                until = circuit.record(session, name, worked, detail, now, self.settings)
                if until is not None:
                    self._wait_for_circuit(session, name, until, now)
            waits = [o.retry_after for o in outcomes if o.verdict == Verdict.RATE_LIMITED and o.retry_after]
            if waits:
                pacing.block(session, f"provider:{name}", max(waits), now)

    def _wait_for_circuit(self, session: Any, name: str, until: datetime, now: datetime) -> None:
        """A provider just paused: what waits for it is due when the pause ends (status shows it; idle
        workers sleep until then)."""
        channels = [c.value for c in MessageChannel if self._routes_to(c, name)]
        if channels:
            session.execute(update(OutboxMessage).where(
                OutboxMessage.state.in_(outbox.WAITING), OutboxMessage.channel.in_(channels),
                OutboxMessage.due_at < until).values(due_at=until, updated_at=now))

    def _routes_to(self, channel: MessageChannel, name: str) -> bool:
        try:
            return providers.route(self.ws.settings, channel) == name
        except ValueError:
            return False

    # -- outcomes ---------------------------------------------------------------------------------

    def _settle(self, session: Any, token: str, item: Ready, name: str, provider: Provider,
                now: datetime) -> dict[str, Any]:
        """A row's outcome once every address it went to has answered: the values to write (none when it
        was written here, as a fallback)."""
        row, outcomes = item.row, list(item.outcomes.values())
        verdicts = {o.verdict for o in outcomes}
        first = next((o for o in outcomes if o.verdict != Verdict.ACCEPTED), outcomes[0])
        words = f"{first.code}: {first.detail}" if first.code else first.detail
        attempts = row.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "worker": None, "lease_until": None, "updated_at": now}
        if Verdict.ACCEPTED in verdicts:
            accepted = next(o for o in outcomes if o.verdict == Verdict.ACCEPTED)
            values.update(state=OutboxState.SENT.value, reason=None, detail=None, finished_at=now,
                          provider_message_id=accepted.provider_message_id,
                          cost_krw=item.checked.cost_krw if provider.capabilities.charges else 0.0)
            self.stats.sent += 1
            self._event(row, EventName.MESSAGE_SENT, "sent", now, {"provider": name, "type": item.checked.type,
                                                                     "campaign": row.campaign})
        elif Verdict.UNCERTAIN in verdicts and not (self.idempotent(name) or row.in_doubt == "resend"):
            values.update(state=OutboxState.IN_DOUBT.value, reason="uncertain", detail=words, finished_at=now)
            self.stats.in_doubt += 1
        elif verdicts & {Verdict.UNCERTAIN, Verdict.RETRYABLE, Verdict.RATE_LIMITED}:
            limited = verdicts == {Verdict.RATE_LIMITED}
            failures = row.failures + (0 if limited else 1)
            if limited:
                delay = max([o.retry_after or 0 for o in outcomes] + [self.settings.retry_base_seconds])
            else:
                delay = pacing.backoff(failures, self.settings.retry_base_seconds, self.settings.retry_max_seconds,
                                       self.rng)
            due = now + timedelta(seconds=delay)
            expired = due > row.created_at + timedelta(hours=self.settings.give_up_hours)
            if failures >= self.settings.max_attempts or expired:
                doubt = Verdict.UNCERTAIN in verdicts
                state = OutboxState.IN_DOUBT if doubt else OutboxState.FAILED
                values.update(state=state.value, reason="expired" if expired else "retries_exhausted",
                              detail=words, finished_at=now, failures=failures)
                if doubt:
                    self.stats.in_doubt += 1
                else:
                    self._fail(session, row, now)
            else:
                values.update(state=OutboxState.QUEUED.value, due_at=due, failures=failures,
                              reason=first.verdict.value, detail=words)
                self.stats.retried += 1
        elif row.channel in (c.value for c in feedback.KAKAO) and item.checked.fallback is not None:
            values = {}
            chain.release(session, row.message_id)
            self._fall_back(session, token, row, item.candidate, item.envelopes[0].to, words, now,
                            state=OutboxState.HANDING, attempts=attempts)
        else:
            values.update(state=OutboxState.FAILED.value, reason=first.code if first.code in (
                "no_balance", "brand_day_taken", "sent_before") else first.verdict.value, detail=words,
                finished_at=now)
            self._fail(session, row, now)
        return values

    def _fail(self, session: Any, row: OutboxMessage, now: datetime) -> None:
        chain.release(session, row.message_id)
        if row.source is not None:  # a rendered message (only those can hold coupon codes)
            coupons.release(session, [row.message_id])
        self.stats.failed += 1
        self._event(row, EventName.MESSAGE_FAILED, "failed", now, {"campaign": row.campaign})

    def _fall_back(self, session: Any, token: str, row: OutboxMessage, candidate: Candidate, phone: str, why: str,
                   now: datetime, *, state: OutboxState = OutboxState.CLAIMED, attempts: int | None = None) -> None:
        """Close a Kakao message as failed and queue its fallback text message as a row of its own (it passes
        the chain again: an SMS advertisement needs SMS consent and its own label)."""
        fallback = candidate.checked.fallback
        values: dict[str, Any] = {"worker": None, "lease_until": None, "updated_at": now, "finished_at": now,
                                  "state": OutboxState.FAILED.value, "detail": why}
        if attempts is not None:
            values["attempts"] = attempts
        if fallback is None:
            values["reason"] = "unreachable_on_kakao"
            self._fail(session, row, now)
        else:
            values["reason"] = "fell_back"
            message = fallback.message
            outbox.add(session, outbox.Planned(
                f"{row.key}#fallback", MessageChannel.SMS.value,
                purpose_of(MessageChannel.SMS, message).value,
                message.model_dump(mode="json", exclude_none=True), dict(row.options), OutboxState.QUEUED, now,
                row.profile_id, row.campaign, phone, in_doubt=row.in_doubt, fallback_of=row.message_id,
                variant=row.variant), now)
            self.stats.fell_back += 1
        session.execute(update(OutboxMessage).where(outbox.mine(token, state, row.message_id)).values(**values))

    def _finish(self, session: Any, token: str, row: OutboxMessage, state: OutboxState, reason: str, detail: str,
                now: datetime) -> None:
        outbox.settle(session, token, OutboxState.CLAIMED, [(row.message_id, self._ended(state, reason, detail, now))])

    def _ended(self, state: OutboxState, reason: str, detail: str, now: datetime) -> dict[str, Any]:
        """The values that end a claimed row unsent (skipped or failed), counted in the stats."""
        if state == OutboxState.SKIPPED:
            self.stats.skipped += 1
        else:
            self.stats.failed += 1
        return {"state": state.value, "reason": reason[:64], "detail": detail, "worker": None, "lease_until": None,
                "updated_at": now, "finished_at": now}

    def _event(self, row: OutboxMessage, name: EventName, key: str, when: datetime,
               properties: dict[str, Any]) -> None:
        event = person_event(row, name, key, when, {k: v for k, v in properties.items() if v is not None})
        if event is not None:
            self._events.append(event)

    def _flush_events(self) -> None:
        """The step's message events, after their rows are committed (an event never tells of a send that
        was rolled back): spooled at once, moved into the event store now and then (see `_drain`)."""
        events, self._events = self._events, []
        self.ws.spool_events(events)
        now = time.monotonic()
        if self.drains and events and (self._drained_at is None or now - self._drained_at >= DRAIN_SECONDS):
            self._drained_at = now
            self._drain()

    def _drain(self) -> None:
        """Move spooled events into the event store unless another process holds it: they wait in the spool
        (durable) for the next try, the server's drainer or any flush."""
        from nudgekit.store.events import EventStoreBusy

        lock_timeout, self.ws.events.lock_timeout = self.ws.events.lock_timeout, 1.0
        try:
            self.ws.events.drain()
        except EventStoreBusy:
            log.info("delivery worker %s: the event store is busy; its events wait in the spool", self.name)
        except Exception:  # e.g. journeys could not record what the events did: the parts stay for the next drain
            log.exception("delivery worker %s: draining the spool failed; its events wait there", self.name)
        finally:
            self.ws.events.lock_timeout = lock_timeout

    async def _receipts(self) -> None:
        """Now and then, ask the vendors that report later what became of what they accepted."""
        now = self.clock()
        if self._receipts_at is not None and (now - self._receipts_at).total_seconds() < self.settings.receipts_seconds:
            return
        self._receipts_at = now
        await asyncio.to_thread(self.ws.check_receipts)


def peak_memory_mb() -> float:
    """This process's peak resident memory since it started, in MiB (VmHWM: unlike getrusage's maximum, it
    does not count the parent's memory copied before the program was started)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class BackgroundWorker:
    """A worker in a thread of its own, with a workspace of its own (as if it were another process): the
    embedded worker of `nudge serve`."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings, self.clock = settings, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nudge-worker", daemon=True)

    def _run(self) -> None:
        from nudgekit.workspace import Workspace

        async def sleep(seconds: float) -> None:  # wakes within a fifth of a second of stop()
            end = time.monotonic() + seconds
            while not self._stop.is_set() and time.monotonic() < end:
                await asyncio.sleep(min(0.2, max(0.0, end - time.monotonic())))

        ws = Workspace(self.settings, clock=self.clock)
        try:
            asyncio.run(Worker(ws, sleep=sleep).run(stop=self._stop.is_set))
        finally:
            ws.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
