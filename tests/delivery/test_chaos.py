"""Chaos: `nudge worker` processes killed with SIGKILL at random moments — some while gating, some while
their request is at the provider — during an advertising campaign through the fake Solapi (which cannot
drop a repeated message). Afterwards, checked against the fake's own log: nothing registered twice, nothing
lost, every row in a final state with a reason; a message that may have gone out is `in_doubt`, not resent.

`make test` runs it with 1,500 messages; `NUDGE_CHAOS_MESSAGES=20000` runs the issue's full size."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from nudgekit.config import write_section
from nudgekit.delivery.outbox import DONE
from nudgekit.store.state import OutboxMessage
from nudgekit.testing.http import Answer, Request
from nudgekit.testing.solapi import FakeSolapi
from nudgekit.workspace import Workspace

MESSAGES = int(os.environ.get("NUDGE_CHAOS_MESSAGES", "1500"))
KILLS = 10


class SlowSolapi(FakeSolapi):
    """Registers a send at once but answers it only after `hold` seconds, telling the test it has one: a kill
    then lands after the provider took the messages and before the worker heard so."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = 0.0
        self.in_call = threading.Event()

    def _send(self, request: Request) -> Answer:
        answer = super()._send(request)
        if self.hold:
            self.in_call.set()
            return Answer(answer.status, answer.body, answer.headers, delay=self.hold)
        return answer


def make_shop(home: Path, solapi: FakeSolapi) -> None:
    ws, _ = Workspace.init(home)
    ws.close()
    write_section(home, "sender", {"name": "넛지샵", "optout_080": "0801234567", "sms_numbers": ["0212345678"]})
    write_section(home, "policy", {"control_group_percent": 0.0})
    write_section(home, "providers", {"sms": "solapi"})
    write_section(home, "solapi", {"api_key": solapi.api_key, "api_secret": solapi.api_secret,
                                   "base_url": solapi.url})
    write_section(home, "delivery", {"lease_seconds": 10.0, "batch_size": 25, "poll_seconds": 0.2,
                                     "receipts_seconds": 3600.0})
    users = home.parent / "users.csv"
    # night consent too: the workers use the real clock, and CI may run between 21:00 and 08:00 in Seoul
    lines = ["user_id,phone,consent_sms_advertising,consent_sms_night,consent_at"]
    lines += [f"c{i:06d},010{40000000 + i:08d},true,true,2026-01-05T09:00:00+09:00" for i in range(MESSAGES)]
    users.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ws = Workspace.open(home)
    ws.import_users(users)
    queued = ws.queue("flash-sale", "sms", [f"c{i:06d}" for i in range(MESSAGES)], text="오늘만 30% 할인", ad=True)
    assert queued.queued == MESSAGES
    ws.close()


def start_worker(home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NUDGE_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "nudgekit", "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def outbox_states(home: Path) -> Counter[str]:
    ws = Workspace.open(home)
    try:
        with ws.sessions() as session:
            return Counter({s: n for s, n in session.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state))})
    finally:
        ws.close()


def test_workers_killed_at_random_moments_lose_nothing_and_send_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    with SlowSolapi() as solapi:
        solapi.balance = 1e9  # the fake's default account runs dry after about 7,700 text messages
        home = tmp_path / "ws"
        make_shop(home, solapi)
        for kill in range(KILLS):
            during_call = kill % 2 == 1
            solapi.hold = 1.0 if during_call else 0.05  # a slow provider keeps the send going for all ten
            solapi.in_call.clear()
            before = len(solapi.received)
            worker = start_worker(home)
            deadline = time.monotonic() + 60
            if during_call:
                solapi.in_call.wait(timeout=60)
                time.sleep(rng.uniform(0.0, 0.5))
            else:  # somewhere while it works: claiming, gating, recording
                while len(solapi.received) == before and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.6))
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        solapi.hold = 0.0
        time.sleep(10.5)  # the last dead worker's lease runs out
        finisher = subprocess.run([sys.executable, "-m", "nudgekit", "worker", "--until-idle", "--json"],
                                  env={**os.environ, "NUDGE_HOME": str(home)}, capture_output=True, timeout=300)
        assert finisher.returncode == 0, finisher.stderr.decode()[-2000:]

        received = Counter(m["customFields"]["nudge_id"] for m in solapi.received)
        ws = Workspace.open(home)
        with ws.sessions() as session:
            rows = {r.message_id: (r.state, r.reason) for r in session.scalars(select(OutboxMessage))}
        ws.close()

    assert len(rows) == MESSAGES
    assert all(state in DONE for state, _ in rows.values()), Counter(s for s, _ in rows.values())
    assert max(received.values()) == 1, "a message was registered twice"
    sent = {m for m, (state, _) in rows.items() if state == "sent"}
    doubt = {m for m, (state, reason) in rows.items() if state == "in_doubt"}
    assert sent <= set(received), "a row says sent that the provider never registered"
    assert set(received) <= sent | doubt, "the provider registered a message its row does not account for"
    assert sent | doubt == set(rows), Counter(rows.values())
    assert {rows[m][1] for m in doubt} <= {"worker_died"}
    assert doubt, "no kill landed mid-call: the test did not test what it says"
    print(f"\nchaos: {len(sent)} sent, {len(doubt)} in doubt "
          f"({len(doubt & set(received))} of them did reach the provider), {KILLS} kills")
