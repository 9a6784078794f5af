"""Journey trigger latency: from a `track` call to the journey's first message accepted by a local fake
provider, p50 and p99, under a steady stream of events.

    .venv/bin/python bench/journey.py [--rate 1000] [--seconds 30] [--triggers 0.05]

Set-up: a workspace whose SMS go to the fake Solapi (a real HTTP server in this process); a journey
`bench_cart` entered on `added_to_cart` whose first step sends an SMS; `nudge serve` in its own process (its
drainer, scheduler and delivery worker) with `[ingest] flush_interval_seconds` and `[delivery] poll_seconds`
at 0.1 s.
Load: `/v1/batch` calls every 50 ms carrying `rate`/20 track events each; the share `--triggers` of them are
`added_to_cart` by people not yet in the journey, the rest `product_viewed` (noise the journey must skip).
Measured: for each trigger, the moment the fake registered its message minus the moment its batch was sent.
Floor: the transactional API on the same server under the same load — `POST /api/v1/messages` to the same
fake, request sent to message registered: the least any message takes through the outbox here.
Baseline: none measured (a cron-driven script's latency is its period; see docs/performance.md).
Target (issue #8): p99 < 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from common import free_port, solapi_workspace, wait_until_serving
from rich.console import Console
from rich.table import Table

from nudgekit.testing.solapi import FakeSolapi
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

console = Console(width=150)
TICK = 0.05


def phone(kind: int, i: int) -> str:
    return f"010{kind}{i:07d}"


def digits(to: str) -> str:
    return "".join(c for c in to if c.isdigit())[-8:]


def workspace(root: Path, solapi: FakeSolapi, triggers: int, floors: int, noise: int) -> tuple[Path, str, str]:
    home = root / "ws"
    solapi_workspace(home, solapi, delivery={"poll_seconds": 0.1, "receipts_seconds": 3600.0},
                     ingest={"flush_interval_seconds": 0.1}, campaigns={"tick_seconds": 1.0})
    users = root / "users.csv"
    rows = [f"t{i},{phone(7, i)}" for i in range(triggers)] + [f"f{i},{phone(8, i)}" for i in range(floors)] + [
        f"n{i},{phone(9, i)}" for i in range(noise)]
    users.write_text("user_id,phone\n" + "\n".join(rows) + "\n", encoding="utf-8")
    ws = Workspace.open(home)
    ws.import_users(users)
    folder = root / "journeys"
    folder.mkdir()
    (folder / "cart.yaml").write_text(yaml.safe_dump({
        "kind": "journey", "name": "bench_cart", "purpose": "informational", "entry": {"event": "added_to_cart"},
        "goal": {"events": ["order_completed"]},
        "steps": [{"send": {"channels": ["sms"], "messages": {"sms": {"text": "장바구니에 담은 상품을 확인하세요"}}}}],
    }, allow_unicode=True), encoding="utf-8")
    applied = ws.apply_campaigns(folder)
    assert not applied["blocked"], applied
    _, write_key = ws.keys.create(KeyScope.WRITE, "bench", ws.clock())
    _, admin_key = ws.keys.create(KeyScope.ADMIN, "bench", ws.clock())
    ws.close()
    return home, write_key, admin_key


class Arrivals(threading.Thread):
    """Watches the fake: when each message was registered (by the last 8 digits of its number)."""

    def __init__(self, solapi: FakeSolapi) -> None:
        super().__init__(daemon=True)
        self.solapi, self.at, self.stop = solapi, {}, threading.Event()

    def run(self) -> None:
        seen = 0
        while not self.stop.is_set():
            received = self.solapi.received
            now = time.perf_counter()
            for message in received[seen:len(received)]:
                self.at.setdefault(digits(str(message.get("to", ""))), now)
            seen = len(received)
            time.sleep(0.002)


def load(url: str, write_key: str, rate: int, seconds: float, share: float, noise: int) -> tuple[dict[str, float], float]:
    """Send the stream; returns when each trigger's batch was sent, and the events per second achieved."""
    per_tick = max(1, round(rate * TICK))
    every = max(1, round(1 / share)) if share > 0 else 0
    sent_at: dict[str, float] = {}
    made, trigger = 0, 0
    started = time.perf_counter()
    next_at = started
    with httpx.Client(base_url=url, auth=(write_key, ""), timeout=30) as client:
        while time.perf_counter() - started < seconds:
            batch = []
            names = []
            for _ in range(per_tick):
                made += 1
                if every and made % every == 0:
                    user = f"t{trigger}"
                    trigger += 1
                    names.append(user)
                    batch.append({"type": "track", "event": "added_to_cart", "userId": user,
                                  "properties": {"sku": "A1"}})
                else:
                    batch.append({"type": "track", "event": "product_viewed", "userId": f"n{made % noise}",
                                  "properties": {"sku": "B2"}})
            moment = time.perf_counter()
            response = client.post("/v1/batch", json={"batch": batch})
            response.raise_for_status()
            for user in names:
                sent_at[digits(phone(7, int(user[1:])))] = moment
            next_at += TICK
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    return sent_at, made / (time.perf_counter() - started)


