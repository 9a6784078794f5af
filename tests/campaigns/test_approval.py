"""Approval: a campaign that says requires_approval, or that a workspace rule catches, is applied but waits;
a second person from [campaigns] approvers approves that exact version and only then does it go live. Any
edit is a new version that waits again."""

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
from campaigns.test_journeys import cart, sent
from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.profiles.contacts import FieldError
from nudgekit.workspace import Workspace

APPROVERS = {"approvers": ["lee", "park"]}


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock, campaigns=APPROVERS)
    shoppers(ws, 10)
    yield ws
    ws.close()


def test_a_campaign_that_requires_approval_waits_for_a_second_person(shop: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    write(folder, "sale", campaign("sale", requires_approval=True))
    planned = shop.plan_campaigns(folder)["campaigns"][0]
    assert planned["approval"] == ["the file says requires_approval"] and not planned["blocked"]
    assert {"check": "approval", "level": "warning",
            "message": "waits for approval by one of lee, park (the file says requires_approval)"} \
        in planned["preflight"]

    applied = shop.apply_campaigns(folder, applied_by="kim")["campaigns"][0]["applied"]
    assert applied == {"version": 1, "state": "awaiting_approval"}
    assert outbox_count(shop, "sale") == 0 and shop.tick_campaigns() == []
    with pytest.raises(FieldError, match="'kim' is not an approver: .* names lee, park"):
        shop.approve_campaign("sale", 1, "kim")
    with pytest.raises(FieldError, match="has no version 2"):
        shop.approve_campaign("sale", 2, "lee")
    with pytest.raises(FieldError, match="waits for approval"):
        shop.control_campaign("sale", "resume")

    approved = shop.approve_campaign("sale", 1, "lee")
    assert approved["state"] == "scheduled" and approved["runs"][0]["run"]["audience"] == 10
    assert outbox_count(shop, "sale") == 10
    shown = shop.campaign("sale")
    assert shown["state"] == "finished" and shown["versions"][0]["approved_by"] == "lee"
    assert shown["versions"][0]["applied_by"] == "kim"
    with pytest.raises(FieldError, match="approved already, by lee"):
        shop.approve_campaign("sale", 1, "park")
    assert shop.apply_campaigns(folder, applied_by="kim")["campaigns"][0]["change"] == "unchanged"


def test_the_person_who_applied_it_cannot_approve_it(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "sale", campaign("sale", requires_approval=True))
    shop.apply_campaigns(tmp_path / "c", applied_by="lee")
    with pytest.raises(FieldError, match="lee applied version 1: a second person must approve it"):
        shop.approve_campaign("sale", 1, "lee")
    assert shop.approve_campaign("sale", 1, "park")["approved_by"] == "park"


def test_an_edit_voids_the_approval(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    folder = tmp_path / "c"
    daily = {"cron": "0 13 * * *"}
    write(folder, "daily", campaign("daily", requires_approval=True, schedule=daily))
    shop.apply_campaigns(folder, applied_by="kim")
    approved = shop.approve_campaign("daily", 1, "lee")
    assert approved["state"] == "scheduled" and approved["runs"] == []
    clock.now = NOON_KST + timedelta(hours=1)  # 13:00 KST: the approved version runs
    assert [r["version"] for r in shop.tick_campaigns()] == [1]

    edited = campaign("daily", requires_approval=True, schedule=daily)
    edited["messages"]["sms"]["text"] += " 오늘 마감"
    write(folder, "daily", edited)
    applied = shop.apply_campaigns(folder, applied_by="kim")["campaigns"][0]
    assert applied["change"] == "changed" and applied["applied"] == {"version": 2, "state": "awaiting_approval"}
    clock.now = NOON_KST + timedelta(days=1, hours=1)
    assert shop.tick_campaigns() == []  # the approval was for version 1: nothing runs until version 2 has one
    with pytest.raises(FieldError, match="version 1 of 'daily' was replaced by version 2 .*applied by kim"):
        shop.approve_campaign("daily", 1, "park")

    write(folder, "daily", campaign("daily", requires_approval=True, schedule=daily))  # back as it was
    again = shop.apply_campaigns(folder, applied_by="kim")["campaigns"][0]["applied"]
    assert again == {"version": 3, "state": "awaiting_approval"}  # same text as version 1, still a new approval
    with pytest.raises(FieldError, match="replaced by version 3"):
        shop.approve_campaign("daily", 2, "park")
    clock.now = NOON_KST + timedelta(days=1, hours=2)
    assert shop.approve_campaign("daily", 3, "park")["runs"] == []  # the 13:00 run it missed while waiting is gone
    clock.now = NOON_KST + timedelta(days=2, hours=1)
    assert [r["version"] for r in shop.tick_campaigns()] == [3]
    versions = {v["version"]: v["approved_by"] for v in shop.campaign("daily")["versions"]}
    assert versions == {1: "lee", 2: None, 3: "park"}


@pytest.mark.parametrize(("purpose", "people", "needed"), [
    ("advertising", 10, True), ("advertising", 5, False), ("informational", 10, False)])
def test_a_workspace_rule_catches_advertising_to_many_people(tmp_path: Path, state_url: str, clock: Any,
                                                              purpose: str, people: int, needed: bool) -> None:
    clock.now = NOON_KST
    rules = {**APPROVERS, "approval": [{"purpose": "advertising", "audience_over": 5}]}
    ws = open_shop(tmp_path / "ws", state_url, clock, campaigns=rules)
    shoppers(ws, people)
    write(tmp_path / "c", "sale", campaign("sale", purpose=purpose))
    entry = ws.apply_campaigns(tmp_path / "c", applied_by="kim")["campaigns"][0]
    if needed:
        assert entry["approval"] == ["the workspace's rule for advertising campaigns to more than 5 people (10)"]
        assert entry["applied"]["state"] == "awaiting_approval" and outbox_count(ws, "sale") == 0
    else:
        assert entry["approval"] == [] and outbox_count(ws, "sale") == people
    ws.close()


def test_needing_approval_with_no_approvers_stops_apply(tmp_path: Path, state_url: str, clock: Any) -> None:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 3)
    write(tmp_path / "c", "sale", campaign("sale", requires_approval=True))
    result = ws.apply_campaigns(tmp_path / "c", applied_by="kim")
    assert result["blocked"] == ["sale"] and ws.campaigns() == []
    check = next(c for c in result["campaigns"][0]["preflight"] if c["check"] == "approval")
    assert check["level"] == "error" and "names nobody" in check["message"]
    ws.close()


def test_approval_runs_preflight_again_on_todays_data(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    spec = campaign("sale", requires_approval=True, channels=["sms"])
    del spec["messages"]["push"]
    write(tmp_path / "c", "sale", spec)
    result = shop.apply_campaigns(tmp_path / "c", applied_by="kim")
    assert result["campaigns"][0]["applied"]["state"] == "awaiting_approval", result
    clock.now = NOON_KST + timedelta(hours=10)  # 22:00 in Seoul: sent now, the advertisement would go at night
    with pytest.raises(FieldError, match="fails preflight on today's data.*night"):
        shop.approve_campaign("sale", 1, "lee")
    assert shop.campaign("sale")["state"] == "awaiting_approval" and outbox_count(shop, "sale") == 0
    clock.now = NOON_KST + timedelta(days=1)
    assert shop.approve_campaign("sale", 1, "lee")["runs"][0]["run"]["queued"] == 10


def test_a_journey_waiting_for_approval_takes_nobody_in(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    folder = tmp_path / "j"
    write(folder, "cart", cart(requires_approval=True))
    applied = shop.apply_campaigns(folder, applied_by="kim")["campaigns"][0]["applied"]
    assert applied["state"] == "awaiting_approval"
    shop.track("added_to_cart", "u000", {})
    shop.flush()
    assert shop.journey_entries("cart", "u000") == []
    assert shop.approve_campaign("cart", 1, "lee")["state"] == "live"
    clock.advance(minutes=1)
    shop.track("added_to_cart", "u002", {})
    shop.flush()
    assert [w["version"] for w in shop.journey_entries("cart", "u002")] == [1]

    edited = cart(requires_approval=True)
    edited["steps"][0] = {"wait": "2h"}
    write(folder, "cart", edited)
    assert shop.apply_campaigns(folder, applied_by="kim")["campaigns"][0]["applied"]["state"] == "awaiting_approval"
    shop.track("added_to_cart", "u004", {})
    shop.flush()
    clock.advance(hours=1, minutes=1)
    shop.tick_campaigns()
    # u002 walks on, on the approved version 1; u004 came while version 2 waited and did not enter
    assert shop.journey_entries("cart", "u004") == []
    assert {(r.profile_id, r.variant) for r in sent(shop, "cart")} == {("u002", "push")}
    shop.approve_campaign("cart", 2, "park")
    clock.advance(minutes=1)
    shop.track("added_to_cart", "u004", {})
    shop.flush()
    assert [w["version"] for w in shop.journey_entries("cart", "u004")] == [2]


def test_approve_from_the_command_line(tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST
    home = tmp_path / "ws"
    ws = open_shop(home, f"sqlite:///{home / 'state.db'}", clock)
    shoppers(ws, 4)
    ws.close()
    for section, values in (("sender", SENDER), ("links", {"domains": ["shop.example"]}),
                            ("policy", {"control_group_percent": 0.0}), ("campaigns", APPROVERS)):
        write_section(home, section, values)
    write(tmp_path / "c", "info", campaign("info", purpose="informational", requires_approval=True))
    runner = CliRunner(env={"NUDGE_HOME": str(home)})
    applied = runner.invoke(app, ["apply", str(tmp_path / "c")], env={"NUDGE_USER": "kim"})
    assert applied.exit_code == 0, applied.output
    assert "waits for approval" in applied.output and "--version 1" in applied.output
    refused = runner.invoke(app, ["campaign", "approve", "info", "--version", "1", "--json"],
                            env={"NUDGE_USER": "kim"})
    assert refused.exit_code != 0 and "not an approver" in refused.output
    approved = runner.invoke(app, ["campaign", "approve", "info", "--version", "1", "--as", "park", "--json"])
    assert approved.exit_code == 0, approved.output
    result = orjson.loads(approved.stdout)
    assert result["approved_by"] == "park" and result["runs"][0]["run"]["audience"] == 4
