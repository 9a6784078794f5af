"""Sending benchmark: a campaign end to end (plan -> policy -> outbox -> provider call -> recorded) into the fake
Solapi (its batch API, up to 10,000 messages a call), as ratios to the fake's own capacity and to the obvious
script.

    .venv/bin/python bench/send.py [--messages 20000] [--baseline 1000]

Floor: the fake Solapi's own capacity on this machine — signed send-many requests of 1,000 ready messages
posted back to back, with no planning, policy or records: what any sender is limited by here.
Baseline: the plain sequential loop — the provider module called one message at a time.
nudgekit: `ws.queue` (each message through the QUEUE gate into the outbox) and then `nudge worker --until-idle`
in its own process (the HANDOVER gate, batch calls, every outcome written); the worker's peak memory is its
own high-water resident set (VmHWM, which it reports in its --json output: getrusage's children maximum
counts the benchmark's own memory, copied into the child before it starts the worker). Targets on 2 cores
(issue #6): >= 5,000 messages/s end to end with a batch provider, >= 50% of the fake's capacity, worker memory
flat in the campaign size and under 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from common import SENDER, solapi_workspace
from rich.console import Console
from rich.table import Table

from nudgekit.channels.provider import Envelope
from nudgekit.channels.sms.message import SmsMessage
from nudgekit.channels.solapi import SolapiProvider, authorization
from nudgekit.config import SenderSettings, SolapiSettings
from nudgekit.testing.solapi import FakeSolapi
from nudgekit.vocabulary import MessageChannel
from nudgekit.workspace import Workspace

console = Console()
TEXT = "(광고)넛지샵\n오늘만 30% 할인\n무료거부 080-123-4567"


def phone(i: int) -> str:
    return f"010{60000000 + i:08d}"


def floor(solapi: FakeSolapi, messages: int, batch: int = 1000) -> float:
    """Messages a second the fake registers when sent ready-made batches back to back."""
    bodies = [orjson.dumps({"messages": [{"to": phone(i), "from": "0212345678", "text": TEXT, "type": "SMS",
                                          "customFields": {"nudge_id": f"floor-{i}"}}
                                         for i in range(start, min(messages, start + batch))],
                            "allowDuplicates": True}) for start in range(0, messages, batch)]
    with httpx.Client(base_url=solapi.url, timeout=60) as client:
        started = time.perf_counter()
        for body in bodies:
            header = authorization(solapi.api_key, solapi.api_secret, datetime.now(UTC))
            response = client.post("/messages/v4/send-many/detail", content=body,
                                   headers={"Authorization": header, "Content-Type": "application/json"})
            response.raise_for_status()
        return messages / (time.perf_counter() - started)


def baseline(solapi: FakeSolapi, messages: int) -> float:
    """The obvious script: the provider module, one message per call, in a loop."""
    provider = SolapiProvider(SolapiSettings(api_key=solapi.api_key, api_secret=solapi.api_secret,
                                             base_url=solapi.url), SenderSettings(**SENDER))

    async def run() -> float:
        started = time.perf_counter()
        for i in range(messages):
            envelope = Envelope(f"base-{i}", MessageChannel.SMS, "+82" + phone(i)[1:], SmsMessage(text=TEXT), "SMS")
            await provider.send([envelope])
        elapsed = time.perf_counter() - started
        await provider.aclose()
        return messages / elapsed

    return asyncio.run(run())


def workspace(solapi: FakeSolapi, messages: int, root: Path) -> Workspace:
    """A workspace sending SMS through the fake Solapi, with `messages` consenting users b0, b1, ... (night
    consent too: the benchmark runs at any hour)"""
    home = root / f"ws-{messages}"
    solapi_workspace(home, solapi, delivery={"batch_size": 1000, "receipts_seconds": 3600.0})
    users = root / f"users-{messages}.csv"
    users.write_text("user_id,phone,consent_sms_advertising,consent_sms_night,consent_at\n" + "".join(
        f"b{i},{phone(i)},true,true,2026-01-05T09:00:00+09:00\n" for i in range(messages)), encoding="utf-8")
    ws = Workspace.open(home)
    ws.import_users(users)
    return ws


def nudgekit(solapi: FakeSolapi, messages: int, root: Path) -> dict[str, float]:
    ws = workspace(solapi, messages, root)
    home = ws.settings.home
    started = time.perf_counter()
    queued = ws.queue("bench", "sms", (f"b{i}" for i in range(messages)), text="오늘만 30% 할인", ad=True)
    planned = time.perf_counter() - started
    ws.close()
    assert queued.queued == messages, queued.as_dict()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nudgekit", "worker", "--until-idle", "--json"], check=True,
                          env={**os.environ, "NUDGE_HOME": str(home)}, stdout=subprocess.PIPE)
    sent = time.perf_counter() - started
    report = orjson.loads(done.stdout)
    ws = Workspace.open(home)
    status = ws.send_status("bench")
    ws.close()
    assert status["counts"]["sent"] == messages, status
    return {"plan": messages / planned, "send": messages / sent, "end_to_end": messages / (planned + sent),
            "worker_mb": report["peak_memory_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=1000, help="messages the sequential loop sends")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeSolapi() as solapi:
        solapi.balance = 1e12
        capacity = floor(solapi, args.messages)
        plain = baseline(solapi, args.baseline)
        small = nudgekit(solapi, max(1000, args.messages // 4), Path(tmp))
        ours = nudgekit(solapi, args.messages, Path(tmp))
    table = Table("measure", "messages/s", "vs fake's capacity", "vs sequential loop")
    table.add_row("fake Solapi capacity (floor)", f"{capacity:,.0f}", "1.00", f"{capacity / plain:.1f}×")
    table.add_row("sequential loop (baseline)", f"{plain:,.0f}", f"{plain / capacity:.3f}", "1.0×")
    for name in ("plan", "send", "end_to_end"):
        table.add_row(f"nudgekit {name.replace('_', ' ')}", f"{ours[name]:,.0f}", f"{ours[name] / capacity:.3f}",
                      f"{ours[name] / plain:.1f}×")
    console.print(table)
    console.print(f"worker peak memory: {small['worker_mb']:.0f} MB at {max(1000, args.messages // 4):,} messages, "
                  f"{ours['worker_mb']:.0f} MB at {args.messages:,} (target: flat, under 300 MB)")
    console.print(f"targets: >= 5,000 messages/s end to end (measured {ours['end_to_end']:,.0f}); >= 50% of the "
                  f"fake's capacity (measured {ours['end_to_end'] / capacity:.1%})")


if __name__ == "__main__":
    main()
