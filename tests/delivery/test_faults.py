"""Fault injection against a webhook receiver that drops repeats by `Nudge-Message-Id` (a provider that takes
an idempotency key): one request in five answered 500, some answered after the client gave up, 429s with
Retry-After, and the receiver down for a minute. Everything is delivered within the retry budget, and the
receiver acts on each message once."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import FakeClock
from policy.helpers import NOON_KST
from sqlalchemy import select

from nudgekit.store.state import OutboxAttempt, ProviderCircuit
from nudgekit.testing.http import Answer, Request
from nudgekit.testing.webhook import FakeWebhookReceiver
from nudgekit.workspace import Workspace

from .helpers import drain, states

SECRET = "whsec-fault-injection-0123456789"
MESSAGES = 200


class FlakyReceiver(FakeWebhookReceiver):
    def __init__(self, clock: FakeClock, down_from: datetime, down_until: datetime) -> None:
        super().__init__(SECRET)
        self.clock, self.down = clock, (down_from, down_until)
        self.rng = random.Random(6)
        self.acted: Counter[str] = Counter()
        """What the receiver did something for: each message id once, however often it came."""
        self.seen: Counter[str] = Counter()

    def answer(self, request: Request) -> Answer:
        message_id = request.headers["nudge-message-id"]
        self.seen[message_id] += 1
        if self.down[0] <= self.clock() < self.down[1]:
            return Answer(503, b"down for maintenance")
        roll = self.rng.random()
        if roll < 0.20:
            return Answer(500, b"internal error")
        if roll < 0.25:
            return Answer(429, b"slow down", {"Retry-After": "5"})
        if message_id not in self.acted:
            self.acted[message_id] += 1
        if roll < 0.30:  # done, but the answer comes after the sender stopped waiting
            return Answer(200, {"ok": True}, delay=0.6)
        return Answer(200, {"ok": True})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON_KST)


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[FlakyReceiver]:
    with FlakyReceiver(clock, NOON_KST + timedelta(seconds=20), NOON_KST + timedelta(seconds=80)) as server:
        yield server


def test_faults_are_retried_until_everything_arrives_and_the_receiver_acts_once(
        tmp_path: Path, state_url: str, clock: FakeClock, receiver: FlakyReceiver) -> None:
    ws, _ = Workspace.init(tmp_path / "ws", database_url=state_url, clock=clock,
                           providers={"webhook": "webhook"}, policy={"control_group_percent": 0.0},
                           webhook={"secret": SECRET, "allow_local": True, "timeout_seconds": 0.3},
                           delivery={"receipts_seconds": 3600.0, "batch_size": 50})
    users = [f"w{i:03d}" for i in range(MESSAGES)]
    for user in users:
        ws.identify(user, {"plan": "pro"})
    ws.flush()
    ws.queue("sync", "webhook", users, url=f"{receiver.url}/hooks/crm", data={"event": "plan_changed"})
    clock.advance(seconds=19)  # the first round goes out just before the receiver goes down
    stats = drain(ws, clock, rounds=2000)

    assert states(ws) == {"sent": MESSAGES}, states(ws)
    assert len(receiver.acted) == MESSAGES and set(receiver.acted.values()) == {1}
    assert set(receiver.seen) == set(receiver.acted)  # every attempt of a message carried its one id
    assert max(receiver.seen.values()) > 1  # and some came more than once: the receiver dropped the repeats
    with ws.sessions() as session:
        verdicts = Counter(v for (v,) in session.execute(select(OutboxAttempt.verdict)))
        timeouts = session.scalars(select(OutboxAttempt.detail).where(OutboxAttempt.detail.like("no answer%"))).all()
        codes = Counter(c for (c,) in session.execute(select(OutboxAttempt.code)))
        breaker = session.get(ProviderCircuit, "webhook")
    assert {"retryable", "rate_limited", "accepted"} <= set(verdicts), verdicts
    assert timeouts and codes["500"] and codes["503"], codes  # timed out, failed, and down
    assert breaker is not None and breaker.open_until is None and breaker.failures == 0
    assert stats.failed == 0 and stats.in_doubt == 0
    ws.close()
