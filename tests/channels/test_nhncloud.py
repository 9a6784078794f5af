"""NHN Cloud: text messages (and the advertising endpoints), AlimTalk with its idempotency key and NHN's own
fallback, Brand Message, and the template registry, against a real HTTP fake that answers as NHN documents
(HTTP 200 with header.isSuccessful, negative result codes, per-recipient results)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from nudgekit.channels.kakao.alimtalk import AlimtalkMessage
from nudgekit.channels.nhncloud import NhnCloudProvider, classify, recipient_number
from nudgekit.channels.provider import Envelope, Verdict
from nudgekit.channels.sms.message import SmsMessage
from nudgekit.config import write_section
from nudgekit.testing.http import Answer
from nudgekit.testing.nhncloud import FakeNhnCloud, FakeTemplate
from nudgekit.vocabulary import MessageChannel
from nudgekit.workspace import Workspace

NOON_KST = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture
def nhn() -> Iterator[FakeNhnCloud]:
    with FakeNhnCloud() as server:
        server.clock = lambda: NOON_KST
        server.templates["ORDER_OK"] = FakeTemplate("ORDER_OK", "주문 접수",
                                                    "#{이름}님, 주문(#{주문번호})이 접수되었습니다.")
        yield server


@pytest.fixture
def ws(tmp_path: Path, nhn: FakeNhnCloud) -> Iterator[Workspace]:
    workspace, _ = Workspace.init(tmp_path / "ws", clock=lambda: NOON_KST)
    home = workspace.settings.home
    workspace.close()
    write_section(home, "providers", {"sms": "nhncloud", "alimtalk": "nhncloud", "brand_message": "nhncloud"})
    write_section(home, "nhncloud", {"sms_app_key": nhn.sms_app_key, "sms_secret_key": nhn.sms_secret,
                                     "kakao_app_key": nhn.kakao_app_key, "kakao_secret_key": nhn.kakao_secret,
                                     "sms_base_url": nhn.url, "kakao_base_url": nhn.url, "timeout_seconds": 2.0})
    write_section(home, "sender", {"name": "건강상점", "sms_numbers": ["0212345678"], "optout_080": "0801234567",
                                   "kakao_sender_key": nhn.sender_key})
    workspace = Workspace.open(home, clock=lambda: NOON_KST)
    yield workspace
    workspace.close()


def bodies(nhn: FakeNhnCloud, part: str) -> list[dict]:
    return [r["body"] for r in nhn.received if part in r["path"]]


def test_text_messages_go_to_the_right_endpoint(ws: Workspace, nhn: FakeNhnCloud, tmp_path: Path) -> None:
    assert ws.send_now("sms", "010-1234-5678", text="주문이 출발했어요").outcome.sent
    assert ws.send_now("sms", "010-1234-5678", text="가" * 46).outcome.sent
    ad = ws.send_now("sms", "010-1234-5678", ad=True, text="(광고)건강상점 세일\n무료거부 080-123-4567")
    assert ad.outcome.sent and ad.outcome.provider_message_id.endswith(":1")
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (300, 200), (0, 90, 200)).save(photo, "JPEG")
    assert ws.send_now("sms", "010-1234-5678", text="사진", subject="신상품", images=[photo]).outcome.sent
    paths = [r["path"].rsplit("/", 1)[-1] for r in nhn.received]
    assert paths == ["sms", "mms", "ad-sms", "mms"]
    sms, lms, _, mms = (r["body"] for r in nhn.received)
    assert sms["sendNo"] == "0212345678" and sms["recipientList"][0]["recipientNo"] == "01012345678"
    assert lms["title"] == "가" * 20  # an LMS without a subject gets its first line, cut to 40 bytes
    assert mms["title"] == "신상품" and list(nhn.files) == mms["attachFileIdList"]


def test_nhn_refusals_are_classified(ws: Workspace, nhn: FakeNhnCloud) -> None:
    nhn.senders = set()
    outcome = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (outcome.verdict, outcome.code, outcome.detail) == (Verdict.PERMANENT, "-2312", "Not regist sendno.")
    nhn.senders = {"0212345678"}
    nhn.opted_out = {"01012345678"}
    optout = ws.send_now("sms", "010-1234-5678", ad=True, text="(광고)세일\n무료거부 080-123-4567").outcome
    assert (optout.verdict, optout.code) == (Verdict.PERMANENT, "-6001")
    nhn.optout_080 = set()
    unjoined = ws.send_now("sms", "010-9999-8888", ad=True, text="(광고)세일\n무료거부 080-123-4567").outcome
    assert unjoined.code == "-6004"
    ws.settings.nhncloud.sms_secret_key = "wrong"
    assert ws.send_now("sms", "010-1234-5678", text="안녕").outcome.code == "-1001"


@pytest.mark.parametrize(("answer", "verdict", "code"), [
    (Answer(200, {"header": {"isSuccessful": False, "resultCode": -9999, "resultMessage": "system error"}}),
     Verdict.UNCERTAIN, "-9999"),
    (Answer(200, {"header": {"isSuccessful": False, "resultCode": -2021, "resultMessage": "queue"}}),
     Verdict.RETRYABLE, "-2021"),
    (Answer(429, b"Too Many Requests", {"Retry-After": "5"}), Verdict.RATE_LIMITED, "429"),
    (Answer(503, b"unavailable"), Verdict.RETRYABLE, "503"),
    (Answer(502, b"bad gateway"), Verdict.UNCERTAIN, "502"),
    (Answer(200, b"<html>"), Verdict.UNCERTAIN, "malformed"),
    (Answer(200, {"header": {"isSuccessful": True, "resultCode": 0}, "body": {"data": {"sendResultList": []}}}),
     Verdict.UNCERTAIN, None),
    (Answer(200, {"header": {"isSuccessful": True, "resultCode": 0}}, delay=3.0), Verdict.UNCERTAIN, "timeout"),
])
def test_whole_request_answers_are_classified(ws: Workspace, nhn: FakeNhnCloud, answer: Answer, verdict: Verdict,
                                              code: str | None) -> None:
    nhn.script.append(answer)
    outcome = ws.send_now("sms", "010-1234-5678", text="안녕").outcome
    assert (outcome.verdict, outcome.code) == (verdict, code)


def test_alimtalk_with_nhns_own_fallback(ws: Workspace, nhn: FakeNhnCloud) -> None:
    ws.sync_kakao_templates()
    nhn.kakao_users = {"01011112222"}
    for number in ("010-1111-2222", "010-3333-4444"):
        result = ws.send_now("alimtalk", number, template="ORDER_OK", variables={"이름": "홍길동", "주문번호": "A-1"})
        assert result.outcome.sent
    first, second = bodies(nhn, "/alimtalk/")
    assert (first["senderKey"], first["templateCode"]) == (nhn.sender_key, "ORDER_OK")
    recipient = second["recipientList"][0]
    assert recipient["templateParameter"] == {"이름": "홍길동", "주문번호": "A-1"}
    assert recipient["resendParameter"] == {"isResend": True, "resendType": "SMS", "resendSendNo": "0212345678",
                                            "resendContent": "홍길동님, 주문(A-1)이 접수되었습니다."}
    assert [(d["to"], d["type"], d["status"]) for d in nhn.delivered] == [
        ("01011112222", "ALIMTALK", "1000"), ("01033334444", "ALIMTALK", "3019"), ("01033334444", "SMS", "1000")]
    assert all(r["idempotency_key"] for r in nhn.received)


def test_the_same_alimtalk_batch_twice_is_refused_by_the_idempotency_key(ws: Workspace, nhn: FakeNhnCloud) -> None:
    ws.sync_kakao_templates()
    message = AlimtalkMessage(template="ORDER_OK", variables={"이름": "홍길동", "주문번호": "A-1"}, fallback=False)
    envelope = Envelope("m-1", MessageChannel.ALIMTALK, "+821011112222", message)

    async def send() -> list:
        provider = NhnCloudProvider(ws.settings.nhncloud, ws.settings.sender, clock=lambda: NOON_KST)
        try:
            return await provider.send([envelope])
        finally:
            await provider.aclose()

    [first] = asyncio.run(send())
    [again] = asyncio.run(send())
    assert first.sent and (again.verdict, again.code) == (Verdict.UNCERTAIN, "-1005")
    assert len([d for d in nhn.delivered if d["type"] == "ALIMTALK"]) == 1


def test_messages_with_the_same_content_share_one_request(ws: Workspace, nhn: FakeNhnCloud) -> None:
    envelopes = [Envelope(f"m-{i}", MessageChannel.SMS, number, SmsMessage(text=text), "SMS") for i, (number, text) in
                 enumerate([("+821011112222", "같은 글"), ("+8212", "같은 글"), ("+821033334444", "다른 글"),
                            ("+821055556666", "같은 글")])]

    async def send() -> list:
        provider = NhnCloudProvider(ws.settings.nhncloud, ws.settings.sender, clock=lambda: NOON_KST)
        try:
            return await provider.send(envelopes)
        finally:
            await provider.aclose()

    outcomes = asyncio.run(send())
    assert [o.verdict for o in outcomes] == [Verdict.ACCEPTED, Verdict.INVALID_RECIPIENT, Verdict.ACCEPTED,
                                             Verdict.ACCEPTED]
    assert [len(b["recipientList"]) for b in bodies(nhn, "/sender/sms")] == [3, 1]


def test_brand_messages_through_nhn(ws: Workspace, nhn: FakeNhnCloud, tmp_path: Path) -> None:
    nhn.friends = {"01011112222"}
    picture = tmp_path / "a.png"
    Image.new("RGB", (800, 400), (250, 200, 0)).save(picture, "PNG")
    button = {"type": "WL", "name": "보러 가기", "url_mobile": "https://shop.example/sale"}
    assert ws.send_now("brand_message", "010-1111-2222", text="겨울 세일", format="image", image=picture,
                       buttons=[button]).outcome.sent
    assert ws.send_now("brand_message", "010-3333-4444", text="겨울 세일").outcome.sent
    first, second = bodies(nhn, "/brand-message/")
    assert first["chatBubbleType"] == "IMAGE" and nhn.images[first["image"]["imageUrl"]]["type"] == "IMAGE"
    assert first["buttons"] == [{"ordering": 1, "type": "WL", "name": "보러 가기", "linkMo": "https://shop.example/sale"}]
    resend = second["recipientList"][0]["resendParameter"]
    assert resend["resendUnsubscribeNo"] == "0801234567" and resend["resendContent"].startswith("(광고)건강상점")
    assert [(d["to"], d["type"], d["status"]) for d in nhn.delivered] == [
        ("01011112222", "BRAND", "1000"), ("01033334444", "BRAND", "3018"), ("01033334444", "SMS", "1000")]


def test_m_targeting_nhn_has_not_enabled_is_permanent(ws: Workspace, nhn: FakeNhnCloud) -> None:
    ws.set_sender(kakao_targeting=["I", "M"])
    outcome = ws.send_now("brand_message", "010-1111-2222", text="세일", targeting="M", message_id="b-1").outcome
    assert (outcome.verdict, outcome.code) == (Verdict.PERMANENT, "-4029") and nhn.delivered == []
    nhn.targeting_allowed = {"I", "M"}
    assert ws.send_now("brand_message", "010-1111-2222", text="세일", targeting="M", message_id="b-2").outcome.sent
    assert bodies(nhn, "/brand-message/")[-1]["unsubscribeNo"] == "080-123-4567" and len(nhn.delivered) == 1


def test_templates_are_synced_from_nhn(ws: Workspace, nhn: FakeNhnCloud) -> None:
    for i in range(1500):
        nhn.templates[f"T{i:04d}"] = FakeTemplate(f"T{i:04d}", f"t{i}", "안녕하세요 #{이름}님", templateStatus="TSC02")
    nhn.templates["T0001"].templateStatus = "TSC04"
    nhn.templates["T0001"].comments = [{"content": "변수 사용이 잘못되었습니다", "status": "REJ"}]
    nhn.templates["ORDER_OK"].buttons = [{"ordering": 2, "type": "DS", "name": "배송 조회"},
                                         {"ordering": 1, "type": "WL", "name": "주문 보기", "linkMo": "https://s.example"}]
    report = ws.sync_kakao_templates()
    assert len(report.added) == 1501 and report.source == "nhncloud"
    rejected = ws.kakao_templates("rejected")
    assert [(t.code, t.comment) for t in rejected] == [("T0001", "변수 사용이 잘못되었습니다")]
    order = [t for t in ws.kakao_templates("approved")][0]
    assert [b.name for b in order.buttons] == ["주문 보기", "배송 조회"]


def test_codes_and_numbers() -> None:
    assert classify(0, "SUCCESS").verdict == Verdict.ACCEPTED
    assert classify(-2019, "").verdict == Verdict.INVALID_RECIPIENT
    assert classify(-7000, "").verdict == Verdict.RETRYABLE
    assert classify(-3010, "").verdict == Verdict.PERMANENT
    assert recipient_number("+821012345678") == {"recipientNo": "01012345678"}


def test_an_mms_image_is_named_as_the_jpeg_it_is(ws: Workspace, nhn: FakeNhnCloud, tmp_path: Path) -> None:
    photo = tmp_path / "banner"
    Image.new("RGB", (300, 200)).save(photo, "JPEG")
    assert ws.send_now("sms", "010-1234-5678", text="사진", images=[photo]).outcome.sent
    assert [f["fileName"] for f in nhn.files.values()] == ["banner.jpg"]
