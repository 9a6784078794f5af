"""App push: checked as FCM, APNs and the law would; sent through a real HTTP fake of FCM v1 whose OAuth2
token endpoint verifies the service account's signed JWT; a dead token is marked invalid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from nudgekit.channels.provider import Verdict
from nudgekit.channels.push.message import PushMessage, apns_payload, check, fcm_message
from nudgekit.config import PriceSettings
from nudgekit.testing.fcm import FakeFcm, fcm_error
from nudgekit.testing.http import Answer
from nudgekit.workspace import Workspace


def codes(**fields: object) -> list[str]:
    return [p.code for p in check(PushMessage(**fields), PriceSettings()).problems]


def test_an_advertising_push_starts_with_the_label_and_says_how_to_stop_them() -> None:
    assert codes(title="(광고) 겨울 세일", text="최대 30% 할인 · 수신거부: 마이 > 설정 > 알림", ad=True) == []
    assert codes(text="(광고) 세일! 알림 끄기는 설정에서", ad=True) == []
    assert codes(title="겨울 세일", text="수신거부: 설정", ad=True) == ["ad_label_missing"]
    assert codes(title="(광고) 겨울 세일", text="최대 30% 할인", ad=True) == ["optout_path_missing"]


def test_push_shape_checks() -> None:
    assert codes(title="주문 완료") == []
    assert codes(title=" ") == ["empty"]
    assert codes(silent=True) == []
    assert codes(silent=True, title="x") == ["silent_with_content"]
    assert codes(text="x", data={"google.c.a": "1", "from": "x", "order": "1"}) == ["reserved_data_key"] * 2
    assert codes(text="x", image="http://cdn.example/a.jpg") == ["bad_url"]
    assert codes(text="x", link="myapp://cart") == []
    assert codes(text="x", link="cart") == ["bad_url"]
    out = check(PushMessage(text="가" * 1400), PriceSettings())
    assert [p.code for p in out.problems] == ["too_long"] and out.sizes["payload"].value > 4096


def test_payloads_for_fcm_and_apns() -> None:
    message = PushMessage(title="장바구니", text="담아 둔 상품이 곧 품절돼요", image="https://cdn.example/a.jpg",
                          link="myapp://cart", data={"campaign": "c1"}, badge=3, android_channel="promo",
                          ios_category="CART")
    fcm = fcm_message(message, "tok")
    assert fcm["token"] == "tok" and fcm["notification"]["image"] == "https://cdn.example/a.jpg"
    assert fcm["data"] == {"campaign": "c1", "link": "myapp://cart"}
    assert fcm["android"]["notification"]["channel_id"] == "promo"
    assert fcm["apns"]["payload"]["aps"] == {"badge": 3, "category": "CART", "mutable-content": 1}
    apns = apns_payload(message)
    assert apns["aps"]["alert"] == {"title": "장바구니", "body": "담아 둔 상품이 곧 품절돼요"}
    assert apns["link"] == "myapp://cart" and apns["campaign"] == "c1"
    silent = fcm_message(PushMessage(silent=True), "tok")
    assert "notification" not in silent and silent["apns"]["headers"]["apns-push-type"] == "background"
    assert apns_payload(PushMessage(silent=True)) == {"aps": {"content-available": 1}}


def test_a_time_to_live_reaches_both_platforms_through_fcm() -> None:
    day = fcm_message(PushMessage(text="세일", ttl_seconds=86_400, collapse_key="sale"), "tok", 1_800_000_000.5)
    assert day["android"]["ttl"] == "86400s" and day["android"]["collapse_key"] == "sale"
    assert day["apns"]["headers"] == {"apns-expiration": "1800086400", "apns-collapse-id": "sale"}
    now_or_never = fcm_message(PushMessage(text="지금만", ttl_seconds=0), "tok", 1_800_000_000)
    assert now_or_never["apns"]["headers"]["apns-expiration"] == "0"
    assert "apns" not in fcm_message(PushMessage(text="보통"), "tok", 1_800_000_000)


@pytest.fixture
def fcm() -> Iterator[FakeFcm]:
    with FakeFcm() as server:
        yield server


@pytest.fixture
def ws(tmp_path: Path, fcm: FakeFcm) -> Iterator[Workspace]:
    fcm.service_account(tmp_path / "ws-key.json")
    workspace, _ = Workspace.init(tmp_path / "ws", providers={"push": "fcm"},
                                  fcm={"service_account_file": str(tmp_path / "ws-key.json"), "base_url": fcm.url})
    workspace.identify("u1", {"push_tokens": [{"token": "tok-alive", "platform": "android"},
                                              {"token": "tok-gone", "platform": "ios"}]})
    yield workspace
    workspace.close()


def test_a_push_reaches_fcm_with_a_verified_service_account(ws: Workspace, fcm: FakeFcm) -> None:
    result = ws.send_now("push", "tok-alive", profile_id="u1", title="주문 완료", text="곧 출발해요")
    assert result.outcome.verdict == Verdict.ACCEPTED
    assert result.outcome.provider_message_id == "projects/nudge-test/messages/1"
    assert fcm.sent == [{"token": "tok-alive", "notification": {"title": "주문 완료", "body": "곧 출발해요"},
                         "android": {"priority": "high"}}]
    assert fcm.tokens_issued == ["ya29.fake-1"]


def test_an_unregistered_token_is_marked_invalid_and_not_tried_again(ws: Workspace, fcm: FakeFcm) -> None:
    fcm.unregistered.add("tok-gone")
    first = ws.send_now("push", "tok-gone", profile_id="u1", silent=True)
    assert (first.outcome.verdict, first.outcome.code) == (Verdict.INVALID_RECIPIENT, "UNREGISTERED")
    assert first.note == "push token invalid"
    tokens = {t["token"]: t["status"] for t in ws.profile("u1")["push_tokens"]}
    assert tokens == {"tok-alive": "valid", "tok-gone": "invalid"}
    again = ws.send_now("push", "tok-gone", profile_id="u1", silent=True)
    assert again.outcome is None and "invalid" in again.note
    assert len([r for r in fcm.requests if r.path.endswith(":send")]) == 1


@pytest.mark.parametrize(("answer", "verdict", "retry_after"), [
    (fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", "QUOTA_EXCEEDED"), Verdict.RATE_LIMITED, 60.0),
    (Answer(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "q",
                            "details": [{"errorCode": "QUOTA_EXCEEDED"}]}}, {"Retry-After": "120"}),
     Verdict.RATE_LIMITED, 120.0),
    (fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"), Verdict.RETRYABLE, None),
    (fcm_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"), Verdict.RETRYABLE, None),
    (fcm_error(401, "UNAUTHENTICATED", "APNs auth key invalid", "THIRD_PARTY_AUTH_ERROR"), Verdict.PERMANENT, None),
    (fcm_error(400, "INVALID_ARGUMENT", "Invalid registration", "INVALID_ARGUMENT"), Verdict.PERMANENT, None),
    (fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), Verdict.INVALID_RECIPIENT, None),
    (Answer(502, b"<html>Bad Gateway</html>"), Verdict.RETRYABLE, None),
    (Answer(200, {"name": "projects/nudge-test/messages/9"}, delay=2.0), Verdict.UNCERTAIN, None),
])
def test_fcm_answers_are_classified(ws: Workspace, fcm: FakeFcm, answer: Answer, verdict: Verdict,
                                    retry_after: float | None) -> None:
    ws.settings.fcm.timeout_seconds = 1.0
    fcm.script.append(answer)
    outcome = ws.send_now("push", "tok-alive", text="안녕").outcome
    assert (outcome.verdict, outcome.retry_after) == (verdict, retry_after)


def test_an_expired_access_token_is_renewed_once(ws: Workspace, fcm: FakeFcm) -> None:
    assert ws.send_now("push", "tok-alive", text="1").outcome.sent
    fcm.revoked.add("ya29.fake-1")
    assert ws.send_now("push", "tok-alive", text="2").outcome.sent
    assert fcm.tokens_issued == ["ya29.fake-1", "ya29.fake-2"]


def test_a_service_account_google_refuses_is_permanent(ws: Workspace, fcm: FakeFcm, tmp_path: Path) -> None:
    fcm.service_account(tmp_path / "ws-key.json", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    outcome = ws.send_now("push", "tok-alive", text="x").outcome
    assert outcome.verdict == Verdict.PERMANENT and "invalid_grant" in outcome.detail


def test_a_missing_service_account_is_named(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", providers={"push": "fcm"})[0] as ws:
        with pytest.raises(ValueError, match="service_account_file"):
            ws.send_now("push", "tok", text="x")
    with Workspace.open(tmp_path / "ws", providers={"push": "fcm"}, fcm={"service_account_file": "nowhere.json"}) as ws:
        with pytest.raises(ValueError, match="cannot read the service account file"):
            ws.send_now("push", "tok", text="x")


def test_push_from_the_command_line(ws: Workspace, fcm: FakeFcm) -> None:
    from typer.testing import CliRunner

    from nudgekit.cli import app
    from nudgekit.config import write_section

    write_section(ws.settings.home, "providers", {"push": "fcm"})
    write_section(ws.settings.home, "fcm", {"service_account_file": str(ws.settings.fcm.service_account_file),
                                            "base_url": fcm.url})

    def nudge(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner(env={"NUDGE_HOME": str(ws.settings.home)}).invoke(app, list(args))

    checked = nudge("message", "check", "--channel", "push", "--title", "(광고) 세일", "--text", "30% 할인",
                    "--ad", "--image", "https://cdn.example/a.jpg", "--json")
    assert checked.exit_code == 1 and [p["code"] for p in json_of(checked)["problems"]] == ["optout_path_missing"]
    sent = nudge("message", "send", "--channel", "push", "--to", "tok-alive", "--title", "주문 완료",
                 "--link", "myapp://orders/1", "--data", '{"order": "1"}', "--image", "https://cdn.example/a.jpg")
    assert sent.exit_code == 0, sent.output
    assert fcm.sent[-1]["data"] == {"order": "1", "link": "myapp://orders/1"}
    assert fcm.sent[-1]["notification"]["image"] == "https://cdn.example/a.jpg"
    wrong = nudge("message", "check", "--channel", "push", "--text", "x", "--data", '{"n": 1}')
    assert wrong.exit_code == 2 and "--data" in wrong.output


def json_of(result):  # type: ignore[no-untyped-def]
    import json

    return json.loads(result.stdout)
