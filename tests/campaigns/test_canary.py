"""Canary sends: a share of the audience first; after the wait the guardrails are read — all within their
limits releases the rest, one over pauses the campaign and says why; a person may release it anyway."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from delivery.helpers import drain

from campaigns.helpers import NOON_KST, campaign, open_shop, outbox_count, shoppers, write
from nudgekit.workspace import Workspace

CANARY = {"percent": 20, "wait_minutes": 60, "max_unsubscribe_percent": 5}


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 40)
    write(tmp_path / "c", "canary", campaign("canary", canary=CANARY))
    yield ws
    ws.close()


def test_plan_shows_the_canary_and_the_rest_and_apply_sends_the_canary_only(shop: Workspace, tmp_path: Path) -> None:
    planned = shop.plan_campaigns(tmp_path / "c")["campaigns"][0]
    canary, rest = planned["run"], planned["rest"]
    assert 0 < canary["audience"] < 20 and canary["audience"] + rest["audience"] == 40
    applied = shop.apply_campaigns(tmp_path / "c")["campaigns"][0]["applied"]["runs"][0]
    assert applied["stage"] == "canary" and applied["run"] == canary
    assert outbox_count(shop, "canary") == canary["audience"]
    assert shop.campaign("canary")["runs"][0]["state"] == "canary"


def test_healthy_guardrails_release_the_rest_after_the_wait(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    shop.apply_campaigns(tmp_path / "c")
    drain(shop, clock)
    clock.now = NOON_KST + timedelta(minutes=30)
    assert shop.tick_campaigns() == []
    clock.now = NOON_KST + timedelta(minutes=61)
    released = shop.tick_campaigns()
    assert [r["stage"] for r in released] == ["released"]
    assert all(not g["tripped"] for g in released[0]["guardrails"])
    assert outbox_count(shop, "canary") == 40
    assert shop.campaign("canary")["runs"][0]["state"] == "queued"
    assert shop.tick_campaigns() == []


def test_a_tripped_guardrail_pauses_the_campaign_and_says_why(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    shop.apply_campaigns(tmp_path / "c")
    drain(shop, clock)
    reached = [r["user"] for r in shop.outbox_messages(campaign="canary", state="sent")]
    assert reached
    clock.advance(minutes=5)
    with shop.sessions() as session:
        from nudgekit.store.state import Profile

        user = session.get(Profile, reached[0]).user_id
    shop.set_consent(user, channel="sms", purpose="advertising", granted=False, source="sms_reply",
                     at=clock.now)
    clock.now = NOON_KST + timedelta(minutes=61)
    halted = shop.tick_campaigns()
    assert [r["stage"] for r in halted] == ["halted"]
    assert "unsubscribe" in halted[0]["detail"] and "over 5%" in halted[0]["detail"]
    shown = shop.campaign("canary")
    assert shown["state"] == "paused" and shown["runs"][0]["state"] == "halted"
    assert outbox_count(shop, "canary") < 40
    assert shop.tick_campaigns() == []
    resumed = shop.control_campaign("canary", "resume")
    assert [r["stage"] for r in resumed["released"]] == ["released"]
    assert outbox_count(shop, "canary") == 40 and resumed["state"] == "finished"
