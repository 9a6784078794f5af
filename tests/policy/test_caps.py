"""Frequency caps: workspace-wide, per channel and per campaign; priority among queued messages; and caps
that hold with many worker processes claiming at once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import FakeClock
from sqlalchemy import func, select

from nudgekit.store.state import CampaignSpend, CapClaim
from nudgekit.workspace import Workspace

from . import workers
from .helpers import NOON_KST, open_shop, person

PUSH_CAPS = [{"channel": "push", "limit": 1, "hours": 24}, {"channel": "push", "limit": 3, "hours": 24 * 7}]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON_KST)


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: FakeClock) -> Workspace:
    ws = open_shop(tmp_path / "ws", state_url, clock, caps=PUSH_CAPS)
    person(ws, "u1", consent=("push", "sms"), push_tokens=[{"token": "c" * 64, "platform": "android"}])
    yield ws
    ws.close()


def push(ws: Workspace, **options: object) -> str:
    return ws.send("push", "u1", title="세일", text="오늘만", ad=True, **options).ruling.reason


def test_one_advertising_push_a_day_three_a_week(shop: Workspace, clock: FakeClock) -> None:
    assert push(shop) == "send"
    assert push(shop) == "capped"
    got = []
    for _ in range(7):
        clock.advance(hours=24, minutes=1)
        got.append(push(shop))
    # sent on days 0, 1 and 2: three a week; day 7 is past day 0's week (a rolling window)
    assert got == ["send", "send", "capped", "capped", "capped", "capped", "send"]
    # informational pushes and other channels are not counted by these caps
    assert shop.send("push", "u1", title="배송", text="출발했습니다").ruling.reason == "send"
    assert shop.send("sms", "u1", text="세일", ad=True).ruling.reason == "send"


def test_a_campaign_sends_a_person_at_most_once_in_its_window(shop: Workspace, clock: FakeClock) -> None:
    sms = [shop.send("sms", "u1", text="세일", ad=True, campaign="winter", once_per_hours=72).ruling.reason]
    clock.advance(hours=48)
    sms.append(shop.send("sms", "u1", text="세일", ad=True, campaign="winter", once_per_hours=72).ruling.reason)
    sms.append(shop.send("sms", "u1", text="세일", ad=True, campaign="spring", once_per_hours=72).ruling.reason)
    clock.advance(hours=25)
    sms.append(shop.send("sms", "u1", text="세일", ad=True, campaign="winter", once_per_hours=72).ruling.reason)
    assert sms == ["send", "capped", "send", "send"]


def test_a_message_the_provider_refused_gives_its_slot_back(tmp_path: Path, state_url: str) -> None:
    from conftest import free_port

    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST), caps=[
        {"channel": "webhook", "purpose": "*", "limit": 1, "hours": 24}])
    ws.settings.providers.webhook = "webhook"
    ws.settings.webhook.allow_local, ws.settings.webhook.secret = True, "s" * 32
    person(ws, "u1")
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: refused before anything was sent
    first = ws.send("webhook", "u1", url=closed, data={"order": 1}, message_id="first")
    assert first.ruling.sends and not first.sent
    with ws.sessions() as session:
        assert session.get(CapClaim, "first").state == "released"
    again = ws.send("webhook", "u1", url=closed, data={"order": 1}, message_id="again")
    assert again.ruling.reason == "send"  # not capped by a message that never went
    ws.close()


def test_higher_priority_takes_a_queued_slot_and_the_bumped_message_is_skipped_at_handover(
        shop: Workspace) -> None:
    low = shop.gate("push", "u1", stage="queue", message_id="low", campaign="newsletter", priority=1,
                    title="뉴스", text="이번 주 소식", ad=True)
    high = shop.gate("push", "u1", stage="queue", message_id="high", campaign="cart", priority=5,
                     title="장바구니", text="잊은 상품", ad=True)
    lower = shop.gate("push", "u1", stage="queue", message_id="lower", campaign="promo", priority=0,
                      title="세일", text="오늘만", ad=True)
    assert [r.reason for r in (low, high, lower)] == ["send", "send", "capped"]
    assert high.decisions[-2].reason == "took_slot"
    bumped = shop.gate("push", "u1", stage="handover", message_id="low", campaign="newsletter", priority=1,
                       title="뉴스", text="이번 주 소식", ad=True)
    assert (bumped.action, bumped.reason) == ("skip", "bumped") and "high" in bumped.decisions[-1].en
    kept = shop.gate("push", "u1", stage="handover", message_id="high", campaign="cart", priority=5,
                     title="장바구니", text="잊은 상품", ad=True)
    assert kept.sends and kept.decisions[-2].reason == "slot_held"
    # a spent slot is never taken back, whatever the priority
    urgent = shop.gate("push", "u1", stage="queue", message_id="urgent", campaign="flash", priority=9,
                       title="긴급", text="특가", ad=True)
    assert urgent.reason == "capped"


def test_a_withdrawal_between_queueing_and_handover_stops_the_message(shop: Workspace, clock: FakeClock) -> None:
    queued = shop.gate("sms", "u1", stage="queue", message_id="m1", text="세일", ad=True, campaign="c",
                       budget_krw=100)
    assert queued.sends
    clock.advance(minutes=5)
    shop.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="sms_reply",
                     evidence="수신거부")
    clock.advance(minutes=5)
    handed = shop.gate("sms", "u1", stage="handover", message_id="m1", text="세일", ad=True, campaign="c",
                       budget_krw=100)
    assert (handed.action, handed.reason) == ("skip", "consent_withdrawn")
    with shop.sessions() as session:
        assert session.get(CapClaim, "m1") is None or session.get(CapClaim, "m1").state == "released"
        assert session.get(CampaignSpend, "c").spent_cents == 0  # the budget it held is given back
    assert [p["stage"] for p in shop.explain(message_id="m1")] == ["handover", "queue"]


@pytest.mark.parametrize("stage", ["queue", "handover"])
def test_caps_and_budgets_hold_with_parallel_worker_processes(tmp_path: Path, state_url: str, stage: str) -> None:
    policy = {"control_group_percent": 0.0, "caps": [{"channel": "sms", "purpose": "*", "limit": 3, "hours": 24}]}
    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST), **policy)
    users = [f"p{i}" for i in range(4)]
    for i, user in enumerate(users):
        person(ws, user, phone=f"010-5555-000{i}")
    ws.close()
    processes, rounds = 6, 12
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        runs = [pool.submit(workers.claim, str(tmp_path / "ws"), state_url, policy, w, users, rounds, stage)
                for w in range(processes)]
        outcomes = [row for run in runs for row in run.result(timeout=300)]
    assert len(outcomes) == processes * rounds
    assert {reason for _, _, reason in outcomes} <= {"send", "capped", "over_budget"}
    ws = Workspace.open(tmp_path / "ws", database_url=state_url)
    with ws.sessions() as session:
        live = Counter(session.scalars(select(CapClaim.profile_id).where(CapClaim.state.in_(("held", "spent")))))
        spends = dict(session.execute(select(CampaignSpend.campaign, CampaignSpend.spent_cents)).all())
        claims = session.scalar(select(func.count()).select_from(CapClaim))
    ws.close()
    assert live == {user: 3 for user in users}  # every person reached the cap, nobody passed it
    assert all(cents <= 12 * 7 * 100 for cents in spends.values())  # no campaign past its 84 KRW budget
    assert sum(spends.values()) == 12 * 100 * sum(live.values())  # only what went was spent
    assert claims >= sum(live.values())
    granted = Counter(user for user, action, _ in outcomes if action == "send")
    if stage == "handover":
        assert granted == live  # nothing is bumped once spent


def test_caps_are_validated_when_the_settings_load(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from nudgekit.config import PolicySettings

    with pytest.raises(ValidationError, match="unknown channel 'fax'"):
        PolicySettings(caps=[{"channel": "fax", "limit": 1}])
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        PolicySettings(caps=[{"channel": "push", "limit": 0}])
    with pytest.raises(ValidationError, match="HH:MM"):
        PolicySettings(quiet_hours="late")
    assert timedelta(hours=PolicySettings(caps=[{"limit": 2}]).caps[0].hours) == timedelta(days=1)