def floor(url: str, admin_key: str, seconds: float, out: dict[str, float]) -> None:
    """Transactional sends, five a second, while the load runs."""
    started = time.perf_counter()
    i = 0
    with httpx.Client(base_url=url, auth=(admin_key, ""), timeout=30) as client:
        while time.perf_counter() - started < seconds:
            moment = time.perf_counter()
            client.post("/api/v1/messages", json={"channel": "sms", "userId": f"f{i}",
                                                  "message": {"text": "주문하신 상품이 발송되었습니다"}},
                        headers={"Idempotency-Key": f"floor-{i}"})
            out[digits(phone(8, i))] = moment
            i += 1
            time.sleep(0.2)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return float("nan"), float("nan"), float("nan")
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return at(0.5), at(0.99), ordered[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000, help="events a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--triggers", type=float, default=0.05, help="share of the events that enter the journey")
    args = parser.parse_args()
    triggers = int(args.rate * args.seconds * args.triggers) + 100
    floors = int(args.seconds * 5) + 10
    with tempfile.TemporaryDirectory() as tmp, FakeSolapi() as solapi:
        solapi.balance = 1e12
        console.print(f"setting up {triggers + floors + 5000:,} users ...")
        home, write_key, admin_key = workspace(Path(tmp), solapi, triggers, floors, 5000)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "nudgekit", "serve", "--port", str(port)],
                                  env={**os.environ, "NUDGE_HOME": str(home)})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(url)
            arrivals = Arrivals(solapi)
            arrivals.start()
            floor_sent: dict[str, float] = {}
            floor_thread = threading.Thread(target=floor, args=(url, admin_key, args.seconds, floor_sent), daemon=True)
            floor_thread.start()
            console.print(f"sending {args.rate:,} events/s for {args.seconds:g} s ...")
            trigger_sent, achieved = load(url, write_key, args.rate, args.seconds, args.triggers, 5000)
            floor_thread.join()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not all(k in arrivals.at for k in [*trigger_sent, *floor_sent]):
                time.sleep(0.1)
            arrivals.stop.set()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    journey = [arrivals.at[k] - t for k, t in trigger_sent.items() if k in arrivals.at]
    direct = [arrivals.at[k] - t for k, t in floor_sent.items() if k in arrivals.at]
    j50, j99, jmax = percentiles(journey)
    f50, f99, fmax = percentiles(direct)
    table = Table("path", "messages", "missing", "p50 (s)", "p99 (s)", "max (s)", "p50 vs floor", "p99 vs floor")
    table.add_row("transactional API (floor)", f"{len(direct):,}", f"{len(floor_sent) - len(direct):,}",
                  f"{f50:.3f}", f"{f99:.3f}", f"{fmax:.3f}", "1.0×", "1.0×")
    table.add_row("track -> journey -> provider", f"{len(journey):,}", f"{len(trigger_sent) - len(journey):,}",
                  f"{j50:.3f}", f"{j99:.3f}", f"{jmax:.3f}", f"{j50 / f50:.1f}×", f"{j99 / f99:.1f}×")
    console.print(table)
    console.print(f"load achieved: {achieved:,.0f} events/s ({args.triggers:.0%} triggers); cores: {os.cpu_count()}")
    console.print(f"target: p99 < 2 s (measured {j99:.3f} s)")


if __name__ == "__main__":
    main()
