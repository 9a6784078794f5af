"""The outbox as people and programs reach it: `POST /api/v1/messages` with an Idempotency-Key over real
HTTP, `nudge send queue|status|pause|resume|cancel|list`, `nudge worker`, and the worker `nudge serve` runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer, wait_for
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

SENDER = {"name": "넛지샵", "optout_080": "0801234567", "sms_numbers": ["0212345678"]}


def nudge(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner(env={"NUDGE_HOME": str(home), "COLUMNS": "200"}).invoke(app, list(args))


def shop(path: Path, state_url: str | None = None) -> Workspace:
    extra = {"database_url": state_url} if state_url else {}
    ws, _ = Workspace.init(path, **extra)
    write_section(path, "sender", SENDER)  # kept in nudge.toml: the CLI opens the workspace afresh
    write_section(path, "policy", {"control_group_percent": 0.0})
    ws.close()
    ws = Workspace.open(path, **extra)
    for i in range(5):
        ws.identify(f"u{i}", {"phone": f"010-3000-000{i}"})
    ws.flush()
    for i in range(3):  # night consent too: the CLI uses the real clock, and CI may run at night in Seoul
        for purpose in ("advertising", "night"):
            ws.set_consent(f"u{i}", channel="sms", purpose=purpose, granted=True, source="signup_form",
                           at=datetime(2026, 1, 5, tzinfo=UTC))
    return ws


def test_the_transactional_api_sends_once_per_idempotency_key(tmp_path: Path, state_url: str) -> None:
    ws = shop(tmp_path / "ws", state_url)
    _, key = ws.keys.create(KeyScope.ADMIN, "backend", ws.clock())
    body = {"channel": "sms", "userId": "u3", "message": {"text": "주문하신 상품이 발송되었습니다"}}
    with LiveServer(ws) as server, httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as client:
        first = client.post("/api/v1/messages", json=body, headers={"Idempotency-Key": "order-1/shipped"})
        again = client.post("/api/v1/messages", json=body, headers={"Idempotency-Key": "order-1/shipped"})
        other = client.post("/api/v1/messages", json={**body, "message": {"text": "다른 내용"}},
                            headers={"Idempotency-Key": "order-1/shipped"})
        nobody = client.post("/api/v1/messages", json={**body, "userId": "ghost"})
        wrong = client.post("/api/v1/messages", json={**body, "message": {"txt": "오타"}})
        unconsented_ad = client.post("/api/v1/messages", json={**body, "userId": "u4",
                                                          "message": {"text": "세일", "ad": True}})
        anonymous = httpx.post(f"{server.url}/api/v1/messages", json=body)
    ws.close()

    assert first.status_code == 200 and first.json()["state"] == "sent" and first.json()["replayed"] is False
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["message_id"] == first.json()["message_id"]
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert nobody.status_code == 400 and nobody.json()["errors"][0]["field"] == "user"
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["field"].startswith("message.")
    assert unconsented_ad.status_code == 200 and unconsented_ad.json()["state"] == "skipped"
    assert unconsented_ad.json()["reason"] == "no_consent"
    assert anonymous.status_code == 401
    sandbox = Workspace.open(tmp_path / "ws", database_url=state_url)
    assert len(sandbox.outbox(channel="sms")) == 1
    sandbox.close()


def test_an_operator_queues_watches_pauses_and_sends_a_campaign_from_the_cli(tmp_path: Path) -> None:
    shop(tmp_path / "ws").close()
    home = tmp_path / "ws"
    (tmp_path / "users.csv").write_text("user_id,name\nu0,a\nu1,b\nu2,c\nu3,d\nghost,e\n", encoding="utf-8")
    (tmp_path / "sale.yaml").write_text("channel: sms\ntext: 겨울 세일 20% 할인\nad: true\n", encoding="utf-8")

    queued = nudge(home, "send", "queue", "winter", "--message", str(tmp_path / "sale.yaml"),
                   "--users", str(tmp_path / "users.csv"), "--json")
    assert queued.exit_code == 0, queued.output
    assert json.loads(queued.stdout) == {"campaign": "winter", "queued": 3, "deferred": 0, "existing": 0,
                                         "skipped": {"no_consent": 1, "no_person": 1}, "added": 5}
    again = nudge(home, "send", "queue", "winter", "--message", str(tmp_path / "sale.yaml"),
                  "--users", str(tmp_path / "users.csv"))
    assert again.exit_code == 0 and "5 already in the outbox" in again.stdout

    assert nudge(home, "send", "pause", "winter").exit_code == 0
    idle = nudge(home, "worker", "--until-idle", "--json")
    assert idle.exit_code == 0 and json.loads(idle.stdout)["sent"] == 0
    assert nudge(home, "send", "resume", "winter").exit_code == 0
    worked = nudge(home, "worker", "--until-idle", "--json")
    assert worked.exit_code == 0 and json.loads(worked.stdout)["sent"] == 3

    status = json.loads(nudge(home, "send", "status", "winter", "--json").stdout)
    assert status["counts"]["sent"] == 3 and status["skipped"] == {"no_consent": 1, "no_person": 1}
    table = nudge(home, "send", "status", "winter")
    assert "no_consent 1" in table.stdout and "sent" in table.stdout
    listed = json.loads(nudge(home, "send", "list", "--campaign", "winter", "--state", "sent", "--json").stdout)
    assert {r["user"] for r in listed} == {"u0", "u1", "u2"}
    cancelled = nudge(home, "send", "cancel", "winter", "--json")
    assert cancelled.exit_code == 0 and json.loads(cancelled.stdout)["cancelled_now"] == 0
    refused = nudge(home, "send", "queue", "winter", "--message", str(tmp_path / "sale.yaml"),
                    "--users", str(tmp_path / "users.csv"))
    assert refused.exit_code == 2 and "cancelled" in refused.output
    unknown = nudge(home, "send", "status", "spring", "--json")
    assert unknown.exit_code == 2 and "no campaign" in json.loads(unknown.stdout)["error"]


def test_a_message_file_with_a_wrong_field_queues_nothing(tmp_path: Path) -> None:
    shop(tmp_path / "ws").close()
    (tmp_path / "users.txt").write_text("u0\nu1\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("channel: sms\ntxt: 오타\n", encoding="utf-8")
    result = nudge(tmp_path / "ws", "send", "queue", "x", "--message", str(tmp_path / "bad.yaml"),
                   "--users", str(tmp_path / "users.txt"))
    assert result.exit_code == 2 and "txt" in result.output
    with pytest.raises(Exception, match="no campaign"):
        ws = Workspace.open(tmp_path / "ws")
        try:
            ws.send_status("x")
        finally:
            ws.close()


def test_serve_sends_what_is_queued_with_its_own_worker(tmp_path: Path) -> None:
    ws = shop(tmp_path / "ws")
    ws.settings.delivery.poll_seconds = 0.1
    with LiveServer(ws, worker=True):
        ws.queue("welcome", "sms", ["u0", "u1"], text="가입을 환영합니다")
        wait_for(lambda: ws.send_status("welcome")["counts"]["sent"] == 2, timeout=20)
    assert len(ws.outbox(channel="sms")) == 2
    ws.close()
