"""One workspace, many processes: `nudge serve` ingests while other commands read and import."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_for

from nudgekit.workspace import Workspace


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "NUDGE_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "nudgekit", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, timeout=30, interval=0.1)
    return proc, url


def nudge(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUDGE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nudgekit", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def batch(prefix: str, n: int, user: str = "u1") -> dict:
    return {"batch": [{"type": "track", "userId": user, "event": "product_viewed", "messageId": f"{prefix}-{i}",
                       "properties": {"i": i}} for i in range(n)]}


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, str]:
    home = tmp_path / "ws"
    ws, key = Workspace.init(home)
    ws.identify("u1", {"name": "김민지", "phone": "010-1234-5678"})
    ws.close()
    return home, key


def test_reads_and_an_import_work_while_the_server_ingests(workspace, tmp_path) -> None:
    home, key = workspace
    proc, url = start_server(home)
    acked: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, auth=(key, ""), timeout=30) as client:
            n = 0
            while not stop.is_set():
                body = batch(f"live{n}", 50)
                if client.post("/v1/batch", json=body).status_code == 200:
                    acked.extend(m["messageId"] for m in body["batch"])
                n += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(lambda: len(acked) >= 500, timeout=30)
        events_csv = tmp_path / "events.csv"
        events_csv.write_text("user_id,event,message_id\n" + "".join(f"u2,app_opened,imp-{i}\n" for i in range(2000)))
        importer = subprocess.Popen([sys.executable, "-m", "nudgekit", "import", "events", str(events_csv), "--json"],
                                    env={**os.environ, "NUDGE_HOME": str(home)}, stdout=subprocess.PIPE, text=True)
        for _ in range(3):
            # acknowledged events are in the spool at once and in the store after the next drain (about 1 s)
            def five_events() -> bool:
                tail = nudge(home, "events", "tail", "-n", "5", "--json")
                assert tail.returncode == 0, tail.stderr
                return len(json.loads(tail.stdout)) == 5

            wait_for(five_events, timeout=20, interval=0.2)
            shown = nudge(home, "users", "show", "u1", "--json")
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["profile"]["phone"] == "+821012345678"
        out, _ = importer.communicate(timeout=120)
        assert importer.returncode == 0
        assert json.loads(out)["stored"] == 2000
    finally:
        stop.set()
        sender.join(timeout=30)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    ws = Workspace.open(home)
    try:
        ws.flush()
        stored = {r["event_id"] for r in ws.events.query("SELECT event_id FROM events WHERE source = 'http'")}
        assert set(acked) <= stored  # every acknowledged event is there
        assert ws.events.count() == len(stored) + 2000 + 1  # + the import and the identify
    finally:
        ws.close()


def test_a_server_killed_mid_ingest_loses_no_acknowledged_event(workspace) -> None:
    home, key = workspace
    proc, url = start_server(home)
    acked: list[str] = []
    with httpx.Client(base_url=url, auth=(key, ""), timeout=30) as client:
        for n in range(40):
            body = batch(f"k{n}", 100)
            assert client.post("/v1/batch", json=body).status_code == 200
            acked.extend(m["messageId"] for m in body["batch"])
    proc.send_signal(signal.SIGKILL)  # no shutdown: whatever was only in the spool must survive
    proc.wait(timeout=30)
    ws = Workspace.open(home)
    try:
        ws.flush()
        stored = {r["event_id"] for r in ws.events.query("SELECT event_id FROM events WHERE source = 'http'")}
        assert stored == set(acked)
        assert not ws.events.pending_parts()
    finally:
        ws.close()


def test_a_reader_holding_the_store_delays_the_drain_but_loses_nothing(workspace) -> None:
    home, key = workspace
    ws = Workspace.open(home)
    proc, url = start_server(home)
    try:
        with ws.events.reader() as con:  # a long lifecycle query in another process would do the same
            con.execute("SELECT count(*) FROM events").fetchall()
            with httpx.Client(base_url=url, auth=(key, ""), timeout=30) as client:
                started = time.monotonic()
                assert client.post("/v1/batch", json=batch("held", 100)).status_code == 200
                assert time.monotonic() - started < 5  # acknowledged from the spool, not blocked by the reader
            assert ws.events.pending_parts()
        wait_for(lambda: ws.events.count() == 101, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        ws.close()


def test_segment_library_to_nudge_serve_then_events_tail_and_users_show(workspace) -> None:
    """The issue's check, literally: an unmodified Segment client, `nudge serve`, and the two CLI commands."""
    from segment.analytics.client import Client

    home, key = workspace
    proc, url = start_server(home)
    try:
        client = Client(write_key=key, host=url, sync_mode=True, gzip=True)
        client.identify("u-seg", {"name": "한지우", "email": "jiwoo@naver.com"}, anonymous_id="anon-seg")
        client.track("u-seg", "checkout_started", {"cart_value": 65800})
        client.flush()

        def tail_has_checkout() -> bool:
            tail = nudge(home, "events", "tail", "-n", "5", "--json")
            return tail.returncode == 0 and any(e["event"] == "checkout_started" for e in json.loads(tail.stdout))

        wait_for(tail_has_checkout, timeout=30, interval=0.3)
        shown = nudge(home, "users", "show", "u-seg", "--json")
        assert shown.returncode == 0, shown.stderr
        profile = json.loads(shown.stdout)
        assert profile["profile"]["email"] == "jiwoo@naver.com"
        assert {e["event"] for e in profile["recent_events"]} >= {"checkout_started"}
        assert profile["activity"]["anonymous_ids"] == ["anon-seg"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


class Lines:
    """A child's output lines, read by a thread, so a test waits with a deadline instead of hanging."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def next(self, timeout: float = 30.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no output within {timeout}s")


def test_events_tail_follow_prints_each_new_event_once(workspace) -> None:
    home, _ = workspace
    env = {**os.environ, "NUDGE_HOME": str(home)}
    tail = subprocess.Popen([sys.executable, "-m", "nudgekit", "events", "tail", "-f", "-n", "1", "--json"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        output = Lines(tail)
        first = json.loads(output.next())
        assert first["type"] == "identify"
        ws = Workspace.open(home)
        for i in range(3):
            ws.track("app_opened", "u1", {"i": i})
        ws.close()
        lines = [json.loads(output.next()) for _ in range(3)]
        assert sorted(json.loads(line["properties"])["i"] for line in lines) == [0, 1, 2]
    finally:
        tail.kill()
        tail.wait(timeout=10)


def test_events_tail_follow_prints_a_burst_larger_than_a_page(workspace, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    home, _ = workspace
    source = tmp_path / "burst.parquet"
    pq.write_table(pa.table({"user_id": [f"u{i % 50}" for i in range(25_000)], "event": ["app_opened"] * 25_000,
                             "message_id": [f"burst-{i}" for i in range(25_000)]}), source)
    env = {**os.environ, "NUDGE_HOME": str(home)}
    tail = subprocess.Popen([sys.executable, "-m", "nudgekit", "events", "tail", "-f", "-n", "1", "--json"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        output = Lines(tail)
        output.next()
        assert nudge(home, "import", "events", str(source), "--json").returncode == 0
        ids = {json.loads(output.next())["event_id"] for _ in range(25_000)}
        assert len(ids) == 25_000
    finally:
        tail.kill()
        tail.wait(timeout=10)


def test_a_part_another_process_finishes_while_the_drain_looks_for_abandoned_ones(workspace, monkeypatch) -> None:
    """The drain lists temporary part files, then looks at each one's age; a writer in another process may
    rename its part (finished) in between. That part is not abandoned and the drain must carry on."""
    ws = Workspace.open(workspace[0])
    store = ws.events
    store.spool_dir.mkdir(parents=True, exist_ok=True)
    finished = store.spool_dir / ".00000000000000000001-1-deadbeef.tmp"  # listed, then renamed by its writer
    old = store.spool_dir / ".00000000000000000002-1-cafebabe.tmp"
    old.write_bytes(b"half a part")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    listed = Path.glob

    def racing_glob(self: Path, pattern: str):  # type: ignore[no-untyped-def]
        found = list(listed(self, pattern))
        return [finished, *found] if pattern == ".*.tmp" else found

    monkeypatch.setattr(Path, "glob", racing_glob)
    store.drain()
    assert not old.exists()  # the abandoned one is still swept
    ws.close()
