"""Ingestion benchmark: bulk Parquet import and HTTP batch ingestion, as ratios to DuckDB's raw append.

    .venv/bin/python bench/ingest.py [--rows 2000000] [--http-events 200000] [--clients 4]

Each of the floor and our import runs --repeat times (default 3) and the best
run counts, so a busy moment on the machine does not decide the ratio.

Floor: DuckDB appending the same Parquet rows into the same table with no
checks at all (`INSERT INTO events SELECT ... FROM read_parquet(...)`), the
least work any importer must do. Baseline: the obvious Python script — read
rows, check each in Python, append the good ones. Targets on 2 cores: bulk
import >= 40% of the floor's rate; HTTP batches >= 20,000 events/s. The import
is measured twice: into a workspace with no lifecycle rollup yet, and after a
first `lifecycle run`, when every insert also keeps the activity rollup up to date.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from common import free_port, wait_until_serving
from rich.console import Console
from rich.table import Table

from nudgekit.store.events import DDL
from nudgekit.workspace import Workspace

console = Console()
EVENTS = ["app_opened", "product_viewed", "added_to_cart", "checkout_started", "order_completed"]


def make_events(rows: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    start_us = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 1_000_000
    seconds = np.sort(rng.integers(0, 80 * 86400, rows))
    users = rng.integers(0, max(rows // 20, 1), rows)
    skus = rng.integers(0, 6, rows)
    prices = np.array([12900, 32900, 24900, 19900, 45000, 9900])[skus]
    props = pc.binary_join_element_wise(
        '{"sku":"P-', pa.array(skus.astype(str)), '","price":', pa.array(prices.astype(str)), "}", ""
    )
    return pa.table({
        "message_id": pa.array(np.char.add("bench-", np.arange(rows).astype(str))),
        "user_id": pa.array(np.char.add("u", users.astype(str))),
        "event": pa.array(np.array(EVENTS)[rng.integers(0, len(EVENTS), rows)]),
        "timestamp": pa.array(start_us + seconds * 1_000_000, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "properties": props,
        "context": pa.array(['{"app":{"version":"3.2.1"},"os":{"name":"Android"}}'] * rows),
    })


def floor_raw_append(path: Path, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    db = work / "floor.duckdb"
    con = duckdb.connect(str(db))
    con.execute(DDL)
    con.close()
    started = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute(
        "INSERT INTO events SELECT message_id, 'track', event, user_id, NULL, NULL, timestamp, now(), "
        f"properties, context, 'import' FROM read_parquet('{path}')"
    )
    con.close()  # both sides pay for leaving a closed, checkpointed file
    return time.perf_counter() - started


def baseline_python_script(path: Path, work: Path, limit: int) -> tuple[float, int]:
    """The obvious script: row by row in Python, then append. Run on the first `limit` rows."""
    started = time.perf_counter()
    rows = pq.read_table(path).slice(0, limit).to_pylist()
    good = []
    for row in rows:
        if not row["user_id"] or not row["event"]:
            continue
        stamp = row["timestamp"]
        if stamp.year < 2000 or stamp > datetime.now(UTC) + timedelta(days=1):
            continue
        if not isinstance(json.loads(row["properties"]), dict):
            continue
        good.append(row)
    good_rows = pa.Table.from_pylist(good)
    con = duckdb.connect(str(work / "baseline.duckdb"))
    con.execute(DDL)
    con.register("good_rows", good_rows)
    con.execute("INSERT INTO events SELECT message_id, 'track', event, user_id, NULL, NULL, timestamp, now(), "
                "properties, context, 'import' FROM good_rows")
    con.close()
    return time.perf_counter() - started, len(rows)


def ours_import(path: Path, work: Path, rollup: bool = False) -> tuple[float, int]:
    """`rollup`: after a first `lifecycle run`, so every insert also keeps the activity rollup up to date."""
    ws, _ = Workspace.init(work / "ws")
    if rollup:
        ws.run_lifecycle()
    started = time.perf_counter()
    report = ws.import_events(path)
    elapsed = time.perf_counter() - started
    ws.close()
    assert report.rejected == 0, report.sample
    return elapsed, report.stored


# -- HTTP ----------------------------------------------------------------------------------------


def _client(url: str, key: str, batches: list[bytes], results: mp.Queue) -> None:
    sent = failed = 0
    with httpx.Client(base_url=url, auth=(key, ""), timeout=60,
                      headers={"content-type": "application/json"}) as client:
        for body in batches:
            response = client.post("/v1/batch", content=body)
            if response.status_code == 200:
                sent += 1
            else:
                failed += 1
    results.put((sent, failed))


def http_batches(events: int, clients: int, work: Path) -> tuple[float, float, int]:
    home = work / "http-ws"
    ws, key = Workspace.init(home)
    ws.close()
    port = free_port()
    env = {**os.environ, "NUDGE_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "nudgekit", "serve", "--port", str(port)], env=env,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, 30)
        stamp = datetime.now(UTC).isoformat()
        per_client: list[list[bytes]] = [[] for _ in range(clients)]
        n_batches = events // 100
        for b in range(n_batches):
            batch = [{"type": "track", "userId": f"u{(b * 100 + i) % 5000}", "event": "product_viewed",
                      "messageId": f"http-{b}-{i}", "timestamp": stamp,
                      "properties": {"sku": f"P-{i % 6}", "price": 12900},
                      "context": {"app": {"version": "3.2.1"}}} for i in range(100)]
            per_client[b % clients].append(json.dumps({"batch": batch}).encode())
        results: mp.Queue = mp.Queue()
        procs = [mp.Process(target=_client, args=(url, key, per_client[c], results)) for c in range(clients)]
        started = time.perf_counter()
        for p in procs:
            p.start()
        outcomes = [results.get() for _ in procs]
        for p in procs:
            p.join()
        acked = time.perf_counter() - started
        failed = sum(f for _, f in outcomes)
        check = Workspace.open(home)
        while check.events.pending_parts():
            time.sleep(0.05)
        stored_at = time.perf_counter() - started
        stored = check.events.count()
        check.close()
        if failed:
            console.print(f"[red]{failed} batches failed[/]")
        return acked, stored_at, stored
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument("--http-events", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs for the floor and the import")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nudge-bench-"))
    try:
        path = work / "events.parquet"
        pq.write_table(make_events(args.rows), path, row_group_size=250_000)
        floor_s = min(floor_raw_append(path, work / f"floor{i}") for i in range(args.repeat))
        base_s, base_rows = baseline_python_script(path, work, args.baseline_rows)
        ours_s, stored = min(ours_import(path, work / f"ours{i}") for i in range(args.repeat))
        rolled_s, rolled = min(ours_import(path, work / f"rolled{i}", rollup=True) for i in range(args.repeat))
        acked_s, stored_s, http_stored = http_batches(args.http_events, args.clients, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor_rate, base_rate, ours_rate = args.rows / floor_s, base_rows / base_s, stored / ours_s
    figures = {
        "rows": args.rows, "cores": os.cpu_count(),
        "floor_raw_append_rows_per_s": round(floor_rate),
        "baseline_python_script_rows_per_s": round(base_rate),
        "bulk_import_rows_per_s": round(ours_rate),
        "bulk_import_vs_floor": round(ours_rate / floor_rate, 3),
        "bulk_import_vs_baseline": round(ours_rate / base_rate, 2),
        "bulk_import_with_rollup_rows_per_s": round(rolled / rolled_s),
        "bulk_import_with_rollup_vs_floor": round(rolled / rolled_s / floor_rate, 3),
        "http_events": args.http_events, "http_clients": args.clients,
        "http_acked_events_per_s": round(args.http_events / acked_s),
        "http_stored_events_per_s": round(http_stored / stored_s),
        "http_stored": http_stored,
        "http_acked_vs_floor": round(args.http_events / acked_s / floor_rate, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    table = Table("measure", "value", "target", title=f"ingestion on {os.cpu_count()} cores")
    table.add_row("floor: DuckDB raw append", f"{floor_rate:,.0f} rows/s", "")
    table.add_row("baseline: row-by-row Python script", f"{base_rate:,.0f} rows/s", "")
    table.add_row("nudge import events (Parquet)", f"{ours_rate:,.0f} rows/s", "")
    table.add_row("  ratio to floor", f"{ours_rate / floor_rate:.1%}", ">= 40%")
    table.add_row("  ratio to baseline", f"{ours_rate / base_rate:.1f}x", "")
    table.add_row("nudge import events, rollup kept up to date", f"{rolled / rolled_s:,.0f} rows/s", "")
    table.add_row("  ratio to floor", f"{rolled / rolled_s / floor_rate:.1%}", ">= 40%")
    table.add_row(f"HTTP /v1/batch x100, {args.clients} clients: acknowledged",
                  f"{args.http_events / acked_s:,.0f} events/s", ">= 20,000/s")
    table.add_row("HTTP: acknowledged and in the event store", f"{http_stored / stored_s:,.0f} events/s", "")
    table.add_row("  HTTP acknowledged, ratio to floor", f"{args.http_events / acked_s / floor_rate:.1%}", "")
    console.print(table)


if __name__ == "__main__":
    main()
