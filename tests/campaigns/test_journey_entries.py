"""How people enter journeys — a lifecycle transition, joining a segment, an API call over HTTP, a date
relative to an event or a trait, a track call through the server — and the steps that wait for an event or
split at random."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer, wait_for
from sqlalchemy import select

from campaigns.helpers import NOON_KST, open_shop, shoppers, write
from nudgekit.store.state import LifecycleTransition, OutboxMessage
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

SMS = {"channels": ["sms"], "messages": {"sms": {"text": "{{ user.name }}님 안녕하세요 https://shop.example"}}}


@pytest.fixture
def shop(tmp_path: Path, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock)
    shoppers(ws, 6)
    yield ws
    ws.close()


def journey(name: str, entry: dict[str, Any], steps: list[dict[str, Any]] | None = None, **more: Any) -> dict[str, Any]:
    return {"kind": "journey", "name": name, "purpose": "informational", "entry": entry,
            "goal": {"events": ["order_completed"]}, "steps": steps or [{"id": "hello", "send": SMS}], **more}


def queued(ws: Workspace, name: str) -> list[OutboxMessage]:
    with ws.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.campaign == name)
                                    .order_by(OutboxMessage.profile_id)))


def apply(ws: Workspace, folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
    write(folder, spec["name"], spec)
    result = ws.apply_campaigns(folder / f"{spec['name']}.yaml")
    entry = result["campaigns"][0]
    assert not entry["blocked"], entry
    return entry


def test_a_lifecycle_transition_enters_only_the_stages_asked_and_only_after_it_went_live(
        shop: Workspace, tmp_path: Path, clock: Any) -> None:
    def moved(person: str, to: str, frm: str | None) -> None:
        with shop.sessions.begin() as session:
            session.add(LifecycleTransition(profile_id=person, from_stage=frm, to_stage=to, at=clock.now,
                                            detected_at=clock.now, source="run"))

    moved("u000", "churn", "current")  # before the journey: does not enter
    apply(shop, tmp_path / "j", journey("winback", {"stage": ["churn"], "from": ["current", "power"]}))
    moved("u001", "churn", "current")
    moved("u002", "churn", "new")  # not from current or power
    moved("u003", "power", "current")
    shop.tick_campaigns()
    assert [r.profile_id for r in queued(shop, "winback")] == ["u001"]
    assert queued(shop, "winback")[0].fields["text"].startswith("고객1님 안녕하세요 https://shop.example")
    shop.tick_campaigns()
    assert len(queued(shop, "winback")) == 1


def test_joining_a_segment_enters_and_existing_members_only_when_asked(shop: Workspace, tmp_path: Path,
                                                                       clock: Any) -> None:
    shop.identify("u000", {"vip": True})
    shop.flush()
    vip = {"segment": {"where": {"trait": "vip", "op": "eq", "value": True}}, "every": "10m"}
    apply(shop, tmp_path / "j", journey("vip_new", vip))
    applied = apply(shop, tmp_path / "k", journey("vip_all", {**vip, "existing": True}))
    assert applied["applied"]["entered"]["entered"] == 1
    assert [r.profile_id for r in queued(shop, "vip_new")] == []
    assert [r.profile_id for r in queued(shop, "vip_all")] == ["u000"]
    shop.identify("u001", {"vip": True})
    shop.flush()
    clock.advance(minutes=5)
    shop.tick_campaigns()  # not checked again yet
    assert queued(shop, "vip_new") == []
    clock.advance(minutes=6)
    shop.tick_campaigns()
    assert [r.profile_id for r in queued(shop, "vip_new")] == ["u001"]
    assert [r.profile_id for r in queued(shop, "vip_all")] == ["u000", "u001"]


def test_dated_entries_after_an_event_and_before_a_trait(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    shop.identify("u003", {"subscription_ends": "2026-12-01"})
    shop.track("order_completed", "u002", {"months": 1})
    shop.track("order_completed", "u004", {"months": 3})
    shop.flush()
    renew = journey("renew", {"date": {"trait": "subscription_ends", "days": -7, "at": "10:00"}})
    apply(shop, tmp_path / "j", renew)  # 2026-12-01 minus 7 days is today
    assert [r.profile_id for r in queued(shop, "renew")] == ["u003"]
    repurchase = journey("repurchase", {"date": {"event": "order_completed", "days": 30, "at": "11:00",
                                                 "where": [{"property": "months", "op": "eq", "value": 1}]}})
    apply(shop, tmp_path / "k", repurchase)
    clock.advance(days=30, hours=-3)  # 09:00 KST on day 30: it enters, due at 11:00
    shop.tick_campaigns()
    assert queued(shop, "repurchase") == []
    assert shop.journey_entries("repurchase", "u002")[0]["due_at"] == "2026-12-24T02:00:00+00:00"
    clock.advance(hours=2)
    shop.tick_campaigns()
    assert [r.profile_id for r in queued(shop, "repurchase")] == ["u002"]
    clock.advance(days=1)
    shop.tick_campaigns()
    assert len(queued(shop, "repurchase")) == 1


def test_a_wait_for_an_event_goes_on_when_it_comes_and_on_timeout_when_not(shop: Workspace, tmp_path: Path,
                                                                           clock: Any) -> None:
    steps = [{"id": "welcome", "send": SMS},
             {"id": "opened", "wait": {"event": "app_opened", "timeout": "2d", "on_timeout": "nudge"}, "next": "end"},
             {"id": "nudge", "send": {"channels": ["sms"], "messages": {"sms": {"text": "앱에서 쿠폰을 확인하세요"}}}}]
    apply(shop, tmp_path / "j", journey("onboarding", {"event": "signed_up"}, steps))
    shop.track("signed_up", "u000")
    shop.track("signed_up", "u001")
    shop.flush()
    clock.advance(hours=3)
    shop.track("app_opened", "u000")
    shop.flush()
    assert shop.journey_entries("onboarding", "u000")[0]["state"] == "finished"
    clock.advance(days=2)
    shop.tick_campaigns()
    rows = Counter((r.profile_id, r.variant) for r in queued(shop, "onboarding"))
    assert rows == Counter({("u000", "welcome"): 1, ("u001", "welcome"): 1, ("u001", "nudge"): 1})
    assert shop.journey_entries("onboarding", "u001")[0]["path"][1][2] == "timeout"


def test_a_random_split_sends_each_arm_its_share_and_the_same_person_the_same_arm(tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock)
    try:
        people = shoppers(ws, 200)
        steps = [{"split": [{"percent": 70, "next": "a"}, {"percent": 30, "next": "b"}]},
                 {"id": "a", "send": SMS, "next": "end"},
                 {"id": "b", "send": {"channels": ["sms"], "messages": {"sms": {"text": "B안 https://shop.example"}}}}]
        apply(ws, tmp_path / "j", journey("ab", {"event": "signed_up"}, steps))
        for person in people:
            ws.track("signed_up", person)
        ws.flush()
        arms = Counter(r.variant for r in queued(ws, "ab"))
        assert arms["a"] + arms["b"] == 200
        assert 120 <= arms["a"] <= 160, arms
    finally:
        ws.close()


def test_the_api_and_a_track_call_through_the_server_enter_people(tmp_path: Path, state_url: str, clock: Any) -> None:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock, ingest={"flush_interval_seconds": 0.1})
    try:
        shoppers(ws, 4)
        apply(ws, tmp_path / "j", journey("welcome_call", {"api": True}, reentry="once"))
        apply(ws, tmp_path / "k", journey("cart_http", {"event": "added_to_cart"}))
        _, admin = ws.keys.create(KeyScope.ADMIN, "backend", ws.clock())
        _, write_key = ws.keys.create(KeyScope.WRITE, "app", ws.clock())
        with LiveServer(ws) as server, httpx.Client(base_url=server.url, timeout=10) as client:
            body = {"userId": "u001", "properties": {"coupon": "HELLO"}}
            first = client.post("/api/v1/journeys/welcome_call/entries", json=body, auth=(admin, ""),
                                headers={"Idempotency-Key": "signup-u001"})
            again = client.post("/api/v1/journeys/welcome_call/entries", json=body, auth=(admin, ""),
                                headers={"Idempotency-Key": "signup-u001"})
            nobody = client.post("/api/v1/journeys/welcome_call/entries", json={"userId": "ghost"}, auth=(admin, ""))
            missing = client.post("/api/v1/journeys/nope/entries", json=body, auth=(admin, ""))
            wrong_kind = client.post("/api/v1/journeys/cart_http/entries", json=body, auth=(admin, ""))
            tracked = client.post("/v1/track", json={"userId": "u002", "event": "added_to_cart",
                                                     "timestamp": NOON_KST.isoformat()}, auth=(write_key, ""))
            assert tracked.status_code == 200
            wait_for(lambda: queued(ws, "cart_http"))
        assert first.status_code == 200 and first.json()["entered"] == 1, first.json()
        assert again.status_code == 200 and again.json()["entered"] == 0
        assert again.json()["skipped"] == {"already_seen": 1}
        assert nobody.status_code == 400 and "ghost" in nobody.json()["errors"][0]["reason"]
        assert missing.status_code == 404
        assert wrong_kind.status_code == 400 and "api: true" in wrong_kind.json()["errors"][0]["reason"]
        assert [r.profile_id for r in queued(ws, "welcome_call")] == ["u001"]
        assert [r.profile_id for r in queued(ws, "cart_http")] == ["u002"]
    finally:
        ws.close()


def test_an_old_event_arriving_late_starts_nothing(shop: Workspace, tmp_path: Path) -> None:
    apply(shop, tmp_path / "j", journey("late", {"event": "added_to_cart", "max_age": "1h"}))
    shop.track("added_to_cart", "u000", timestamp=(NOON_KST - timedelta(hours=3)).isoformat())
    shop.track("added_to_cart", "u001", timestamp=(NOON_KST - timedelta(minutes=30)).isoformat())
    shop.flush()
    assert [r.profile_id for r in queued(shop, "late")] == ["u001"]


def test_a_walk_cut_off_after_queueing_is_taken_over_after_its_lease_and_sends_nothing_twice(
        shop: Workspace, tmp_path: Path, clock: Any) -> None:
    from nudgekit.campaigns import engine

    apply(shop, tmp_path / "j", journey("later", {"event": "signed_up"}, [{"wait": "1h"}, {"id": "hello", "send": SMS}]))
    shop.track("signed_up", "u000")
    shop.flush()
    clock.advance(minutes=61)
    walkers = engine._claim(shop, clock.now, None)
    with shop.sessions() as session:
        spec, digest = engine.version_of(session, "later", 1)
    engine._walk(shop, spec, digest, walkers, clock.now, Counter())  # queued; then the process died before saving
    assert len(queued(shop, "later")) == 1
    shop.tick_campaigns()  # its lease still holds
    assert shop.journey_entries("later", "u000")[0]["step"] == "step1"
    clock.advance(minutes=6)
    shop.tick_campaigns()
    assert len(queued(shop, "later")) == 1
    assert shop.journey_entries("later", "u000")[0]["state"] == "finished"


def test_a_drain_whose_journey_bookkeeping_fails_keeps_its_events_and_enters_them_once(
        shop: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    from nudgekit.campaigns import engine

    apply(shop, tmp_path / "j", journey("drained", {"event": "signed_up"}))
    shop.spool_events([{"type": "track", "event": "signed_up", "userId": "u001", "messageId": "m-1"}])
    real = engine.on_rows
    calls = []

    def failing(ws: Workspace, rows: Any) -> list[int]:
        calls.append(rows.num_rows)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(ws, rows)

    monkeypatch.setattr(engine, "on_rows", failing)
    with pytest.raises(OperationalError):
        shop.events.drain()
    assert shop.events.pending_parts()  # kept for the next drain
    shop.events.drain()
    assert not shop.events.pending_parts()
    shop.events.drain()
    assert [r.profile_id for r in queued(shop, "drained")] == ["u001"]
    assert len(shop.journey_entries("drained", "u001")) == 1
