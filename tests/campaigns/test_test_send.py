"""Test sends: every message of a campaign file (each variant, each journey send step, every channel) goes
now to the internal test users only, through consent and the night rule, outside the campaign's results."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from policy.helpers import SENDER
from typer.testing import CliRunner

from campaigns.helpers import NOON_KST, campaign, open_shop, outbox_count, shoppers, write
from campaigns.test_journeys import cart
from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.profiles.contacts import FieldError
from nudgekit.workspace import Workspace

VARIANTS = [
    {"name": "a", "split": 50, "messages": {"push": {"title": "A안", "text": "겨울 세일"},
                                           "sms": {"text": "A안 겨울 세일 https://shop.example/a"}}},
    {"name": "b", "split": 50, "messages": {"push": {"title": "B안", "text": "최대 30%"},
                                           "sms": {"text": "B안 최대 30% https://shop.example/b"}}},
]


def testers(ws: Workspace, tmp_path: Path, *users: str) -> None:
    (tmp_path / "testers.csv").write_text("user_id\n" + "".join(f"{u}\n" for u in users), encoding="utf-8")
    ws.change_list("test_users", tmp_path / "testers.csv")


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 6)  # u000, u002, u004 have push tokens
    testers(ws, tmp_path, "u000", "u001")
    yield ws
    ws.close()


def test_every_variant_on_every_channel_goes_to_each_tester_and_nobody_else(shop: Workspace, tmp_path: Path) -> None:
    spec = campaign("sale", variants=VARIANTS)
    del spec["messages"]
    write(tmp_path / "c", "sale", spec)
    result = shop.test_send_campaigns(tmp_path / "c")
    assert result["testers"] == ["u000", "u001"]
    got = {(s["message"], s["channel"], s["user"]): (s["state"], s["reason"]) for s in result["sends"]}
    assert got == {
        ("variant a", "push", "u000"): ("sent", None), ("variant a", "sms", "u000"): ("sent", None),
        ("variant b", "push", "u000"): ("sent", None), ("variant b", "sms", "u000"): ("sent", None),
        ("variant a", "push", "u001"): ("skipped", "no_address"), ("variant a", "sms", "u001"): ("sent", None),
        ("variant b", "push", "u001"): ("skipped", "no_address"), ("variant b", "sms", "u001"): ("sent", None),
    }
    assert shop.campaigns() == [] and outbox_count(shop, "sale") == 0  # not the campaign, not in its results
    texts = {m["message"].get("text") for m in shop.outbox(channel="sms")}
    assert any(t and t.startswith("(광고)") and "B안" in t for t in texts)  # the ad label, as customers get it
    again = shop.test_send_campaigns(tmp_path / "c", to=["u001"])
    assert {s["user"] for s in again["sends"]} == {"u001"} and len(again["sends"]) == 4
    assert len(shop.outbox(channel="sms")) == 4 + 2  # each call sends afresh


def test_only_people_on_the_test_list_get_test_sends(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "sale", campaign("sale"))
    with pytest.raises(FieldError, match="'u003' is not on the test list 'test_users'"):
        shop.test_send_campaigns(tmp_path / "c", to=["u000", "u003"])
    with pytest.raises(FieldError, match="no user 'nobody'"):
        shop.test_send_campaigns(tmp_path / "c", to=["nobody"])
    with pytest.raises(FieldError, match="no campaign called 'other'"):
        shop.test_send_campaigns(tmp_path / "c", name="other")
    assert shop.outbox() == []


def test_nobody_on_the_test_list_says_how_to_add_them(tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock)
    shoppers(ws, 2)
    write(tmp_path / "c", "sale", campaign("sale"))
    with pytest.raises(FieldError, match="nobody is on the test list 'test_users': .*nudge list add test_users"):
        ws.test_send_campaigns(tmp_path / "c")
    ws.close()


def test_the_night_rule_holds_for_test_sends_too(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST + timedelta(hours=10)  # 22:00 in Seoul, and the testers gave no night consent
    write(tmp_path / "c", "sale", campaign("sale"))
    sends = shop.test_send_campaigns(tmp_path / "c", to=["u001"])["sends"]
    assert [(s["channel"], s["state"], s["reason"]) for s in sends] == [
        ("push", "skipped", "no_address"), ("sms", "deferred", "night")]


def test_each_send_step_of_a_journey_is_test_sent(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "j", "cart", cart())
    sends = shop.test_send_campaigns(tmp_path / "j", to=["u000"])["sends"]
    assert [(s["kind"], s["message"], s["channel"], s["state"]) for s in sends] == [
        ("journey", "step push", "push", "sent"), ("journey", "step push", "sms", "sent"),
        ("journey", "step sms", "sms", "sent")]
    assert shop.journey_entries("cart", "u000") == []  # nobody entered it


def test_test_send_from_the_command_line(tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST
    home = tmp_path / "ws"
    ws = open_shop(home, f"sqlite:///{home / 'state.db'}", clock)
    shoppers(ws, 2)
    for user in ("u000", "u001"):  # night consent: the command line runs on the real clock
        for channel in ("sms", "push"):
            ws.set_consent(user, channel=channel, purpose="night", granted=True, source="signup_form", at=NOON_KST)
    testers(ws, tmp_path, "u000", "u001")
    ws.close()
    for section, values in (("sender", SENDER), ("links", {"domains": ["shop.example"]}),
                            ("policy", {"control_group_percent": 0.0})):
        write_section(home, section, values)
    write(tmp_path / "c", "sale", campaign("sale"))
    runner = CliRunner(env={"NUDGE_HOME": str(home)})
    shown = runner.invoke(app, ["campaign", "test", str(tmp_path / "c")])
    assert shown.exit_code == 1, shown.output  # u001 has no push token: one did not go
    assert "no_address" in shown.output or "push token" in shown.output
    only = runner.invoke(app, ["campaign", "test", str(tmp_path / "c"), "--to", "u000", "--json"])
    assert only.exit_code == 0, only.output
    assert {(s["channel"], s["state"]) for s in orjson.loads(only.stdout)["sends"]} == {("push", "sent"),
                                                                                        ("sms", "sent")}
