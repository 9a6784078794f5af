"""Notice files (`kind: notice`): the consent notices the law owes, sent by the scheduler every day from a file
applied like any campaign — the two-year re-confirmation playbook driven on a controllable clock, plan equal
to the run, preflight blocking a notice that could not say how to withdraw, test sends."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FakeClock
from policy.helpers import person
from typer.testing import CliRunner

from campaigns.helpers import open_shop, write
from nudgekit.cli import app
from nudgekit.demo import PLAYBOOKS
from nudgekit.policy.purpose import PROMOTIONAL
from nudgekit.workspace import Workspace

START = datetime(2024, 12, 10, 3, 0, tzinfo=UTC)  # 12:00 in Seoul
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
FIRST_RUN = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 10:00 in Seoul the next day
PUBLIC = "https://nudge.example.com"


def playbook(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "notices"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(PLAYBOOKS / f"{name}.yaml", folder / f"{name}.yaml")
    return folder


def grant(ws: Workspace, user: str, channel: str, *, granted: bool = True, source: str = "import") -> None:
    ws.set_consent(user, channel=channel, purpose="advertising", granted=granted, source=source)


def consenters(ws: Workspace, clock: FakeClock) -> None:
    """kim (email) and lee (text) consented two years before NOW; choi (push) has no way to be reached;
    park (text) consented 200 days after them."""
    person(ws, "kim", phone=None, email="kim@example.com")
    person(ws, "lee", phone="010-2222-3333")
    person(ws, "choi", phone=None)
    person(ws, "park", phone="010-4444-5555")
    grant(ws, "kim", "email")
    grant(ws, "lee", "sms")
    grant(ws, "choi", "push")
    clock.advance(days=200)
    grant(ws, "park", "sms")
    clock.now = NOW


def test_the_reconfirmation_playbook_tells_each_consent_holder_once_at_the_daily_run(tmp_path: Path,
                                                                                      state_url: str) -> None:
    clock = FakeClock(START)
    with open_shop(tmp_path / "ws", state_url, clock, public_url=PUBLIC) as ws:
        consenters(ws, clock)
        folder = playbook(tmp_path, "consent_reconfirmation")

        (entry,) = ws.plan_campaigns(folder)["campaigns"]
        assert (entry["kind"], entry["purpose"], entry["change"], entry["blocked"]) == (
            "notice", "informational", "new", False)
        assert entry["schedule"]["next_runs"][0]["launch"] == FIRST_RUN.isoformat()
        would = entry["notices"]
        assert (would["due"], would["sent"], would["unreachable"], would["overdue"]) == (3, 2, 1, 0)
        assert would["channels"] == {"email": 1, "sms": 1} and would["kinds"] == {"reconfirm": 2}
        assert would["why_unreachable"] == {"email: no_address": 1, "sms: no_address": 1, "push: no_address": 1}
        levels = {c["check"]: c["level"] for c in entry["preflight"]}
        assert levels == {"due": "ok", "sender": "ok", "withdrawal": "ok", "reach": "warning"}
        assert ws.outbox() == []  # plan sends nothing

        (applied,) = ws.apply_campaigns(folder)["campaigns"]
        assert applied["applied"]["state"] == "scheduled" and ws.outbox() == []
        clock.now = FIRST_RUN - timedelta(minutes=1)
        assert ws.tick_campaigns() == []
        clock.now = FIRST_RUN
        (run,) = ws.tick_campaigns()
        done = run["notices"]
        assert (run["campaign"], run["kind"]) == ("consent_reconfirmation", "notice")
        keys = ("due", "sent", "unreachable", "channels", "kinds", "why_unreachable")
        assert {k: done[k] for k in keys} == {k: would[k] for k in keys}  # the run did what plan said

        (email,) = ws.outbox(channel="email")
        assert email["to"] == "kim@example.com"
        assert email["message"]["subject"] == "[넛지샵] 광고성 정보 수신동의 현황 안내"
        assert "- 2024-12-10 이메일 광고성 정보 수신 동의" in email["message"]["text"]
        assert f"이메일: {PUBLIC}/u/" in email["message"]["text"]
        (sms,) = ws.outbox(channel="sms")
        assert sms["to"] == "+821022223333" and "무료 수신거부 080" in sms["message"]["text"]
        for text in (email["message"]["text"], sms["message"]["text"]):
            assert "(광고)" not in text and not PROMOTIONAL.search(text)
        (passed,) = ws.explain(user="lee")
        assert (passed["campaign"], passed["purpose"]) == ("consent_reconfirmation", "informational")

        clock.advance(days=1)  # told once: the next run has only choi, still out of reach
        (run,) = ws.tick_campaigns()
        assert (run["notices"]["sent"], run["notices"]["unreachable"]) == (0, 1)
        assert len(ws.outbox()) == 2

        clock.now = datetime(2027, 5, 30, 1, 0, tzinfo=UTC)  # 30 days before park's two years; no tick for months
        (run,) = ws.tick_campaigns()
        assert run["occurrence"] == "2027-05-30T10:00"  # the days missed are not sent one by one
        assert (run["notices"]["sent"], run["notices"]["channels"]) == (1, {"sms": 1})
        assert ws.outbox(channel="sms")[0]["to"] == "+821044445555"
        shown = ws.campaign("consent_reconfirmation")
        assert [(r["occurrence"], r["result"]["sent"]) for r in shown["runs"]] == [
            ("2027-05-30T10:00", 1), ("2026-11-26T10:00", 0), ("2026-11-25T10:00", 2)]


def test_a_reconfirmation_that_could_not_say_how_to_withdraw_blocks_apply(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(START)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:  # no public_url: no unsubscribe link for email
        consenters(ws, clock)
        ws.settings.sender.optout_080 = None
        folder = playbook(tmp_path, "consent_reconfirmation")
        result = ws.apply_campaigns(folder)
        (entry,) = result["campaigns"]
        assert result["blocked"] == ["consent_reconfirmation"] and "applied" not in entry
        (problem,) = [c["message"] for c in entry["preflight"] if c["level"] == "error"]
        assert "1 re-confirmation(s) could not say how to withdraw: set public_url" in problem
        assert "1 re-confirmation(s) could not say how to withdraw: set [sender] optout_080" in problem
        assert ws.campaigns() == []

        ws.settings.sender.optout_080 = "0801234567"
        ws.settings.public_url = PUBLIC
        (entry,) = ws.apply_campaigns(folder)["campaigns"]
        assert entry["applied"]["state"] == "scheduled"
        ws.settings.sender.push_optout = None  # choi's push consent is due, reached or not
        write(folder, "consent_reconfirmation", {"kind": "notice", "name": "consent_reconfirmation",
                                                 "notices": ["reconfirm"], "channels": ["email", "sms"]})
        (entry,) = ws.plan_campaigns(folder)["campaigns"]
        assert (entry["change"], entry["blocked"]) == ("changed", True)
        (problem,) = [c["message"] for c in entry["preflight"] if c["level"] == "error"]
        assert problem == "1 re-confirmation(s) could not say how to withdraw: set [sender] push_optout (where in " \
                          "the app pushes are turned off)"


def test_the_result_playbook_answers_a_new_choice_and_not_an_import(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOW)
    with open_shop(tmp_path / "ws", state_url, clock, public_url=PUBLIC) as ws:
        person(ws, "kim", phone="010-2222-3333")
        person(ws, "lee", phone="010-4444-5555")
        grant(ws, "kim", "sms", granted=False, source="settings_screen")
        grant(ws, "lee", "sms")  # moved from another system: not a choice to answer
        folder = playbook(tmp_path, "consent_result", "consent_reconfirmation")
        entries = {e["name"]: e for e in ws.apply_campaigns(folder)["campaigns"]}
        assert entries["consent_result"]["notices"]["due"] == 1
        assert entries["consent_reconfirmation"]["notices"]["due"] == 0
        clock.now = FIRST_RUN
        runs = {r["campaign"]: r["notices"] for r in ws.tick_campaigns()}
        assert (runs["consent_result"]["sent"], runs["consent_result"]["kinds"]) == (1, {"result": 1})
        assert runs["consent_reconfirmation"]["due"] == 0
        (sms,) = ws.outbox(channel="sms")
        assert sms["to"] == "+821022223333" and "문자 광고성 정보 수신 거부: 2026-11-24 처리 완료" in sms["message"]["text"]
        assert ws.send_consent_notices()["sent"] == []  # `nudge consent notify` from cron finds it told


def test_per_run_sends_the_most_urgent_first_and_leaves_the_rest_for_the_next_run(tmp_path: Path,
                                                                                  state_url: str) -> None:
    clock = FakeClock(START)
    with open_shop(tmp_path / "ws", state_url, clock, public_url=PUBLIC) as ws:
        for i in range(3):
            person(ws, f"u{i}", phone=f"010-5555-000{i}")
        for i in (2, 0, 1):
            grant(ws, f"u{i}", "sms")
            clock.advance(days=1)
        clock.now = NOW
        folder = tmp_path / "notices"
        write(folder, "reconfirm", {"kind": "notice", "name": "reconfirm", "notices": ["reconfirm"], "per_run": 2,
                                    "channels": ["sms"]})
        (entry,) = ws.apply_campaigns(folder)["campaigns"]
        assert (entry["notices"]["due"], entry["notices"]["sent"], entry["notices"]["left_for_next_run"]) == (3, 2, 1)
        clock.now = FIRST_RUN
        (run,) = ws.tick_campaigns()
        assert run["notices"]["sent"] == 2
        assert [m["to"] for m in reversed(ws.outbox(channel="sms"))] == ["+821055550002", "+821055550000"]
        clock.advance(days=1)
        (run,) = ws.tick_campaigns()
        assert (run["notices"]["due"], run["notices"]["sent"]) == (1, 1)
        assert ws.outbox(channel="sms")[0]["to"] == "+821055550001"


@pytest.mark.parametrize(("spec", "said"), [
    ({"schedule": {"at": "2026-12-01 10:00"}}, "runs on a cron schedule"),
    ({"schedule": {"cron": "0 10 * * *", "local_time": True}}, "notices go at the workspace's time"),
    ({"notices": []}, "notices: List should have at least 1 item"),
    ({"notices": ["welcome"]}, "notices.0: Input should be 'result' or 'reconfirm'"),
    ({"channels": ["alimtalk"]}, "channels.0: Input should be 'email', 'sms' or 'push'"),
    ({"purpose": "advertising"}, "a notice is informational"),
    ({"messages": {"sms": {"text": "hi"}}}, "messages: Extra inputs are not permitted"),
])
def test_a_notice_file_that_cannot_be_used_says_why(tmp_path: Path, clock: Any, spec: dict[str, Any],
                                                    said: str) -> None:
    with open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock) as ws:
        write(tmp_path / "n", "bad", {"kind": "notice", "name": "bad", "notices": ["reconfirm"], **spec})
        (entry,) = ws.plan_campaigns(tmp_path / "n")["campaigns"]
        assert entry["blocked"] and said in entry["error"], entry["error"]


def test_a_test_send_shows_each_tester_their_own_notice_on_every_channel(tmp_path: Path, clock: Any) -> None:
    clock.now = NOW
    with open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock, public_url=PUBLIC) as ws:
        person(ws, "me", phone="010-7777-8888", email="me@example.com",
               push_tokens=[{"token": "tok-me-" + "x" * 20, "platform": "android"}])
        person(ws, "new", phone="010-9999-0000")
        grant(ws, "me", "sms", source="settings_screen")
        (tmp_path / "testers.csv").write_text("user_id\nme\nnew\n", encoding="utf-8")
        ws.change_list("test_users", tmp_path / "testers.csv")
        result = ws.test_send_campaigns(playbook(tmp_path, "consent_reconfirmation"))
        got = {(s["channel"], s["user"]): (s["state"], s["reason"]) for s in result["sends"]}
        assert got == {("email", "me"): ("sent", None), ("sms", "me"): ("sent", None), ("push", "me"): ("sent", None),
                       ("", "new"): ("skipped", "no_consent_record")}
        (sms,) = ws.outbox(channel="sms")
        assert "- 2026-11-24 문자 광고성 정보 수신 동의" in sms["message"]["text"]
        assert ws.campaigns() == [] and ws.consent_due()[0]["kind"] == "result"  # a test is not the notice


def test_the_cli_plans_and_shows_a_notice_file(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(home)]).exit_code == 0
    folder = playbook(tmp_path, "consent_reconfirmation")
    planned = runner.invoke(app, ["plan", str(folder), "--home", str(home)])
    assert planned.exit_code == 0, planned.output
    assert "consent_reconfirmation — new · informational · recurring" in planned.output
    assert "0 notice(s) would go of 0 due" in planned.output
    assert "! withdrawal: when a consent on email, sms, kakao, push comes due its notice could not say how to " \
           "withdraw" in " ".join(planned.output.split())  # nobody is due yet: a warning, not a block
    applied = runner.invoke(app, ["apply", str(folder), "--home", str(home), "--json"])
    assert applied.exit_code == 0, applied.output
    assert orjson.loads(applied.stdout)["campaigns"][0]["applied"]["state"] == "scheduled"
    shown = runner.invoke(app, ["campaign", "show", "consent_reconfirmation", "--home", str(home)])
    assert shown.exit_code == 0 and "not reached" in shown.output, shown.output
