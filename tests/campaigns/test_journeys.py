"""Journeys on a controllable clock: entering on an event, waiting, branching, leaving on an exit event; the
walk survives a restart in the middle of a wait; people in flight finish on the version they entered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.helpers import NOON_KST, open_shop, shoppers, write
from nudgekit.campaigns.journey import parse
from nudgekit.campaigns.spec import SpecError
from nudgekit.store.state import OutboxMessage
from nudgekit.workspace import Workspace


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 8, push_every=2)
    yield ws
    ws.close()


def cart(name: str = "cart", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "journey", "name": name, "purpose": "advertising",
        "entry": {"event": "added_to_cart"},
        "reentry": {"allow": "always", "while_in": "restart"},
        "exit": {"events": ["order_completed"]},
        "goal": {"events": ["order_completed"], "window_days": 3},
        "steps": [
            {"wait": "1h"},
            {"id": "push", "send": {"channels": ["push", "sms"], "messages": {
                "push": {"title": "장바구니", "text": "담아두신 상품이 기다려요"},
                "sms": {"text": "담아두신 상품이 기다려요 https://shop.example/cart"}}}},
            {"wait": {"days": 1, "until": "10:00"}},
            {"id": "viewed", "branch": {"if": {"performed": "product_viewed"}, "then": "end"}},
            {"id": "sms", "send": {"channels": ["sms"], "messages": {
                "sms": {"text": "장바구니 상품 10% 할인 https://shop.example/cart"}}}},
        ],
    }
    spec.update(overrides)
    return spec


def sent(ws: Workspace, journey: str) -> list[OutboxMessage]:
    with ws.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.campaign == journey)
                                    .order_by(OutboxMessage.profile_id, OutboxMessage.variant)))


def by(ws: Workspace, journey: str) -> set[tuple[str | None, str | None]]:
    return {(r.profile_id, r.variant) for r in sent(ws, journey)}


def test_cart_journey_waits_sends_branches_and_survives_a_restart(shop: Workspace, tmp_path: Path,
                                                                   clock: Any, state_url: str) -> None:
    folder = tmp_path / "journeys"
    write(folder, "cart", cart())
    applied = shop.apply_campaigns(folder)
    entry = applied["campaigns"][0]
    assert not entry["blocked"], entry
    assert entry["applied"]["state"] == "live"
    shop.track("added_to_cart", "u000", {"sku": "A1"})
    shop.track("added_to_cart", "u001", {"sku": "B2"})
    shop.flush()
    walks = shop.journey_entries("cart", "u000")
    assert [(w["state"], w["step"], w["waiting"]) for w in walks] == [("active", "step1", True)]
    clock.advance(minutes=59)
    shop.tick_campaigns()
    assert sent(shop, "cart") == []
    clock.advance(minutes=2)  # 13:01 KST: the hour is up
    shop.tick_campaigns()
    assert by(shop, "cart") == {("u000", "push"), ("u001", "push")}
    rows = {r.profile_id: r for r in sent(shop, "cart")}
    assert rows["u000"].channel == "push" and rows["u001"].channel == "sms"  # u001 has no push token
    shop.track("product_viewed", "u001", {"sku": "B2"})
    shop.flush()
    shop.close()

    # a restart in the middle of the wait: a new process picks the timers up from the state DB
    clock.advance(hours=20)  # 09:01 KST next day: not yet 10:00
    reopened = Workspace.open(tmp_path / "ws", clock=clock)
    try:
        reopened.tick_campaigns()
        assert len(sent(reopened, "cart")) == 2
        clock.advance(hours=1)
        reopened.tick_campaigns()
        assert by(reopened, "cart") == {("u000", "push"), ("u001", "push"), ("u000", "sms")}
        u001 = reopened.journey_entries("cart", "u001")[-1]
        assert u001["state"] == "finished"
        assert [p[0] for p in u001["path"]] == ["step1", "push", "step3", "viewed"]
        assert u001["path"][-1][2] == "yes"
        reopened.tick_campaigns()  # nothing is sent twice
        assert len(sent(reopened, "cart")) == 3
    finally:
        reopened.close()


def test_exit_event_and_restart_on_a_new_trigger(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    write(tmp_path / "j", "cart", cart())
    shop.apply_campaigns(tmp_path / "j")
    shop.track("added_to_cart", "u002")
    shop.track("added_to_cart", "u004")
    shop.flush()
    clock.advance(minutes=10)
    shop.track("order_completed", "u002", {"revenue": 30000})
    shop.track("added_to_cart", "u004", {"sku": "again"})  # restarts its wait
    shop.flush()
    clock.advance(minutes=55)  # 65 min after the first cart, 55 after the second
    shop.tick_campaigns()
    assert sent(shop, "cart") == []
    u002 = shop.journey_entries("cart", "u002")
    assert [(w["state"], w["exit_reason"]) for w in u002] == [("exited", "exit_event:order_completed")]
    u004 = shop.journey_entries("cart", "u004")
    assert [(w["state"], w["exit_reason"]) for w in u004] == [("exited", "restarted"), ("active", None)]
    clock.advance(minutes=6)
    shop.tick_campaigns()
    assert by(shop, "cart") == {("u004", "push")}


def test_people_in_flight_finish_on_the_version_they_entered(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    folder = tmp_path / "j"
    write(folder, "cart", cart())
    shop.apply_campaigns(folder)
    shop.track("added_to_cart", "u002")
    shop.flush()
    changed = cart()
    changed["steps"][1]["send"]["messages"]["push"]["text"] = "두 번째 판: 오늘만 무료배송"
    changed["steps"][0] = {"wait": "2h"}
    write(folder, "cart", changed)
    planned = shop.plan_campaigns(folder)
    assert planned["campaigns"][0]["change"] == "changed"
    assert planned["campaigns"][0]["journey"]["in_flight"] == {"1": 1}
    shop.apply_campaigns(folder)
    shop.track("added_to_cart", "u004")
    shop.flush()
    clock.advance(minutes=61)
    shop.tick_campaigns()
    assert by(shop, "cart") == {("u002", "push")}  # v1: one hour; v2 waits two
    assert sent(shop, "cart")[0].fields["text"] == "담아두신 상품이 기다려요"
    clock.advance(hours=1)
    shop.tick_campaigns()
    rows = {r.profile_id: r for r in sent(shop, "cart")}
    assert rows["u004"].fields["text"] == "두 번째 판: 오늘만 무료배송"
    assert [w["version"] for w in shop.journey_entries("cart", "u004")] == [2]


def test_plan_shows_entry_reentry_steps_and_a_sample_send(shop: Workspace, tmp_path: Path) -> None:
    shop.track("added_to_cart", "u000")
    shop.track("added_to_cart", "u003")
    shop.flush()
    write(tmp_path / "j", "cart", cart())
    planned = shop.plan_campaigns(tmp_path / "j")
    entry = planned["campaigns"][0]
    assert entry["kind"] == "journey" and not entry["blocked"], entry["preflight"]
    journey = entry["journey"]
    assert journey["recent_triggers"] == 2
    assert "added_to_cart" in journey["entry"]
    assert journey["reentry"] == ("A person enters every time it is triggered. A trigger while they are still in "
                                  "it takes them out and starts them again at the first step.")
    assert journey["steps"][0] == "step1: wait 1h"
    assert set(entry["run"]["variants"]) == {"push", "sms"}
    assert shop.campaigns() == [] and sent(shop, "cart") == []


def test_night_hours_in_an_advertising_journey_stop_apply(shop: Workspace, tmp_path: Path) -> None:
    spec = cart()
    spec["steps"][2] = {"wait": {"days": 1, "until": "22:00"}}
    write(tmp_path / "j", "cart", spec)
    applied = shop.apply_campaigns(tmp_path / "j")
    entry = applied["campaigns"][0]
    assert entry["blocked"]
    assert any(c["check"] == "night" and c["level"] == "error" and "22:00" in c["message"]
               for c in entry["preflight"]), entry["preflight"]
    assert shop.campaigns() == []


@pytest.mark.parametrize(("change", "message"), [
    ({"entry": {"event": "x", "api": True}}, "exactly one of"),
    ({"steps": [{"wait": "1h", "branch": {"if": {"performed": "x"}}}]}, "a step does one thing"),
    ({"steps": [{"wait": "soon"}]}, "is not a duration"),
    ({"steps": [{"id": "a", "branch": {"if": {"performed": "x"}, "then": "a"}}]}, "goes round without a wait"),
    ({"steps": [{"send": {"messages": {"push": {"text": "x"}}}, "next": "nowhere"}]}, "no step called 'nowhere'"),
    ({"reentry": "once", "steps": [{"split": [{"percent": 60, "next": "end"}, {"percent": 30, "next": "end"}]}]},
     "add up to 90%"),
    ({"steps": [{"wait": {"event": "order_completed"}}]}, "timeout"),
])
def test_a_broken_journey_says_where_and_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse({**cart(), **change}, "j.yaml")


def test_a_campaign_rewritten_as_a_journey_of_the_same_name_takes_people_in(shop: Workspace, tmp_path: Path) -> None:
    from campaigns.helpers import campaign

    folder = tmp_path / "j"
    write(folder, "cart", campaign("cart", schedule={"at": "2027-01-04T10:00:00"}))
    assert not shop.apply_campaigns(folder)["blocked"]
    write(folder, "cart", cart())
    applied = shop.apply_campaigns(folder)["campaigns"][0]
    assert applied["applied"]["state"] == "live", applied
    assert [c["kind"] for c in shop.campaigns()] == ["journey"]
    shop.track("added_to_cart", "u000")
    shop.flush()
    assert shop.journey_entries("cart", "u000")[0]["state"] == "active"
