"""Preflight stops apply for what should not go: no goal, an empty or suspiciously large audience, a message
that fails for everyone, an unknown link, advertising in the night window, a short budget, a purpose that the
message contradicts. A campaign it stops is not stored; the numbers come from the dry run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from campaigns.helpers import NOON_KST, campaign, open_shop, outbox_count, shoppers, write
from nudgekit.workspace import Workspace


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock, campaigns={"link_domains": ["partner.example"]})
    shoppers(ws, 12)
    yield ws
    ws.close()


def checks(ws: Workspace, folder: Path, *, apply: bool = False) -> dict[str, dict[str, Any]]:
    result = (ws.apply_campaigns if apply else ws.plan_campaigns)(folder)
    entry = result["campaigns"][0]
    assert entry["error"] is None, entry["error"]
    return {c["check"]: c for c in entry["preflight"]}


def test_a_campaign_without_a_goal_is_not_applied(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", {**campaign("c"), "goal": None})
    found = checks(shop, tmp_path / "c", apply=True)
    assert found["goal"]["level"] == "error"
    assert shop.campaigns() == [] and outbox_count(shop, "c") == 0


def test_an_empty_audience_stops_it(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", campaign("c", audience={"segment": {"where": {"trait": "city", "op": "eq",
                                                                             "value": "부산"}}}))
    assert checks(shop, tmp_path / "c")["audience"]["level"] == "error"


def test_an_audience_of_nearly_everyone_must_be_meant(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", campaign("c", audience={"segment": {"where": {"trait": "city", "op": "eq",
                                                                             "value": "서울"}}}))
    found = checks(shop, tmp_path / "c")["audience"]
    assert found["level"] == "error" and "100.0% of everyone" in found["message"]
    assert "audience.max_percent" in found["message"]
    write(tmp_path / "c", "c", campaign("c"))  # says max_percent: 100
    assert checks(shop, tmp_path / "c")["audience"]["level"] == "ok"


def test_a_message_that_fails_to_render_stops_it_with_the_fault(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", campaign("c", messages={"push": {"title": "t", "text": "{{ 1 / 0 }}"},
                                                         "sms": {"text": "{{ 1 / 0 }}"}}))
    found = checks(shop, tmp_path / "c", apply=True)["messages"]
    assert found["level"] == "error" and "fails to render for 12 people" in found["message"]
    assert "division" in found["message"]
    assert shop.campaigns() == []


def test_missing_data_warns_but_does_not_stop(shop: Workspace, tmp_path: Path) -> None:
    shop.identify("u000", {"name": None})
    shop.flush()
    write(tmp_path / "c", "c", campaign("c"))
    found = checks(shop, tmp_path / "c")
    assert found["missing_data"]["level"] == "warning" and "1 people" in found["missing_data"]["message"]
    assert found["messages"]["level"] == "ok"


@pytest.mark.parametrize(("link", "level", "said"), [
    ("https://shop.example/sale", "ok", "own domains"),
    ("https://www.shop.example/sale", "ok", "own domains"),
    ("https://partner.example/x", "ok", "own domains"),
    ("https://bit.ly/abc", "error", "bit.ly"),
    ("https://shop-example.com/sale", "error", "shop-example.com"),
    ("htps://shop.example/sale", "error", "malformed"),
    ("https://localhost/sale", "error", "malformed"),
])
def test_links_go_only_to_known_domains(shop: Workspace, tmp_path: Path, link: str, level: str, said: str) -> None:
    write(tmp_path / "c", "c", campaign("c", messages={"push": {"title": "t", "text": "세일", "link": link},
                                                         "sms": {"text": f"세일 {link}"}}))
    found = checks(shop, tmp_path / "c")["links"]
    assert found["level"] == level and said in found["message"], found


def test_advertising_in_the_night_window_stops_it_but_information_may_go(shop: Workspace, tmp_path: Path,
                                                                         clock: Any) -> None:
    clock.now = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)  # 22:30 in Seoul
    write(tmp_path / "c", "c", campaign("c"))
    found = checks(shop, tmp_path / "c")["night"]
    assert found["level"] == "error" and "goes at 22:30" in found["message"]
    write(tmp_path / "c", "c", campaign("c", purpose="informational"))
    assert checks(shop, tmp_path / "c")["night"]["level"] == "ok"


def test_people_abroad_at_night_are_a_warning_not_a_stop(shop: Workspace, tmp_path: Path) -> None:
    shop.identify("u003", {"timezone": "America/New_York"})  # noon in Seoul is 22:00 there
    shop.flush()
    write(tmp_path / "c", "c", campaign("c"))
    found = checks(shop, tmp_path / "c")["night"]
    assert found["level"] == "warning" and "1 people" in found["message"]


def test_an_advertisement_scheduled_for_each_persons_night_stops_it(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", campaign("c", schedule={"at": "2026-12-01T07:30:00", "local_time": True}))
    found = checks(shop, tmp_path / "c")["night"]
    assert found["level"] == "error" and "goes at 07:30" in found["message"]


def test_a_budget_too_small_for_the_audience_stops_it(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", campaign("c", channels=["sms"], messages={"sms": {"text": "세일"}}, budget_krw=60))
    found = checks(shop, tmp_path / "c")["budget"]
    assert found["level"] == "error" and "budget is short" in found["message"]
    assert "needs about" in found["message"]


def test_a_saved_template_must_agree_with_the_campaigns_purpose(shop: Workspace, tmp_path: Path) -> None:
    shop.save_template({"name": "sale_sms", "channel": "sms", "message": {"text": "{{ user.name }}님 세일 30%", "ad": True}})
    write(tmp_path / "c", "c", campaign("c", purpose="informational", channels=["sms"],
                                        messages={"sms": {"template": "sale_sms"}}))
    found = checks(shop, tmp_path / "c")["purpose"]
    assert found["level"] == "error" and "advertising" in found["message"]


def test_a_template_is_pinned_and_a_new_template_version_is_a_change(shop: Workspace, tmp_path: Path) -> None:
    shop.save_template({"name": "sale_sms", "channel": "sms", "message": {"text": "{{ user.name }}님 세일 30%", "ad": True}})
    write(tmp_path / "c", "c", campaign("c", channels=["sms"], messages={"sms": {"template": "sale_sms"}},
                                        schedule={"at": "2026-12-01T10:00:00"}))
    shop.apply_campaigns(tmp_path / "c")
    assert shop.campaign("c")["spec"]["messages"]["sms"] == {"template": "sale_sms", "template_version": 1}
    assert shop.plan_campaigns(tmp_path / "c")["campaigns"][0]["change"] == "unchanged"
    shop.save_template({"name": "sale_sms", "channel": "sms", "message": {"text": "{{ user.name }}님 세일 40%", "ad": True}})
    assert shop.plan_campaigns(tmp_path / "c")["campaigns"][0]["change"] == "changed"


def test_a_template_that_does_not_exist_is_named(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "c", campaign("c", channels=["sms"], messages={"sms": {"template": "nope"}}))
    entry = shop.plan_campaigns(tmp_path / "c")["campaigns"][0]
    assert "no saved template called nope" in entry["error"]
