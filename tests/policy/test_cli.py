"""`nudge message check --user --at`, `nudge message send --user` and `nudge explain`, as an operator runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.workspace import Workspace


def nudge(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner(env={"NUDGE_HOME": str(home), "COLUMNS": "200"}).invoke(app, list(args))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    ws, _ = Workspace.init(tmp_path / "ws")
    ws.identify("minji", {"phone": "010-2222-3333", "timezone": "Asia/Seoul"})
    ws.flush()
    ws.close()
    home = tmp_path / "ws"
    assert nudge(home, "sender", "set", "--name", "넛지샵", "--sms-number", "02-1234-5678",
                 "--optout-080", "080-123-4567").exit_code == 0
    (home / "nudge.toml").write_text((home / "nudge.toml").read_text(encoding="utf-8")
                                     + "\n[policy]\ncontrol_group_percent = 0\n", encoding="utf-8")
    return home


def test_check_with_a_user_prints_every_rule_and_exits_1_when_it_would_not_go(home: Path) -> None:
    result = nudge(home, "message", "check", "--channel", "sms", "--text", "겨울 세일", "--ad", "--user", "minji",
                   "--at", "2026-11-25T20:59:59")
    assert result.exit_code == 1 and "no_consent" in result.stdout
    for rule in ("purpose", "consent", "suppression", "control_group", "label", "night", "frequency_cap", "budget"):
        assert rule in result.stdout
    assert nudge(home, "consent", "set", "minji", "--channel", "sms", "--purpose", "advertising", "--granted",
                 "--source", "signup_form", "--at", "2026-11-01T10:00:00+09:00").exit_code == 0
    day = nudge(home, "message", "check", "--channel", "sms", "--text", "겨울 세일", "--ad", "--user", "minji",
                "--at", "2026-11-25T20:59:59", "--json")
    assert day.exit_code == 0, day.output
    ruling = json.loads(day.stdout)
    assert ruling["action"] == "send" and ruling["check"]["type"] == "SMS"
    night = json.loads(nudge(home, "message", "check", "--channel", "sms", "--text", "겨울 세일", "--ad", "--user",
                             "minji", "--at", "2026-11-25T21:00:00+09:00", "--json").stdout)
    assert (night["action"], night["reason"]) == ("defer", "night")
    assert night["until"] == "2026-11-25T23:00:00+00:00"


def test_send_to_a_user_goes_through_the_chain_and_explain_says_why(home: Path) -> None:
    skipped = nudge(home, "message", "send", "--channel", "sms", "--text", "[광고] 세일", "--ad", "--user", "minji",
                    "--campaign", "winter")
    assert skipped.exit_code == 1 and "no_consent" in skipped.stdout
    sent = nudge(home, "message", "send", "--channel", "sms", "--text", "주문하신 상품이 출발했습니다.", "--user",
                 "minji", "--campaign", "shipping", "--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.stdout)["sends"][0]["outcome"]["verdict"] == "accepted"
    explained = nudge(home, "explain", "--user", "minji", "--campaign", "winter")
    assert explained.exit_code == 0 and "no_consent" in explained.stdout and "winter" in explained.stdout
    as_json = json.loads(nudge(home, "explain", "--user", "minji", "--json").stdout)
    assert [p["campaign"] for p in as_json] == ["shipping", "winter"]
    assert "nothing was queued" in nudge(home, "explain", "--user", "minji", "--campaign", "spring").stdout


def test_bad_policy_input_is_refused_in_words(home: Path) -> None:
    both = nudge(home, "message", "send", "--channel", "sms", "--text", "x", "--to", "010-1111-2222", "--user", "minji")
    assert both.exit_code == 2 and "not both" in both.output
    at = nudge(home, "message", "check", "--channel", "sms", "--text", "x", "--user", "minji", "--at", "tonight")
    assert at.exit_code == 2 and "--at" in at.output
    nobody = nudge(home, "message", "check", "--channel", "sms", "--text", "x", "--user", "ghost")
    assert nobody.exit_code == 2 and "ghost" in nobody.output
    window = nudge(home, "message", "check", "--channel", "sms", "--text", "x", "--user", "minji", "--window", "late")
    assert window.exit_code == 2 and "--window" in window.output
    no_user = nudge(home, "message", "check", "--channel", "sms", "--text", "x", "--campaign", "c")
    assert no_user.exit_code == 2 and "need --user" in no_user.output
    assert nudge(home, "explain").exit_code == 2


def test_consent_commands_withdraw_list_and_notify(home: Path) -> None:
    now = datetime.now(UTC)
    assert nudge(home, "consent", "set", "minji", "--channel", "sms", "--purpose", "advertising", "--granted",
                 "--source", "signup_form", "--at", f"{now - timedelta(days=5):%Y-%m-%dT%H:%M:%S%z}").exit_code == 0
    called = f"{now - timedelta(days=1):%Y-%m-%d %H:%M}"
    calls = home / "080.csv"
    calls.write_text(f"수신거부번호,수신거부일시\n010-2222-3333,{called}\n010-1,{called}\n", encoding="utf-8")
    imported = nudge(home, "consent", "import-080", str(calls))
    assert imported.exit_code == 0, imported.output
    assert "1 calls from 1 numbers: 1 people withdrawn" in imported.stdout and "1 rows not imported" in imported.stdout
    again = json.loads(nudge(home, "consent", "import-080", str(calls), "--json").stdout)
    assert again["recorded"] == 0 and again["rejected"][0]["line"] == 3

    reply = json.loads(nudge(home, "consent", "reply", "--from", "010-9999-0000", "--text", "STOP", "--json").stdout)
    assert reply == {"from": "+821099990000", "optout": True, "profiles": [], "recorded": 0}

    due = nudge(home, "consent", "due")
    assert due.exit_code == 0 and "minji" in due.stdout and "result" in due.stdout
    listed = json.loads(nudge(home, "consent", "due", "--json").stdout)
    assert [(c["channel"], c["granted"]) for c in listed[0]["changes"]] == [("sms", True), ("sms", False),
                                                                          ("kakao", False)]
    dry = nudge(home, "consent", "notify", "--dry-run")
    assert dry.exit_code == 0 and "would go" in dry.stdout and "수신 거부" in dry.stdout
    sent = json.loads(nudge(home, "consent", "notify", "--json").stdout)
    assert [n["channel"] for n in sent["sent"]] == ["sms"]
    assert json.loads(nudge(home, "consent", "due", "--json").stdout) == []

    no_url = nudge(home, "consent", "link", "minji")
    assert no_url.exit_code == 2 and "public_url" in no_url.output
    (home / "nudge.toml").write_text('public_url = "https://nudge.example.com/"\n'
                                     + (home / "nudge.toml").read_text(encoding="utf-8"), encoding="utf-8")
    link = json.loads(nudge(home, "consent", "link", "minji", "--json").stdout)["link"]
    assert link.startswith("https://nudge.example.com/u/")
