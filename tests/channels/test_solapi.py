"""Solapi: text messages, AlimTalk and Brand Message sent to a real HTTP fake that checks the HMAC signature
and answers as Solapi documents — registered and refused messages, status codes, rate limits, server errors,
slow and malformed answers — and the AlimTalk template registry synced from it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from nudgekit.channels.provider import Envelope, Verdict
from nudgekit.channels.sms.message import SmsMessage
from nudgekit.channels.solapi import SolapiProvider, authorization, classify, recipient
from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.testing.http import Answer
from nudgekit.testing.solapi import FakeSolapi, FakeTemplate, error
from nudgekit.vocabulary import MessageChannel
from nudgekit.workspace import Workspace

NOON_KST = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture
def solapi() -> Iterator[FakeSolapi]:
    with FakeSolapi() as server:
        server.clock = lambda: NOON_KST
        server.templates["KA01TP-ORDER"] = FakeTemplate("KA01TP-ORDER", "주문 접수",
                                                        "#{이름}님, 주문(#{주문번호})이 접수되었습니다.")
        yield server


def settings_for(solapi: FakeSolapi) -> dict[str, dict[str, object]]:
    return {"providers": {"sms": "solapi", "alimtalk": "solapi", "brand_message": "solapi"},
            "solapi": {"api_key": solapi.api_key, "api_secret": solapi.api_secret, "base_url": solapi.url,
                       "timeout_seconds": 2.0},
            "sender": {"name": "건강상점", "sms_numbers": ["0212345678", "0298765432"], "optout_080": "0801234567",
                       "kakao_sender_key": solapi.pf_id}}


@pytest.fixture
def ws(tmp_path: Path, solapi: FakeSolapi) -> Iterator[Workspace]:
    workspace, _ = Workspace.init(tmp_path / "ws", clock=lambda: NOON_KST)
    for section, values in settings_for(solapi).items():
        write_section(workspace.settings.home, section, values)
    workspace.close()
    workspace = Workspace.open(tmp_path / "ws", clock=lambda: NOON_KST)
    yield workspace
    workspace.close()


def sent_messages(solapi: FakeSolapi) -> list[dict]:
    return [m for r in solapi.requests if r.path == "/messages/v4/send-many/detail" for m in r.json()["messages"]]


def test_the_signature_is_hmac_sha256_of_date_and_salt() -> None:
    header = authorization("KEY", "secret", datetime(2019, 7, 1, 0, 41, 48, tzinfo=UTC), salt="jqsba2jxjnrjor")
    expected = hmac.new(b"secret", b"2019-07-01T00:41:48.000Zjqsba2jxjnrjor", hashlib.sha256).hexdigest()
    assert header == f"HMAC-SHA256 apiKey=KEY, date=2019-07-01T00:41:48.000Z, salt=jqsba2jxjnrjor, signature={expected}"
    assert recipient("+821012345678") == ("01012345678", "82")
    assert recipient("+12025550123") == ("2025550123", "1")


def test_sms_lms_and_mms_reach_solapi(ws: Workspace, solapi: FakeSolapi, tmp_path: Path) -> None:
    solapi.senders.add("0298765432")
    sms = ws.send_now("sms", "010-1234-5678", text="주문하신 상품이 출발했습니다")
    assert sms.outcome.verdict == Verdict.ACCEPTED and sms.outcome.provider_message_id.startswith("M4V")
    lms = ws.send_now("sms", "010-1234-5678", text="가" * 46, sender_number="02-9876-5432")
    assert lms.outcome.sent
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (400, 300), (10, 120, 200)).save(photo, "JPEG")
    mms = ws.send_now("sms", "010-1234-5678", text="새 상품", subject="신상품 안내", images=[photo])
    assert mms.outcome.sent
    first, second, third = sent_messages(solapi)
    assert {k: first[k] for k in ("to", "from", "type", "country", "autoTypeDetect")} == \
        {"to": "01012345678", "from": "0212345678", "type": "SMS", "country": "82", "autoTypeDetect": False}
    assert first["customFields"]["nudge_id"].startswith("test-")
    assert (second["type"], second["from"]) == ("LMS", "0298765432")
    assert (third["type"], third["subject"]) == ("MMS", "신상품 안내")
    assert solapi.files[third["imageId"]]["type"] == "MMS"
    assert [r.json()["type"] for r in solapi.requests if r.path == "/storage/v1/files"] == ["MMS"]


def test_mms_images_solapi_cannot_carry_are_refused_before_any_request(ws: Workspace, solapi: FakeSolapi,
                                                                       tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    Image.frombytes("RGB", (450, 450), random.Random(1).randbytes(450 * 450 * 3)).save(big, "JPEG", quality=95)
    assert 200_000 < big.stat().st_size <= 300_000
    outcome = ws.send_now("sms", "010-1234-5678", text="사진", images=[big]).outcome
    assert (outcome.verdict, outcome.code) == (Verdict.PERMANENT, "image_too_large") and "200 KB" in outcome.detail
    small = tmp_path / "s.jpg"
    Image.new("RGB", (100, 100)).save(small, "JPEG")
    two = ws.send_now("sms", "010-1234-5678", text="사진", images=[small, small]).outcome
    assert (two.verdict, two.code) == (Verdict.PERMANENT, "one_image")
    assert solapi.requests == []


def test_refusals_are_classified(ws: Workspace, solapi: FakeSolapi) -> None:
    solapi.senders = {"0298765432"}
    unregistered = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (unregistered.verdict, unregistered.code) == (Verdict.PERMANENT, "1062")
    assert unregistered.detail == "발신번호 미등록"
    solapi.senders = {"0212345678"}
    solapi.balance = 5
    poor = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (poor.verdict, poor.code) == (Verdict.PERMANENT, "1030")


@pytest.mark.parametrize(("answer", "verdict", "code", "retry_after"), [
    (Answer(429, {"errorCode": "TooManyRequests", "errorMessage": "slow down"}, {"Retry-After": "30"}),
     Verdict.RATE_LIMITED, "TooManyRequests", 30.0),
    (error(400, "ValidationError", '"messages" must be an array'), Verdict.PERMANENT, "ValidationError", None),
    (Answer(503, b"<html>Service Unavailable</html>"), Verdict.RETRYABLE, "503", None),
    (error(500, "InternalError", "unknown"), Verdict.UNCERTAIN, "InternalError", None),
    (Answer(200, b"<html>maintenance</html>"), Verdict.UNCERTAIN, "malformed", None),
    (Answer(200, {"groupInfo": {}, "failedMessageList": []}), Verdict.UNCERTAIN, None, None),
    (Answer(200, {"messageList": []}, delay=3.0), Verdict.UNCERTAIN, "timeout", None),
])
def test_whole_request_answers_are_classified(ws: Workspace, solapi: FakeSolapi, answer: Answer, verdict: Verdict,
                                              code: str | None, retry_after: float | None) -> None:
    solapi.script.append(answer)
    outcome = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (outcome.verdict, outcome.code, outcome.retry_after) == (verdict, code, retry_after)


def test_a_wrong_key_or_secret_is_refused_by_solapi(ws: Workspace, solapi: FakeSolapi) -> None:
    ws.settings.solapi.api_secret = "not-the-secret"
    bad_secret = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (bad_secret.verdict, bad_secret.code) == (Verdict.PERMANENT, "SignatureDoesNotMatch")
    ws.settings.solapi.api_key = "NCSWRONGKEY00001"
    bad_key = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (bad_key.verdict, bad_key.code) == (Verdict.PERMANENT, "InvalidAPIKey")
    solapi.clock = lambda: datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
    ws.settings.solapi.api_key, ws.settings.solapi.api_secret = solapi.api_key, solapi.api_secret
    skewed = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert skewed.code == "RequestTimeTooSkewed"


def test_one_batch_maps_every_answer_back_to_its_message(ws: Workspace, solapi: FakeSolapi) -> None:
    def envelope(i: int, text: str, sender: str | None = None) -> Envelope:
        message = SmsMessage(text=text, sender_number=sender)
        return Envelope(f"m-{i}", MessageChannel.SMS, "+821012345678", message, "SMS")

    provider = SolapiProvider(ws.settings.solapi, ws.settings.sender, clock=lambda: NOON_KST)

    async def go() -> list:
        try:
            return await provider.send([envelope(1, "하나"), envelope(2, "둘", "0311112222"), envelope(3, "셋")])
        finally:
            await provider.aclose()

    first, second, third = asyncio.run(go())
    assert first.sent and third.sent and (second.verdict, second.code) == (Verdict.PERMANENT, "1062")
    assert first.provider_message_id != third.provider_message_id
    assert len([r for r in solapi.requests if r.path.startswith("/messages")]) == 1


def test_alimtalk_goes_with_solapis_own_sms_fallback(ws: Workspace, solapi: FakeSolapi) -> None:
    ws.sync_kakao_templates()
    solapi.kakao_users = {"01011112222"}
    on_kakao = ws.send_now("alimtalk", "010-1111-2222", template="KA01TP-ORDER",
                           variables={"이름": "홍길동", "주문번호": "A-1"})
    off_kakao = ws.send_now("alimtalk", "010-3333-4444", template="KA01TP-ORDER",
                            variables={"이름": "김철수", "주문번호": "A-2"})
    assert on_kakao.outcome.sent and off_kakao.outcome.sent
    first, second = sent_messages(solapi)
    assert first["type"] == "ATA" and first["from"] == "0212345678"
    assert first["kakaoOptions"] == {"pfId": solapi.pf_id, "templateId": "KA01TP-ORDER", "disableSms": False,
                                     "variables": {"#{이름}": "홍길동", "#{주문번호}": "A-1"}}
    assert [(d["to"], d["type"], d["status"]) for d in solapi.delivered] == [
        ("01011112222", "ATA", "4000"), ("01033334444", "ATA", "3104"), ("01033334444", "SMS", "4000")]
    assert solapi.delivered[2]["text"] == "김철수님, 주문(A-2)이 접수되었습니다."
    none = ws.send_now("alimtalk", "010-3333-4444", template="KA01TP-ORDER", fallback=False,
                       variables={"이름": "김철수", "주문번호": "A-3"})
    assert none.outcome.sent and sent_messages(solapi)[-1]["kakaoOptions"]["disableSms"] is True
    assert "from" not in sent_messages(solapi)[-1] and solapi.delivered[-1]["status"] == "3104"


def test_an_alimtalk_solapi_refuses_is_permanent(ws: Workspace, solapi: FakeSolapi) -> None:
    ws.add_kakao_template("KA01TP-LOCAL", text="#{이름}님 안녕하세요", status="approved")
    outcome = ws.send_now("alimtalk", "010-1111-2222", template="KA01TP-LOCAL", variables={"이름": "홍길동"}).outcome
    assert (outcome.verdict, outcome.code) == (Verdict.PERMANENT, "1042")


def test_templates_are_synced_from_solapi_page_by_page(ws: Workspace, solapi: FakeSolapi) -> None:
    for i in range(150):
        solapi.templates[f"KA01TP-{i:03d}"] = FakeTemplate(f"KA01TP-{i:03d}", f"t{i}", f"#{{v}} {i}",
                                                           status="INSPECTING")
    solapi.templates["KA01TP-GONE"] = FakeTemplate("KA01TP-GONE", "deleted", "x", isDeleted=True)
    first = ws.sync_kakao_templates()
    assert len(first.added) == 151 and first.source == "solapi"
    solapi.templates["KA01TP-007"].status = "APPROVED"
    solapi.templates["KA01TP-008"].status = "REJECTED"
    solapi.templates["KA01TP-008"].comments = [{"isAdmin": True, "content": "광고성 문구가 포함되어 있습니다"}]
    del solapi.templates["KA01TP-009"]
    solapi.templates["KA01TP-ORDER"].buttons = [{"buttonType": "WL", "buttonName": "주문 보기",
                                                 "linkMo": "https://shop.example/o/#{주문번호}"}]
    second = ws.sync_kakao_templates()
    assert sorted(second.changed) == ["KA01TP-007: inspecting -> approved", "KA01TP-008: inspecting -> rejected",
                                      "KA01TP-ORDER: text or buttons changed"]
    assert second.removed == ["KA01TP-009"] and second.unchanged == 147
    rejected = [t for t in ws.kakao_templates("rejected")]
    assert [(t.code, t.comment) for t in rejected] == [("KA01TP-008", "광고성 문구가 포함되어 있습니다")]
    order = [t for t in ws.kakao_templates() if t.code == "KA01TP-ORDER"][0]
    assert order.buttons[0].url_mobile == "https://shop.example/o/#{주문번호}"
    pages = [r.path for r in solapi.requests if r.path.startswith("/kakao/v2/templates")]
    assert len(pages) == 4 and all(f"channelId={solapi.pf_id}" in p for p in pages)


def test_brand_messages_through_solapi(ws: Workspace, solapi: FakeSolapi, tmp_path: Path) -> None:
    solapi.friends = {"01011112222"}
    wide = tmp_path / "wide.png"
    Image.new("RGB", (800, 600), (250, 200, 0)).save(wide, "PNG")
    button = {"type": "WL", "name": "보러 가기", "url_mobile": "https://shop.example/sale"}
    result = ws.send_now("brand_message", "010-1111-2222", text="겨울 세일 30%", format="wide", image=wide,
                         image_link="https://shop.example/sale", buttons=[button])
    assert result.outcome.sent
    [message] = sent_messages(solapi)
    assert message["type"] == "BMS_FREE" and message["text"] == "겨울 세일 30%"
    bms = message["kakaoOptions"]["bms"]
    assert (bms["targeting"], bms["chatBubbleType"]) == ("I", "WIDE")
    assert solapi.files[bms["imageId"]]["type"] == "BMS_WIDE" and bms["imageLink"] == "https://shop.example/sale"
    assert bms["buttons"] == [{"linkType": "WL", "name": "보러 가기", "linkMobile": "https://shop.example/sale"}]
    assert message["kakaoOptions"]["disableSms"] is True
    stranger = ws.send_now("brand_message", "010-5555-6666", text="겨울 세일 30%")
    assert stranger.outcome.sent and solapi.delivered[-1]["status"] == "3102"


def test_a_brand_message_solapi_refuses_gives_the_day_back(ws: Workspace, solapi: FakeSolapi) -> None:
    solapi.pf_id = "KA01PF-SOMEONE-ELSE"
    refused = ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-1")
    assert (refused.outcome.verdict, refused.outcome.code) == (Verdict.PERMANENT, "1041")
    solapi.pf_id = ws.settings.sender.kakao_sender_key or ""
    assert ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-2").outcome.sent
    assert not ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-3").sent


def test_the_known_unreachable_get_the_fallback_through_solapi(ws: Workspace, solapi: FakeSolapi) -> None:
    from nudgekit.store.state import Profile

    ws.identify("u1", {"phone": "010-3333-4444"})
    with ws.sessions.begin() as session:
        session.get(Profile, "u1").kakao_reachable = False
    result = ws.send_now("brand_message", "010-3333-4444", profile_id="u1", text="겨울 세일 30%")
    assert result.sent and result.outcome is None and result.fallback.provider == "solapi"
    [message] = sent_messages(solapi)
    assert message["type"] == "SMS" and message["text"] == "(광고)건강상점\n겨울 세일 30%\n무료거부 080-123-4567"


def test_balance_and_sync_from_the_command_line(ws: Workspace, solapi: FakeSolapi) -> None:
    provider = SolapiProvider(ws.settings.solapi, ws.settings.sender, clock=lambda: NOON_KST)

    async def balance() -> dict:
        try:
            return await provider.balance()
        finally:
            await provider.aclose()

    solapi.balance, solapi.point = 12_345.0, 100.0
    assert asyncio.run(balance()) == {"balance": 12_345.0, "point": 100.0}
    home = ws.settings.home
    ws.close()
    solapi.clock = lambda: datetime.now(UTC)
    result = CliRunner().invoke(app, ["kakao", "templates", "sync", "--json", "--home", str(home)])
    assert result.exit_code == 0 and json.loads(result.stdout)["added"] == ["KA01TP-ORDER"]
    solapi.api_secret = "rotated"
    failed = CliRunner().invoke(app, ["kakao", "templates", "sync", "--home", str(home)])
    assert failed.exit_code == 2 and "SignatureDoesNotMatch" in failed.output


@pytest.mark.parametrize(("code", "channel", "verdict", "fallback"), [
    ("2000", MessageChannel.SMS, Verdict.ACCEPTED, False),
    ("4000", MessageChannel.ALIMTALK, Verdict.ACCEPTED, False),
    ("1024", MessageChannel.SMS, Verdict.RETRYABLE, False),
    ("3010", MessageChannel.SMS, Verdict.INVALID_RECIPIENT, False),
    ("3104", MessageChannel.ALIMTALK, Verdict.INVALID_RECIPIENT, True),
    ("3102", MessageChannel.BRAND_MESSAGE, Verdict.PERMANENT, True),
    ("3108", MessageChannel.ALIMTALK, Verdict.RETRYABLE, False),
    ("3059", MessageChannel.SMS, Verdict.PERMANENT, False),
    ("9999", MessageChannel.SMS, Verdict.PERMANENT, False),
])
def test_status_codes_are_classified(code: str, channel: MessageChannel, verdict: Verdict, fallback: bool) -> None:
    outcome = classify(code, "", channel)
    assert (outcome.verdict, outcome.fallback) == (verdict, fallback)


def test_a_brand_message_the_balance_cannot_pay_for_gives_the_day_back(ws: Workspace, solapi: FakeSolapi) -> None:
    ws.top_up(10)
    short = ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-1")
    assert not short.sent and "not enough message points" in short.note and sent_messages(solapi) == []
    ws.top_up(100)
    assert ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-2").sent
    assert ws.balance()["balance_krw"] == 85.0


def test_a_message_retried_after_a_certain_failure_pays_again(ws: Workspace, solapi: FakeSolapi) -> None:
    ws.top_up(100)
    solapi.script.append(error(503, "ServiceUnavailable", "busy"))
    first = ws.send_now("sms", "010-1234-5678", text="안녕", message_id="m-1")
    assert first.outcome.verdict == Verdict.RETRYABLE and ws.balance()["balance_krw"] == 100.0
    again = ws.send_now("sms", "010-1234-5678", text="안녕", message_id="m-1")
    assert again.sent and ws.balance()["balance_krw"] == 88.0 and ws.balance()["messages"] == 1


def test_a_message_id_that_went_out_is_not_sent_twice(ws: Workspace, solapi: FakeSolapi) -> None:
    assert ws.send_now("sms", "010-1234-5678", text="안녕", message_id="m-1").sent
    again = ws.send_now("sms", "010-1234-5678", text="안녕", message_id="m-1")
    assert not again.sent and again.outcome is None and "a message id is sent once" in again.note
    assert len(sent_messages(solapi)) == 1


def test_an_uncertain_brand_message_keeps_the_day_and_is_not_resent(ws: Workspace, solapi: FakeSolapi) -> None:
    solapi.script.append(error(500, "InternalError", "?"))
    assert ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-1").outcome.verdict == \
        Verdict.UNCERTAIN
    solapi.script.append(error(503, "ServiceUnavailable", "busy"))
    again = ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-1")
    assert again.outcome is None and "was uncertain" in again.note
    other = ws.send_now("brand_message", "010-1111-2222", text="다른 세일", message_id="b-2")
    assert not other.sent and "one a day" in other.note


def test_an_upload_answer_that_is_not_json_refunds_and_gives_the_day_back(ws: Workspace, solapi: FakeSolapi,
                                                                         tmp_path: Path) -> None:
    ws.top_up(100)
    picture = tmp_path / "a.png"
    Image.new("RGB", (800, 400)).save(picture, "PNG")
    solapi._upload = lambda request: Answer(200, b"<html>oops</html>")  # type: ignore[method-assign]
    failed = ws.send_now("brand_message", "010-1111-2222", text="세일", format="image", image=picture)
    assert failed.outcome.verdict == Verdict.RETRYABLE and ws.balance()["balance_krw"] == 100.0
    assert ws.send_now("brand_message", "010-1111-2222", text="세일", message_id="b-2").sent


def test_not_a_friend_falls_back_once_but_not_a_kakao_user_is_remembered(ws: Workspace, solapi: FakeSolapi) -> None:
    from nudgekit.store.state import Profile

    ws.identify("u1", {"phone": "010-3333-4444"})

    def refused(message_id: str, code: str) -> Answer:
        return Answer(200, {"messageList": [], "failedMessageList": [
            {"to": "01033334444", "statusCode": code, "statusMessage": "refused",
             "customFields": {"nudge_id": message_id}}]})

    solapi.script.append(refused("b-1", "3102"))
    result = ws.send_now("brand_message", "010-3333-4444", profile_id="u1", text="세일", message_id="b-1")
    assert result.outcome.code == "3102" and result.sent and result.fallback.outcome.sent
    assert sent_messages(solapi)[-1]["text"].startswith("(광고)건강상점")
    with ws.sessions() as session:
        assert session.get(Profile, "u1").kakao_reachable is not False
    ws.sync_kakao_templates()
    solapi.script.append(refused("a-1", "3104"))
    alim = ws.send_now("alimtalk", "010-3333-4444", profile_id="u1", template="KA01TP-ORDER", message_id="a-1",
                       variables={"이름": "김", "주문번호": "1"})
    assert alim.outcome.verdict == Verdict.INVALID_RECIPIENT and alim.fallback.outcome.sent
    with ws.sessions() as session:
        assert session.get(Profile, "u1").kakao_reachable is False
