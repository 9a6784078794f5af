"""Four `nudge worker` processes against one PostgreSQL share two campaigns to the same people: every
message is taken by exactly one worker (FOR UPDATE SKIP LOCKED), none reaches the provider twice, and a
frequency cap of one advertisement a day holds across the workers' concurrent hand-overs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import _postgres_or_skip
from sqlalchemy import select

from nudgekit.config import write_section
from nudgekit.store.state import OutboxAttempt, OutboxMessage
from nudgekit.testing.solapi import FakeSolapi
from nudgekit.workspace import Workspace

PEOPLE = 300


def test_four_workers_on_postgresql_share_the_work_and_respect_the_cap(tmp_path: Path,
                                                                      monkeypatch: object) -> None:
    url = _postgres_or_skip()
    env = {**os.environ, "NUDGE_DATABASE_URL": url}
    home = tmp_path / "ws"
    with FakeSolapi() as solapi:
        ws, _ = Workspace.init(home, database_url=url)
        ws.close()
        write_section(home, "sender", {"name": "넛지샵", "optout_080": "0801234567", "sms_numbers": ["0212345678"]})
        write_section(home, "providers", {"sms": "solapi"})
        write_section(home, "solapi", {"api_key": solapi.api_key, "api_secret": solapi.api_secret,
                                       "base_url": solapi.url})
        write_section(home, "delivery", {"batch_size": 25, "receipts_seconds": 3600.0})
        write_section(home, "policy", {"control_group_percent": 0.0})
        users = tmp_path / "users.csv"
        # night consent too: the workers use the real clock, and CI may run between 21:00 and 08:00 in Seoul
        users.write_text("user_id,phone,consent_sms_advertising,consent_sms_night,consent_at\n" + "".join(
            f"p{i:04d},010{50000000 + i:08d},true,true,2026-01-05T09:00:00+09:00\n" for i in range(PEOPLE)),
            encoding="utf-8")
        ws = Workspace.open(home, database_url=url)
        ws.import_users(users)
        everyone = [f"p{i:04d}" for i in range(PEOPLE)]
        ws.queue("morning", "sms", everyone, text="아침 특가 10% 할인", ad=True)
        ws.queue("evening", "sms", everyone, text="저녁 특가 15% 할인", ad=True)
        ws.close()
        # the cap comes in after queueing, so only the workers' hand-over gates can keep it
        write_section(home, "policy", {"control_group_percent": 0.0, "caps": [{"limit": 1, "hours": 24}]})
        workers = [subprocess.Popen([sys.executable, "-m", "nudgekit", "worker", "--until-idle", "--json"],
                                    env={**env, "NUDGE_HOME": str(home)}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE) for _ in range(4)]
        outputs = [w.communicate(timeout=300) for w in workers]
        crashed = [o[1].decode() for w, o in zip(workers, outputs, strict=True) if w.returncode != 0]
        if crashed:  # the whole error, not a truncated repr: a crash here is rare and must be readable
            marks = ("Error", "DETAIL", "[SQL", "Process", "CONTEXT")
            pytest.fail("a worker crashed:\n" + "\n".join(
                line for text in crashed for line in text.splitlines() if any(m in line for m in marks))[-6000:])
        received = Counter(m["customFields"]["nudge_id"] for m in solapi.received)
        per_person = Counter(m["to"] for m in solapi.received)

        ws = Workspace.open(home, database_url=url)
        with ws.sessions() as session:
            rows = session.scalars(select(OutboxMessage)).all()
            by_worker = Counter(w.split("#")[0] for (w,) in session.execute(select(OutboxAttempt.worker)))
        ws.close()

    assert max(received.values()) == 1 and max(per_person.values()) == 1
    states = Counter((r.state, r.reason) for r in rows)
    assert states == {("sent", None): PEOPLE, ("skipped", "capped"): PEOPLE}, states
    assert len(by_worker) >= 2, f"the work was not shared: {by_worker}"
