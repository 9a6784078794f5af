"""A shop sending through the fake Solapi (a batch API that cannot drop repeats), and a worker driven by the
test's clock: its waits move the clock instead of sleeping."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policy.helpers import SENDER
from sqlalchemy import func, select

from nudgekit.delivery.worker import Stats, Worker
from nudgekit.store.state import OutboxMessage
from nudgekit.testing.solapi import FakeSolapi
from nudgekit.vocabulary import OutboxState
from nudgekit.workspace import Workspace

WAITING = (OutboxState.QUEUED.value, OutboxState.DEFERRED.value)


def open_shop(path: Path, state_url: str, clock: Any, solapi: FakeSolapi, **delivery: Any) -> Workspace:
    solapi.clock = clock
    ws, _ = Workspace.init(
        path, database_url=state_url, clock=clock, sender={**SENDER, "kakao_sender_key": solapi.pf_id},
        policy={"control_group_percent": 0.0},
        providers={"sms": "solapi", "alimtalk": "solapi", "brand_message": "solapi"},
        solapi={"api_key": solapi.api_key, "api_secret": solapi.api_secret, "base_url": solapi.url,
                "timeout_seconds": 2.0},
        delivery={"receipts_seconds": 3600.0, **delivery})
    return ws


def people(ws: Workspace, count: int, *, consent: tuple[str, ...] = ("sms",)) -> list[str]:
    users = [f"u{i:05d}" for i in range(count)]
    for i, user in enumerate(users):
        ws.identify(user, {"phone": f"010-2{i:03d}-{i:04d}"})
    ws.flush()
    for user in users:
        for channel in consent:
            ws.set_consent(user, channel=channel, purpose="advertising", granted=True, source="signup_form",
                           at=datetime(2026, 1, 5, tzinfo=UTC))
    return users


def worker(ws: Workspace, clock: Any, **kwargs: Any) -> Worker:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds=seconds)

    return Worker(ws, sleep=sleep, rng=random.Random(7), **kwargs)


def drain(ws: Workspace, clock: Any, *, rounds: int = 500, worker_: Worker | None = None) -> Stats:
    """Work until nothing is left waiting, jumping the clock to each next due time (retries, deferrals)."""
    w = worker_ or worker(ws, clock)

    async def go() -> None:
        for _ in range(rounds):
            if await w.step():
                continue
            with ws.sessions() as session:
                due = session.scalar(select(func.min(OutboxMessage.due_at)).where(OutboxMessage.state.in_(WAITING)))
            if due is None:
                break
            if due <= clock.now:  # waiting on a paused provider or campaign
                clock.advance(seconds=1)
            else:
                clock.now = due
        await w.aclose()

    asyncio.run(go())
    ws.flush()  # the message events the worker spooled
    return w.stats


def states(ws: Workspace, campaign: str | None = None) -> Counter[str]:
    query = select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
    if campaign is not None:
        query = query.where(OutboxMessage.campaign == campaign)
    with ws.sessions() as session:
        return Counter({state: count for state, count in session.execute(query)})


def received_by(solapi: FakeSolapi) -> Counter[str]:
    """How many times the fake registered a message for each of our message ids (its own log)."""
    return Counter(m["customFields"]["nudge_id"] for m in solapi.received)
