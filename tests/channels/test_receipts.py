"""Delivery receipts: what Solapi and NHN Cloud report after accepting a message, asked for through their
documented result queries on real HTTP fakes — delivered, failed, Kakao's "not a KakaoTalk user" remembered,
a carrier's "no such number" suppressed, failed messages refunded, NHN's own fallback followed, and the
events measurement reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FakeClock
from sqlalchemy import select
from typer.testing import CliRunner

from nudgekit.channels.nhncloud import _kakao_receipt, _sms_receipt
from nudgekit.channels.provider import Delivery, Sent, Verdict
from nudgekit.channels.solapi import _receipt
from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.store.state import DirectSend, Profile
from nudgekit.testing.http import Answer
from nudgekit.testing.nhncloud import FakeNhnCloud
from nudgekit.testing.nhncloud import FakeTemplate as NhnTemplate
from nudgekit.testing.solapi import FakeSolapi, FakeTemplate, error
from nudgekit.vocabulary import MessageChannel
from nudgekit.workspace import Workspace

NOON_KST = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
ORDER = "#{이름}님, 주문(#{주문번호})이 접수되었습니다."
VALUES = {"이름": "민지", "주문번호": "A-1"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON_KST)


@pytest.fixture
def solapi(clock: FakeClock) -> Iterator[FakeSolapi]:
    with FakeSolapi() as server:
        server.clock = clock
        server.templates["ORDER"] = FakeTemplate("ORDER", "주문 접수", ORDER)
        yield server


@pytest.fixture
def nhn(clock: FakeClock) -> Iterator[FakeNhnCloud]:
    with FakeNhnCloud() as server:
        server.clock = clock
        server.templates["ORDER"] = NhnTemplate("ORDER", "주문 접수", ORDER)
        yield server


def open_ws(path: Path, clock: FakeClock, sections: dict[str, dict[str, object]], **overrides: str) -> Workspace:
    workspace, _ = Workspace.init(path, clock=clock, **overrides)
    workspace.close()
    for section, values in sections.items():
        write_section(path, section, values)
    workspace = Workspace.open(path, clock=clock, **overrides)
    workspace.add_kakao_template("ORDER", text=ORDER, status="approved")
    return workspace


@pytest.fixture
def sws(tmp_path: Path, solapi: FakeSolapi, clock: FakeClock) -> Iterator[Workspace]:
    workspace = open_ws(tmp_path / "s", clock, {
        "providers": {"sms": "solapi", "alimtalk": "solapi", "brand_message": "solapi"},
        "solapi": {"api_key": solapi.api_key, "api_secret": solapi.api_secret, "base_url": solapi.url,
                   "timeout_seconds": 2.0},
        "sender": {"name": "건강상점", "sms_numbers": ["0212345678"], "optout_080": "0801234567",
                   "kakao_sender_key": solapi.pf_id}})
    yield workspace
    workspace.close()


@pytest.fixture
def nws(tmp_path: Path, nhn: FakeNhnCloud, clock: FakeClock, state_url: str) -> Iterator[Workspace]:
    """On a SQLite file and on a real PostgreSQL."""
    workspace = open_ws(tmp_path / "n", clock, {
        "providers": {"sms": "nhncloud", "alimtalk": "nhncloud", "brand_message": "nhncloud"},
        "nhncloud": {"sms_app_key": nhn.sms_app_key, "sms_secret_key": nhn.sms_secret,
                     "kakao_app_key": nhn.kakao_app_key, "kakao_secret_key": nhn.kakao_secret,
                     "sms_base_url": nhn.url, "kakao_base_url": nhn.url, "timeout_seconds": 2.0},
        "sender": {"name": "건강상점", "sms_numbers": ["0212345678"], "optout_080": "0801234567",
                   "kakao_sender_key": nhn.sender_key}}, database_url=state_url)
    yield workspace
    workspace.close()


def row(ws: Workspace, message_id: str) -> DirectSend:
    with ws.sessions() as session:
        found = session.get(DirectSend, message_id)
        assert found is not None
        session.expunge(found)
        return found


def receipt_events(ws: Workspace, user_id: str) -> list[tuple[str, dict]]:
    profile = ws.profile(user_id, events=20)
    assert profile is not None
    return [(e["event"], json.loads(e["properties"])) for e in profile["recent_events"]
            if (e["event"] or "").startswith("message_")]


def test_solapi_receipts_close_messages_and_teach_profiles(sws: Workspace, solapi: FakeSolapi) -> None:
    sws.identify("u1", {"phone": "010-1111-2222"})
    sws.identify("u2", {"phone": "010-3333-4444"})
    sws.identify("u3", {"phone": "010-5555-6666"})
    sws.top_up(1000)
    solapi.kakao_users = {"01011112222", "01055556666"}
    solapi.carrier_results["01055556666"] = ("3010", "없는 번호")
    assert sws.send_now("alimtalk", "010-1111-2222", profile_id="u1", message_id="ok", template="ORDER",
                        variables=VALUES).outcome.sent
    assert sws.send_now("alimtalk", "010-3333-4444", profile_id="u2", message_id="not-kakao", template="ORDER",
                        variables=VALUES).outcome.sent
    assert sws.send_now("sms", "010-5555-6666", profile_id="u3", message_id="no-number",
                        text="주문이 출발했어요").outcome.sent
    spent = sws.balance()["balance_krw"]

    before = sws.check_receipts()  # nothing reported yet: all still on their way
    assert (before["checked"], before["closed"], before["waiting"]) == (3, [], 3)
    assert row(sws, "ok").delivery is None and row(sws, "ok").receipt_checked_at is not None

    solapi.settle()
    result = sws.check_receipts()
    closed = {c["message_id"]: c for c in result["closed"]}
    assert closed["ok"]["delivery"] == "delivered" and closed["ok"]["code"] == "4000"
    assert closed["not-kakao"]["delivery"] == "failed" and closed["not-kakao"]["code"] == "3104"
    assert closed["not-kakao"]["learned"] == "unreachable on Kakao"
    # Solapi replaced it with an SMS (and billed that); its list does not say how the SMS went
    assert closed["not-kakao"]["fallback"] == "unknown" and not closed["not-kakao"]["refunded"]
    assert closed["no-number"]["learned"] == "sms address suppressed (invalid_number)"
    assert closed["no-number"]["refunded"] and not closed["ok"]["refunded"]
    assert sws.balance()["balance_krw"] > spent
    with sws.sessions() as session:
        assert session.scalar(select(Profile.kakao_reachable).where(Profile.profile_id == "u2")) is False
        assert session.scalar(select(Profile.kakao_reachable).where(Profile.profile_id == "u1")) is not False
    # the next AlimTalk to u2 goes straight to the fallback; the dead number is not tried again
    again = sws.send_now("alimtalk", "010-3333-4444", profile_id="u2", template="ORDER", variables=VALUES)
    assert again.outcome is None and again.fallback is not None
    assert "suppressed" in sws.send_now("sms", "010-5555-6666", text="또 보내기").note

    assert receipt_events(sws, "u1") == [("message_delivered", {"message_id": "ok", "channel": "alimtalk",
                                                                  "provider": "solapi", "code": "4000"})]
    assert [e for e, _ in receipt_events(sws, "u3")] == ["message_failed"]
    # closed messages are not asked about again; only u2's fallback SMS, sent since, waits
    assert sws.check_receipts()["checked"] == 1
    assert len(receipt_events(sws, "u1")) == 1


def test_solapi_list_failures_lose_nothing(sws: Workspace, solapi: FakeSolapi) -> None:
    assert sws.send_now("sms", "010-1111-2222", message_id="m1", text="안녕").outcome.sent
    solapi.settle()
    solapi.list_script.append(error(500, "InternalError", "try later"))
    down = sws.check_receipts()
    assert down["closed"] == [] and "solapi" in down["unavailable"] and "500" in down["unavailable"]["solapi"]
    solapi.list_script.append(Answer(200, b"<html>gateway</html>"))
    assert "solapi" in sws.check_receipts()["unavailable"]
    assert row(sws, "m1").delivery is None
    assert [c["delivery"] for c in sws.check_receipts()["closed"]] == ["delivered"]


def test_solapi_pages_through_many_messages(sws: Workspace, solapi: FakeSolapi) -> None:
    for i in range(130):
        assert sws.send_now("sms", f"010-1000-{i:04d}", message_id=f"m{i}", text="안녕").outcome.sent
    solapi.settle()
    solapi.max_list_limit = 40  # the server gives fewer than asked: the rest come by nextKey
    result = sws.check_receipts()
    assert len(result["closed"]) == 130 and {c["delivery"] for c in result["closed"]} == {"delivered"}
    listed = [r for r in solapi.requests if r.path.startswith("/messages/v4/list")]
    assert len(listed) == 3 + 1  # 100 ids: 40 + 40 + 20; then 30 ids
    assert sum("startKey=" in r.path for r in listed) == 2


def test_solapi_unknown_codes_and_repeated_page_keys_are_not_failures(sws: Workspace, solapi: FakeSolapi) -> None:
    assert sws.send_now("sms", "010-1111-2222", message_id="m1", text="안녕").outcome.sent
    (entry,) = solapi.results.values()
    entry["statusCode"] = "TEST1000"
    assert sws.check_receipts()["closed"] == [] and row(sws, "m1").delivery is None
    solapi.list_script.append(Answer(200, {"messageList": {}, "nextKey": "K"}))
    solapi.list_script.append(Answer(200, {"messageList": {}, "nextKey": "K"}))
    assert "repeated" in sws.check_receipts()["unavailable"]["solapi"]


def test_solapi_receipt_codes() -> None:
    kakao = Sent("m", MessageChannel.ALIMTALK, "M4V1", fallback_requested=False)
    assert _receipt({"statusCode": "3000"}, kakao).delivery == Delivery.PENDING
    assert _receipt({"statusCode": "4000", "dateReceived": "2026-11-24T03:00:01.000Z"}, kakao).at == \
        datetime(2026, 11, 24, 3, 0, 1, tzinfo=UTC)
    gone = _receipt({"statusCode": "3104", "reason": "카카오톡 미사용자"}, kakao)
    assert (gone.delivery, gone.outcome.verdict, gone.outcome.fallback, gone.fallback) == (
        Delivery.FAILED, Verdict.INVALID_RECIPIENT, True, None)
    replaced = _receipt({"statusCode": "3104"}, Sent("m", MessageChannel.ALIMTALK, "M4V1", fallback_requested=True))
    assert replaced.fallback == Delivery.UNKNOWN
    later = _receipt({"statusCode": "3107"}, kakao)  # unused for 72 h / blocked: not remembered
    assert (later.outcome.verdict, later.outcome.fallback) == (Verdict.PERMANENT, True)
    sms = Sent("m", MessageChannel.SMS, "M4V1")
    assert _receipt({"statusCode": "3010"}, sms).outcome.verdict == Verdict.INVALID_RECIPIENT
    assert _receipt({"statusCode": None}, sms).delivery == Delivery.PENDING


def test_nhn_receipts_for_text_alimtalk_and_fallback(nws: Workspace, nhn: FakeNhnCloud) -> None:
    nws.identify("u1", {"phone": "010-1111-2222"})
    nws.identify("u2", {"phone": "010-3333-4444"})
    nhn.kakao_users = {"01011112222"}
    nhn.carrier_results["01099998888"] = ("3001", "가입자 없음")
    assert nws.send_now("alimtalk", "010-1111-2222", profile_id="u1", message_id="a-ok", template="ORDER",
                        variables=VALUES).outcome.sent
    assert nws.send_now("alimtalk", "010-3333-4444", profile_id="u2", message_id="a-fallback", template="ORDER",
                        variables=VALUES).outcome.sent
    assert nws.send_now("sms", "010-9999-8888", message_id="s-dead", text="주문이 출발했어요").outcome.sent
    assert nws.send_now("sms", "010-1111-2222", message_id="l-ok", text="가" * 60).outcome.sent  # an LMS
    assert nws.check_receipts()["closed"] == []
    nhn.settle()
    closed = {c["message_id"]: c for c in nws.check_receipts()["closed"]}
    assert set(closed) == {"a-ok", "a-fallback", "s-dead", "l-ok"}
    assert (closed["a-ok"]["delivery"], closed["a-ok"]["fallback"]) == ("delivered", None)
    fallback = closed["a-fallback"]
    assert (fallback["delivery"], fallback["code"], fallback["fallback"]) == ("failed", "3019", "delivered")
    assert fallback["learned"] == "unreachable on Kakao" and not fallback["refunded"]  # the SMS reached them
    assert (closed["s-dead"]["code"], closed["s-dead"]["learned"]) == ("3001", "sms address suppressed (invalid_number)")
    assert closed["l-ok"]["delivery"] == "delivered"
    queried = {r.path.split("?")[0].rsplit("/", 1)[-1] for r in nhn.requests if r.method == "GET"}
    assert queried == {"sms", "mms", "messages"}
    assert [e for e, p in receipt_events(nws, "u2")] == ["message_failed"]
    assert receipt_events(nws, "u2")[0][1]["fallback"] == "delivered"


def test_a_pending_fallback_is_followed_until_it_settles(nws: Workspace, nhn: FakeNhnCloud) -> None:
    nhn.kakao_users = set()
    assert nws.send_now("alimtalk", "010-3333-4444", message_id="m", template="ORDER", variables=VALUES).outcome.sent
    nhn.results["alimtalk"][0].update(messageStatus="FAILED", resultCode="3019", resendStatus="RSC03")
    first = nws.check_receipts()["closed"]
    assert [(c["delivery"], c["fallback"]) for c in first] == [("failed", "pending")]
    assert nws.check_receipts()["closed"] == []  # nothing new
    nhn.results["alimtalk"][0].update(resendStatus="RSC05")
    assert [(c["delivery"], c["fallback"]) for c in nws.check_receipts()["closed"]] == [("failed", "failed")]
    assert nws.check_receipts()["checked"] == 0


def test_no_word_for_four_days_closes_as_unknown(nws: Workspace, nhn: FakeNhnCloud, clock: FakeClock) -> None:
    assert nws.send_now("sms", "010-1111-2222", message_id="m", text="안녕").outcome.sent
    clock.advance(days=3, hours=23)
    assert nws.check_receipts()["closed"] == []
    clock.advance(hours=2)
    closed = nws.check_receipts()["closed"]
    assert [(c["delivery"], c["code"]) for c in closed] == [("unknown", "no_receipt")]
    assert row(nws, "m").verdict == "accepted"  # unknown is not failed: it is never resent


def test_an_uncertain_send_that_failed_may_go_again(nws: Workspace, nhn: FakeNhnCloud) -> None:
    assert nws.send_now("sms", "010-1111-2222", message_id="m", text="안녕").outcome.sent
    with nws.sessions.begin() as session:
        session.get(DirectSend, "m").verdict = "uncertain"
    refused = nws.send_now("sms", "010-1111-2222", message_id="m", text="안녕")
    assert refused.outcome is None and "sent once" in refused.note
    nhn.results["sms"][0].update(msgStatus="0", resultCode="2002", resultCodeName="전원 꺼짐")
    closed = nws.check_receipts()["closed"]
    assert [(c["delivery"], c["code"]) for c in closed] == [("failed", "2002")]
    assert row(nws, "m").verdict == "retryable"
    assert nws.send_now("sms", "010-1111-2222", message_id="m", text="안녕").outcome.sent


def test_nhn_receipt_codes() -> None:
    assert _sms_receipt({"msgStatus": "2"}).delivery == Delivery.PENDING
    assert _sms_receipt({"msgStatus": 3, "resultCode": "1000"}).delivery == Delivery.DELIVERED
    timeout = _sms_receipt({"msgStatus": "0", "resultCode": "2000"})
    assert (timeout.delivery, timeout.outcome.verdict) == (Delivery.UNKNOWN, Verdict.UNCERTAIN)
    assert _sms_receipt({"msgStatus": "0", "resultCode": "3006"}).outcome.verdict == Verdict.PERMANENT
    assert _sms_receipt({"msgStatus": "4"}).outcome.code == "cancelled"
    when = _sms_receipt({"msgStatus": "3", "resultCode": "1000", "resultDate": "2026-11-24 12:00:00.0"}).at
    assert when == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    blocked = _kakao_receipt({"messageStatus": "FAILED", "resultCode": "3020", "resendStatus": "RSC01"})
    assert (blocked.outcome.verdict, blocked.fallback) == (Verdict.INVALID_RECIPIENT, None)
    inactive = _kakao_receipt({"messageStatus": "FAILED", "resultCode": "3018", "resendStatusCode": "RSC04"})
    assert (inactive.outcome.verdict, inactive.fallback) == (Verdict.PERMANENT, Delivery.DELIVERED)
    assert _kakao_receipt({"messageStatus": "FAILED", "resultCode": "3005"}).delivery == Delivery.UNKNOWN
    assert _kakao_receipt({"messageStatus": None}).delivery == Delivery.PENDING
    assert _kakao_receipt({"messageStatus": "COMPLETED", "resultCode": "1000", "resendStatus": "RSC02"}).fallback is None


def test_nhn_unavailable_and_unconfigured(nws: Workspace, nhn: FakeNhnCloud) -> None:
    assert nws.send_now("sms", "010-1111-2222", message_id="m", text="안녕").outcome.sent
    assert nws.send_now("alimtalk", "010-1111-2222", message_id="a", template="ORDER", variables=VALUES).outcome.sent
    nhn.settle()
    nhn.sms_secret = "rotated"
    result = nws.check_receipts()  # the SMS request cannot be read; the AlimTalk one can
    assert [c["message_id"] for c in result["closed"]] == ["a"] and result["unavailable"] == {}
    assert row(nws, "m").delivery is None
    nhn.kakao_secret = "rotated"
    nhn.results["sms"][0]["msgStatus"] = "2"
    assert "-1001" in nws.check_receipts()["unavailable"]["nhncloud"]
    nhn.results["sms"][0]["msgStatus"] = "9"  # a status NHN does not document: still waiting
    nhn.sms_secret = "smsSecret01"
    assert nws.check_receipts()["closed"] == [] and row(nws, "m").delivery is None


def test_receipts_cli(sws: Workspace, solapi: FakeSolapi) -> None:
    home = sws.settings.home
    assert sws.send_now("sms", "010-1111-2222", message_id="m1", text="안녕").outcome.sent
    sws.close()
    solapi.settle()
    solapi.clock = lambda: datetime.now(UTC)  # the CLI signs with the real time
    runner = CliRunner()
    shown = runner.invoke(app, ["receipts", "check", "--home", str(home), "--json"])
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.output)
    assert answer["checked"] == 1 and answer["closed"][0]["delivery"] == "delivered"
    table = runner.invoke(app, ["receipts", "check", "--home", str(home)])
    assert table.exit_code == 0 and "nothing is waiting" in table.output
