"""Campaigns as code: plan shows what apply then does, on unchanged data, and writes nothing; apply stores
versions, launches what is due and leaves unchanged campaigns alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.helpers import NOON_KST, campaign, open_shop, outbox_count, shoppers, write
from nudgekit.store.state import OutboxMessage, PolicyEvaluation
from nudgekit.workspace import Workspace


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 30, push_every=2, sms_consent_every=1, push_consent_every=3)
    yield ws
    ws.close()


def rows(ws: Workspace, name: str) -> list[OutboxMessage]:
    with ws.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.campaign == name)))


def test_plan_writes_nothing_and_apply_does_what_plan_showed(shop: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    write(folder, "winter", campaign("winter", control_percent=20, budget_krw=100_000,
                                     variants=[{"name": "A", "split": 50, "messages": campaign("x")["messages"]},
                                               {"name": "B", "split": 50, "messages": {
                                                   "push": {"title": "{{ user.name }}님만의 혜택", "text": "30%"},
                                                   "sms": {"text": "{{ user.name }}님 혜택 30%"}}}],
                                     messages=None))
    with shop.sessions() as session:
        evaluations = len(session.scalars(select(PolicyEvaluation)).all())
    planned = shop.plan_campaigns(folder)
    assert outbox_count(shop, "winter") == 0
    assert shop.campaigns() == []
    with shop.sessions() as session:
        assert len(session.scalars(select(PolicyEvaluation)).all()) == evaluations
    entry = planned["campaigns"][0]
    assert entry["change"] == "new" and not entry["blocked"], entry["preflight"]
    run = entry["run"]
    assert run["audience"] == 30
    assert 0 < run["control"] < 30
    assert set(run["variants"]) == {"A", "B"}
    assert run["channels"]["push"]["queued"] + run["channels"]["sms"]["queued"] == run["queued"]
    applied = shop.apply_campaigns(folder, applied_by="kim")
    done = applied["campaigns"][0]["applied"]["runs"][0]["run"]
    assert done == run
    assert outbox_count(shop, "winter") == 30
    found = rows(shop, "winter")
    assert Counter(r.variant for r in found if r.reason != "campaign_control") == Counter(
        {v: c.get("queued", 0) + c.get("skipped", 0) + c.get("deferred", 0) for v, c in run["variants"].items()})
    assert shop.campaign("winter")["versions"][0]["applied_by"] == "kim"
    again = shop.plan_campaigns(folder)
    assert again["campaigns"][0]["change"] == "unchanged" and again["campaigns"][0]["run"] is None
    assert shop.apply_campaigns(folder)["campaigns"][0].get("applied") is None
    assert len(shop.campaign("winter")["versions"]) == 1


def test_each_person_gets_the_first_channel_that_can_reach_them(shop: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    write(folder, "order", campaign("order"))
    shop.apply_campaigns(folder)
    by_user = {r.profile_id: r for r in rows(shop, "order")}
    assert len(by_user) == 30
    for i in range(30):
        row = by_user[shop.resolve(f"u{i:03d}")]
        can_push = i % 2 == 0 and i % 3 == 0  # a token and push consent
        assert row.channel == ("push" if can_push else "sms"), i
        assert row.state == "queued"


def test_nobody_reachable_goes_on_record_on_the_first_channel_with_the_reason(tmp_path: Path, state_url: str,
                                                                             clock: Any) -> None:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 4, push_every=1, sms_consent_every=100, push_consent_every=100)  # u000 consents to both
    folder = tmp_path / "c"
    write(folder, "ad", campaign("ad"))
    result = ws.apply_campaigns(folder)
    run = result["campaigns"][0]["applied"]["runs"][0]["run"]
    assert run["queued"] == 1 and run["skipped"] == {"no_consent": 3}
    assert run["channels"]["push"] == {"queued": 1, "skipped": 3}
    ws.close()


def test_an_edit_is_a_new_version_and_a_sent_one_off_is_not_sent_again(shop: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    write(folder, "winter", campaign("winter"))
    shop.apply_campaigns(folder)
    write(folder, "winter", campaign("winter", priority=5))
    planned = shop.plan_campaigns(folder)["campaigns"][0]
    assert planned["change"] == "changed" and planned["live_version"] == 1
    assert "already launched" in planned["note"] and planned["run"] is None
    applied = shop.apply_campaigns(folder)["campaigns"][0]
    assert applied["applied"]["version"] == 2 and applied["applied"]["runs"] == []
    assert outbox_count(shop, "winter") == 30
    write(folder, "winter", campaign("winter", priority=5, occurrence="2026-12"))
    rerun = shop.apply_campaigns(folder)["campaigns"][0]
    assert rerun["applied"]["runs"][0]["run"]["queued"] == 30
    assert outbox_count(shop, "winter") == 60


def test_a_bad_file_is_named_and_the_good_ones_still_apply(shop: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    write(folder, "good", campaign("good"))
    write(folder, "bad", campaign("bad", goal={"events": ["order_completed"], "window_days": 45},
                                  channels=["push", "sms", "email"]))
    (folder / "segment.yaml").write_text("name: not a campaign\nwhere: {stage: new}\n", encoding="utf-8")
    result = shop.apply_campaigns(folder)
    by_name = {c["name"] or Path(c["file"]).stem: c for c in result["campaigns"]}
    assert by_name["bad"]["error"] and "goal.window_days" in by_name["bad"]["error"]
    assert by_name["good"]["applied"]["version"] == 1
    assert result["blocked"] == [str(folder / "bad.yaml")]
    assert result["ignored"] == [str(folder / "segment.yaml")]


@pytest.mark.parametrize(("change", "said"), [
    ({"channels": ["push", "sms", "email"]}, "no message for email"),
    ({"sensitive": True}, "in-app messages and content cards only"),
    ({"purpose": "informational", "channels": ["brand_message"],
      "messages": {"brand_message": {"text": "x"}}}, "advertising by nature"),
    ({"schedule": {"best_hour": True}}, "issue #9"),
    ({"schedule": {"cron": "every monday"}}, "not a cron expression"),
    ({"messages": {"push": {"title": "t", "text": "x", "ad": False}, "sms": {"text": "x"}}}, "remove ad here"),
    ({"variants": [{"name": "A", "split": 60, "messages": {"push": {"text": "a"}, "sms": {"text": "a"}}},
                   {"name": "B", "split": 30, "messages": {"push": {"text": "b"}, "sms": {"text": "b"}}}],
      "messages": None}, "add up to 90"),
])
def test_a_campaign_that_cannot_work_is_refused_with_the_reason(shop: Workspace, tmp_path: Path,
                                                                change: dict[str, Any], said: str) -> None:
    spec = {k: v for k, v in {**campaign("c"), **change}.items() if v is not None}
    write(tmp_path / "c", "c", spec)
    entry = shop.plan_campaigns(tmp_path / "c")["campaigns"][0]
    assert entry["blocked"] and said in entry["error"], entry["error"]
