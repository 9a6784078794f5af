"""The outbox and its worker against the fake Solapi (a real HTTP server with Solapi's batch API, which cannot
drop a repeated message): planned once, sent once, every row ending in a state with a reason — through
server errors, 429s with Retry-After, an outage, a pause, a cancel and a dead worker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import FakeClock
from policy.helpers import NOON_KST
from sqlalchemy import func, select, update

from nudgekit.delivery import outbox
from nudgekit.store.state import CapClaim, OutboxAttempt, OutboxMessage, Profile, ProviderCircuit, RateBucket
from nudgekit.testing.http import Answer
from nudgekit.testing.solapi import FakeSolapi, error
from nudgekit.vocabulary import OutboxState
from nudgekit.workspace import Workspace

from .helpers import drain, open_shop, people, received_by, states, worker

AD = {"text": "겨울 세일 20% 할인 쿠폰이 도착했어요", "ad": True}
NOTICE = {"text": "주문하신 상품이 오늘 발송됩니다"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON_KST)


@pytest.fixture
def solapi() -> Iterator[FakeSolapi]:
    with FakeSolapi() as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: FakeClock, solapi: FakeSolapi) -> Iterator[Workspace]:
    ws = open_shop(tmp_path / "ws", state_url, clock, solapi,
                   **{"circuit_failures": 3, "circuit_seconds": 30.0})
    ws.settings.policy.caps = []
    yield ws
    ws.close()


def test_queueing_the_same_campaign_twice_adds_no_row_and_claims_no_second_slot(shop: Workspace) -> None:
    from nudgekit.config import CapSettings

    shop.settings.policy.caps = [CapSettings(limit=3, hours=24)]
    users = people(shop, 4)
    first = shop.queue("winter", "sms", users + ["nobody"], **AD)
    again = shop.queue("winter", "sms", users + ["nobody"], **AD)

    assert first.as_dict()["added"] == 5 and first.queued == 4 and first.skipped == {"no_person": 1}
    assert again.as_dict()["added"] == 0 and again.existing == 5
    with shop.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 5
        assert session.scalar(select(func.count()).select_from(CapClaim).where(CapClaim.state == "held")) == 4


def test_a_campaign_goes_out_in_one_batch_call_and_each_message_once(shop: Workspace, clock: FakeClock,
                                                                     solapi: FakeSolapi) -> None:
    users = people(shop, 30)
    shop.queue("winter", "sms", users, **AD)
    stats = drain(shop, clock)

    sends = [r for r in solapi.requests if r.path == "/messages/v4/send-many/detail"]
    assert len(sends) == 1 and len(sends[0].json()["messages"]) == 30
    assert set(received_by(solapi).values()) == {1} and len(received_by(solapi)) == 30
    assert stats.sent == 30 and states(shop) == {"sent": 30}
    status = shop.send_status("winter")
    assert status["counts"]["sent"] == 30 and status["remaining"] == 0
    assert status["cost_krw"] == 30 * 12.0  # the text fits an SMS
    assert all(m["text"].startswith("(광고)") for m in solapi.received)
    events = shop.events.query("SELECT count(*) AS n FROM events WHERE event = 'message_sent'")
    assert events[0]["n"] == 30


def test_server_errors_and_429s_are_retried_until_everything_is_delivered_once(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 12, consent=())
    shop.queue("shipping", "sms", users, **NOTICE)
    solapi.script.extend([error(503, "ServiceUnavailable", "점검 중"),
                          Answer(429, {"errorCode": "TooManyRequests", "errorMessage": "slow down"},
                                 {"Retry-After": "45"}),
                          error(500, "InternalError", "unknown")])
    started = clock.now
    stats = drain(shop, clock)

    assert states(shop) == {"sent": 12}
    assert set(received_by(solapi).values()) == {1} and len(received_by(solapi)) == 12
    assert stats.sent == 12 and stats.retried >= 12
    assert clock.now - started >= timedelta(seconds=45)  # the Retry-After was waited out
    with shop.sessions() as session:
        verdicts = [v for (v,) in session.execute(select(OutboxAttempt.verdict).order_by(OutboxAttempt.id))]
        assert verdicts[:12] == ["retryable"] * 12  # the first call carried all twelve
        assert {"rate_limited", "uncertain"} <= set(verdicts) and verdicts.count("accepted") == 12
        limited = session.scalars(select(OutboxMessage).where(OutboxMessage.message_id.in_(
            select(OutboxAttempt.message_id).where(OutboxAttempt.verdict == "rate_limited")))).all()
        assert limited and all(r.attempts > r.failures for r in limited)  # a 429 is no fault


def test_an_advertisement_that_may_have_gone_out_is_not_sent_again_but_a_notice_is(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 2)
    shop.queue("sale", "sms", users[:1], **AD)
    shop.queue("order", "sms", users[1:], **NOTICE)
    solapi.script.append(error(502, "BadGateway", "upstream"))
    drain(shop, clock)

    rows = {r["campaign"]: r for r in shop.outbox_messages()}
    assert rows["sale"]["state"] == "in_doubt" and rows["sale"]["reason"] == "uncertain"
    assert rows["order"]["state"] == "sent" and rows["order"]["attempts"] == 2
    assert shop.send_status("sale")["in_doubt"] == {"uncertain": 1}


def test_a_provider_that_keeps_failing_is_paused_for_every_worker_and_resumes_by_itself(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 3, consent=())
    shop.queue("order", "sms", users, **NOTICE)
    solapi.script.extend([error(503, "ServiceUnavailable", "down")] * 3)
    w = worker(shop, clock)

    async def until_paused() -> None:
        for _ in range(10):
            await w.step()
            with shop.sessions() as session:
                breaker = session.get(ProviderCircuit, "solapi")
                if breaker is not None and breaker.open_until is not None:
                    return
                due = session.scalar(select(func.min(OutboxMessage.due_at)).where(
                    OutboxMessage.state == OutboxState.QUEUED.value))
            clock.now = max(clock.now, due)

    async def scenario() -> None:
        await until_paused()
        check_paused()
        clock.now = opened[0] - timedelta(seconds=1)
        await w.step()  # still paused: nothing is claimed for it, nothing is called
        await w.aclose()

    opened = []

    def check_paused() -> None:
        with shop.sessions() as session:
            breaker = session.get(ProviderCircuit, "solapi")
            assert breaker is not None and breaker.open_until is not None and breaker.trips == 1
            opened.append(breaker.open_until)
            waiting = session.scalars(select(OutboxMessage.due_at).where(OutboxMessage.state == "queued")).all()
            assert waiting and all(due >= opened[0] for due in waiting)  # waiting for it: due when it resumes

    asyncio.run(scenario())
    assert len(solapi.requests) == 3
    drain(shop, clock)
    assert states(shop) == {"sent": 3}
    with shop.sessions() as session:
        breaker = session.get(ProviderCircuit, "solapi")
        assert breaker is not None and breaker.open_until is None and breaker.failures == 0
    probe = solapi.requests[3].json()["messages"]
    assert len(probe) == 1  # one message tried the provider first


def test_a_kakao_message_to_someone_not_on_kakao_goes_as_its_fallback_sms_row(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 2, consent=("kakao", "sms"))
    with shop.sessions.begin() as session:
        session.execute(update(Profile).where(Profile.profile_id == users[0]).values(kakao_reachable=False))
    shop.queue("brand", "brand_message", users, text="이번 주 신상품을 만나보세요", fallback=True)
    drain(shop, clock)

    rows = {(r["user"], r["channel"]): r for r in shop.outbox_messages(limit=10)}
    kakao, sms = rows[(users[0], "brand_message")], rows[(users[0], "sms")]
    assert kakao["state"] == "failed" and kakao["reason"] == "fell_back"
    assert sms["state"] == "sent" and sms["fallback_of"] == kakao["message_id"]
    assert rows[(users[1], "brand_message")]["state"] == "sent"
    fallback = next(m for m in solapi.received if m["to"] == "01020000000")
    assert fallback["type"] in ("SMS", "LMS")
    assert fallback["text"].startswith("(광고)") and fallback["text"].count("(광고)") == 1  # labelled once
    assert "080-123-4567" in fallback["text"]


def test_pause_holds_a_campaign_resume_sends_it_and_cancel_stops_what_is_left(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 6)
    shop.queue("paused", "sms", users[:3], **AD)
    shop.queue("cancelled", "sms", users[3:], **AD)
    shop.control_send("paused", "pause")
    shop.control_send("cancelled", "cancel")
    drain(shop, clock)
    assert states(shop, "paused") == {"queued": 3} and states(shop, "cancelled") == {"cancelled": 3}
    assert shop.send_status("paused")["state"] == "paused"
    with shop.sessions() as session:  # the cancelled messages gave their frequency-cap slots back
        assert session.scalar(select(func.count()).select_from(CapClaim).where(
            CapClaim.message_id.in_(outbox.message_id_for(f"cancelled/-/{u}/1") for u in users[3:]),
            CapClaim.state != "released")) == 0
    shop.control_send("paused", "resume")
    drain(shop, clock)
    assert states(shop, "paused") == {"sent": 3} and len(received_by(solapi)) == 3
    with pytest.raises(Exception, match="cancelled"):
        shop.queue("cancelled", "sms", users, **AD)


def test_a_claimed_row_cancelled_before_hand_over_is_not_sent(shop: Workspace, clock: FakeClock,
                                                               solapi: FakeSolapi) -> None:
    users = people(shop, 2)
    shop.queue("flash", "sms", users, **AD)
    w = worker(shop, clock)
    token = "test#1"
    with shop.sessions.begin() as session:
        rows = outbox.claim(session, token, clock.now, 10, timedelta(minutes=5))
    ready = w._gate(token, rows)
    shop.control_send("flash", "cancel")
    items = [(r, e) for r in ready for e in r.envelopes]
    asyncio.run(w._send_group(token, "solapi", items))
    assert solapi.received == [] and states(shop) == {"cancelled": 2}


def test_a_worker_that_died_mid_send_leaves_advertising_in_doubt_and_resends_notices(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 4)
    shop.queue("sale", "sms", users[:2], **AD)
    shop.queue("order", "sms", users[2:3], **NOTICE)
    shop.queue("early", "sms", users[3:], **AD)
    with shop.sessions.begin() as session:  # a worker claimed them all, began handing three over, and died
        rows = outbox.claim(session, "dead#1", clock.now, 10, timedelta(minutes=5))
        handing = [r.message_id for r in rows if r.campaign != "early"]
        session.execute(update(OutboxMessage).where(OutboxMessage.message_id.in_(handing)).values(
            state="handing", provider="solapi", attempts=1))
    clock.advance(minutes=6)
    drain(shop, clock)

    rows = {r["campaign"]: r for r in shop.outbox_messages(limit=10) if r["campaign"] != "sale"}
    assert rows["order"]["state"] == "sent" and rows["order"]["reason"] is None
    assert rows["early"]["state"] == "sent"  # never handed over: simply sent
    assert states(shop, "sale") == {"in_doubt": 2}
    assert shop.send_status("sale")["in_doubt"] == {"worker_died": 2}
    assert len(received_by(solapi)) == 2


def test_a_campaign_speed_spreads_its_messages_over_time(shop: Workspace, clock: FakeClock,
                                                         solapi: FakeSolapi) -> None:
    users = people(shop, 10)
    shop.queue("slow", "sms", users, per_minute=120, **AD)  # two a second
    started = clock.now
    w = worker(shop, clock)

    async def go() -> None:
        while states(shop, "slow").get("sent", 0) < 10:
            if not await w.step():
                clock.advance(seconds=0.25)
        await w.aclose()

    asyncio.run(go())
    assert clock.now - started >= timedelta(seconds=4)
    with shop.sessions() as session:
        moments = sorted(at for (at,) in session.execute(select(OutboxAttempt.at)))
        assert session.get(RateBucket, "campaign:slow") is not None
    for k, at in enumerate(moments):  # a bucket of two a second: the k-th message waits (k + 1 - 2) / 2 s
        assert (at - started).total_seconds() >= (k + 1 - 2) / 2


def test_the_transactional_send_returns_the_first_result_for_a_repeated_key(
        shop: Workspace, clock: FakeClock, solapi: FakeSolapi) -> None:
    users = people(shop, 1, consent=())
    first = shop.send_message("sms", users[0], idempotency_key="order-77/shipped", **NOTICE)
    again = shop.send_message("sms", users[0], idempotency_key="order-77/shipped", **NOTICE)

    assert first["state"] == "sent" and first["replayed"] is False
    assert again["replayed"] is True and again["message_id"] == first["message_id"]
    assert len(solapi.received) == 1
    with pytest.raises(Exception, match="different message"):
        shop.send_message("sms", users[0], idempotency_key="order-77/shipped", text="다른 내용")


def test_messages_for_one_person_in_one_batch_count_against_each_other(shop: Workspace, clock: FakeClock,
                                                                       solapi: FakeSolapi) -> None:
    """The gate judges a batch at once: a message claimed earlier in the same batch fills the cap, and a
    higher-priority one later in the batch takes its slot (it is then skipped as bumped at hand-over)."""
    from nudgekit.config import CapSettings
    from nudgekit.delivery import plan
    from nudgekit.vocabulary import MessageChannel

    shop.settings.policy.caps = [CapSettings(limit=1, hours=24, channel="sms", purpose="advertising")]
    user = people(shop, 1)[0]
    profile_id = shop.resolve(user)

    def request(key: str, priority: int) -> tuple[plan.Request, str | None]:
        return plan.Request(key, MessageChannel.SMS, dict(AD), {"priority": priority}, campaign=key), profile_id

    first = plan.plan(shop, [request("low", 1), request("same", 1), request("high", 5)])
    assert (first.queued, dict(first.skipped)) == (2, {"capped": 1})
    drain(shop, clock)
    assert states(shop) == {"sent": 1, "skipped": 2}
    with shop.sessions() as session:
        rows = {r.campaign: (r.state, r.reason) for r in session.scalars(select(OutboxMessage))}
    assert rows == {"high": ("sent", None), "low": ("skipped", "bumped"), "same": ("skipped", "capped")}
    assert len(solapi.received) == 1


def test_a_worker_keeps_its_sqlite_page_cache_small(tmp_path: Path) -> None:
    """Each pooled SQLite connection caches up to 64 MiB by default (for large imports): a worker's memory
    would grow with the database. The worker caps it."""
    from nudgekit.delivery.worker import Worker

    with Workspace.init(tmp_path / "ws")[0] as ws:
        with ws.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -64 * 1024
        Worker(ws)
        with ws.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -8 * 1024
