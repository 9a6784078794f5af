"""In-app messages and content cards: checked, delivered into each person's inbox, served to the app over
real HTTP with the write key, and what the app reports comes back as state, consent and track events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock, LiveServer, wait_for
from typer.testing import CliRunner

from nudgekit.channels.inapp.inbox import user_token
from nudgekit.channels.inapp.message import CardMessage, InappMessage, check_card, check_inapp, sanitise
from nudgekit.channels.inapp.message import served as served_to_app
from nudgekit.cli import app
from nudgekit.config import PriceSettings
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

CONSENT_BUTTON = {"label": "혜택 알림 받기", "action": "consent", "consent_channels": ["push", "sms"]}


def inapp_codes(**fields: Any) -> list[str]:
    return [p.code for p in check_inapp(InappMessage(**fields), PriceSettings()).problems]


def card_codes(**fields: Any) -> list[str]:
    return [p.code for p in check_card(CardMessage(**fields), PriceSettings()).problems]


def test_inapp_shape_checks() -> None:
    assert inapp_codes(title="겨울 세일", text="오늘만 30%", image="https://cdn.example/a.jpg",
                       buttons=[{"label": "보러 가기", "url": "myapp://sale"}, {"label": "닫기", "action": "dismiss"}]) == []
    assert inapp_codes(title=" ") == ["empty"]
    assert inapp_codes(text="x" * 1001) == ["too_long"]
    assert inapp_codes(layout="banner", text="x" * 201) == ["too_long"]
    assert inapp_codes(layout="banner", text="x", buttons=[{"label": "a", "url": "https://a.example"}]) == [
        "banner_buttons"]
    assert inapp_codes(text="x", buttons=[{"label": str(i), "action": "dismiss"} for i in range(3)]) == ["too_many"]
    assert inapp_codes(text="x", buttons=[{"label": "go"}]) == ["missing"]
    assert inapp_codes(text="x", buttons=[{"label": "go", "url": "javascript:alert(1)"}]) == ["bad_url"]
    assert inapp_codes(text="x", buttons=[{"label": "x", "action": "review", "url": "https://a.example"}]) == [
        "not_a_link_button"]
    assert inapp_codes(text="x", buttons=[{**CONSENT_BUTTON, "consent_channels": []}]) == ["missing"]
    assert inapp_codes(text="x", image="http://cdn.example/a.jpg", link="cart") == ["bad_url", "bad_url"]
    assert inapp_codes(text="x", ttl_seconds=31 * 86400) == ["too_long"]
    assert inapp_codes(layout="html") == ["empty"]
    assert inapp_codes(layout="html", html="<p>hi</p>", title="t") == ["not_in_html_layout"]
    assert inapp_codes(text="x", html="<p>hi</p>") == ["html_needs_layout"]
    assert inapp_codes(layout="html", html="<p>" + "가" * 40_000 + "</p>") == ["too_long"]
    with pytest.raises(ValueError):
        InappMessage(text="x", buttons=[{"label": "x", "action": "call"}])


def test_card_checks() -> None:
    assert card_codes(title="쿠폰 도착", text="5,000원 할인", link="myapp://coupons", pinned=True) == []
    assert card_codes(title="") == ["empty"]
    assert card_codes(title="t", text="x" * 501) == ["too_long"]
    assert card_codes(title="t", image="https://cdn.example/a.jpg", link="data:text/html,hi") == ["bad_url"]


def test_custom_html_is_sanitised_and_what_was_removed_is_named() -> None:
    markup = ('<div id="nudge" style="color:#333;position:fixed;opacity:0" onclick="steal()"><h2>혜택</h2>'
              '<script>alert(1)</script><img src="https://cdn.example/a.jpg" onerror="x()">'
              '<img src="http://track.example/p.gif"><img srcset="javascript:alert(1) 1x, https://cdn.example/b.png 2x">'
              '<p style="background:url(https://track.example/t.gif);color:red">x</p>'
              '<a href="javascript:alert(1)">x</a><a href="JAVA&#x09;SCRIPT:alert(1)">y</a>'
              '<iframe src="https://evil.example"></iframe><svg><script>alert(1)</script></svg>'
              '<button data-nudge-action="consent" data-nudge-channels="push, sms">혜택 알림 <b>받기</b></button>'
              '<a data-nudge-action="link" data-nudge-url="myapp://cart">장바구니</a>'
              '<a data-nudge-action="dismiss">닫기</a></div>')
    out = check_inapp(InappMessage(layout="html", html=markup), PriceSettings())
    assert out.ok, out.problems
    clean = out.rendered["html"]
    assert clean == sanitise(markup)
    for gone in ("script", "onclick", "onerror", "javascript", "JAVA", "iframe", "position", "opacity", "track.example",
                 "url(", 'id="nudge"', "svg"):
        assert gone not in clean, gone
    assert 'style="color:#333"' in clean and 'data-nudge-url="myapp://cart"' in clean
    assert 'data-nudge-action="consent"' in clean and '<img src="https://cdn.example/a.jpg">' in clean
    [warning] = out.warnings
    assert warning.code == "html_sanitised"
    for named in ("<script>", "<iframe>", "div[onclick]", "img[onerror]", "a[href=javascript]", "div[style:position]",
                  "div[id]", "img[src=http]"):
        assert named in warning.en, named
    served_body = served_to_app(InappMessage(layout="html", html=markup))
    assert served_body["buttons"] == [
        {"label": "혜택 알림 받기", "action": "consent", "consent_channels": ["push", "sms"]},
        {"label": "장바구니", "action": "link", "url": "myapp://cart"}, {"label": "닫기", "action": "dismiss"}]


def test_html_buttons_that_cannot_work_are_refused() -> None:
    assert inapp_codes(layout="html", html='<a data-nudge-action="link" data-nudge-url="javascript:x()">a</a>') == [
        "missing"]
    assert inapp_codes(layout="html", html='<a data-nudge-action="consent" data-nudge-channels="fax">a</a>') == [
        "unknown_channel"]
    assert inapp_codes(text="x", link="intent://scan#Intent;scheme=zxing;end") == ["bad_url"]


# -- the inbox through the Python API (SQLite and PostgreSQL) ------------------------------------------------


def test_an_inapp_message_is_served_until_shown_and_the_report_becomes_an_event(ws: Workspace) -> None:
    ws.identify("u1", {"name": "민지"})
    fields = {"title": "첫 구매 10% 쿠폰", "text": "오늘 자정까지",
              "buttons": [{"label": "쿠폰 받기", "url": "myapp://coupons"}, {"label": "닫기", "action": "dismiss"}]}
    sent = ws.send_now("inapp", "u1", message_id="iam-1", **fields)
    assert sent.sent and sent.outcome.detail == "in the inbox"
    assert ws.send_now("inapp", "u1", message_id="iam-1", **fields).outcome.detail == "already in the inbox"
    [message] = ws.inbox("inapp", user_id="u1")
    assert message["id"] == "iam-1" and message["layout"] == "modal"
    assert message["buttons"] == [{"label": "쿠폰 받기", "action": "link", "url": "myapp://coupons"},
                                  {"label": "닫기", "action": "dismiss"}]
    assert ws.inbox("inapp", user_id="someone-else") == []
    shown = ws.report_inbox("iam-1", "impression", user_id="u1")
    assert shown["first"] is True
    assert ws.inbox("inapp", user_id="u1") == []
    clicked = ws.report_inbox("iam-1", "click", user_id="u1", button=1)
    assert clicked["action"] == {"action": "link", "url": "myapp://coupons"}
    again = ws.report_inbox("iam-1", "click", user_id="u1", button=1)
    assert again["first"] is False
    events = [e for e in ws.profile("u1", events=20)["recent_events"] if e["event"]]
    assert sorted(e["event"] for e in events) == ["In-App Message Clicked", "In-App Message Shown"]
    click = next(e for e in events if e["event"] == "In-App Message Clicked")
    assert json.loads(click["properties"]) == {"message_id": "iam-1", "channel": "inapp", "ad": False, "button": 1,
                                   "button_label": "쿠폰 받기", "action": "link", "url": "myapp://coupons"}


def test_a_consent_button_records_advertising_consent_from_in_app(ws: Workspace, clock: FakeClock) -> None:
    ws.identify("u1", {"name": "민지"})
    ws.send_now("inapp", "u1", message_id="iam-consent", title="혜택 알림을 받아 보세요",
                buttons=[CONSENT_BUTTON, {"label": "다음에", "action": "dismiss"}])
    answer = ws.report_inbox("iam-consent", "click", user_id="u1", button=1)
    assert answer["action"] == {"action": "consent", "consent_channels": ["push", "sms"]}
    assert {(c["channel"], c["granted"], c["source"]) for c in answer["consents"]} == {
        ("push", True, "in_app"), ("sms", True, "in_app")}
    ws.report_inbox("iam-consent", "click", user_id="u1", button=1)
    history = ws.profile("u1")["consent_history"]
    assert len(history) == 2
    assert all(r["evidence"] == 'in-app message iam-consent, button 1 "혜택 알림 받기"' for r in history)
    assert all(r["at"] == clock.now.isoformat() for r in history)


def test_cards_stay_in_the_feed_pinned_first_until_dismissed_or_expired(ws: Workspace, clock: FakeClock) -> None:
    ws.identify("u1", {"name": "민지"})
    ws.send_now("card", "u1", message_id="card-old", title="이용 가이드")
    clock.advance(minutes=1)
    ws.send_now("card", "u1", message_id="card-pinned", title="VIP 쿠폰", pinned=True, ttl_seconds=3600)
    clock.advance(minutes=1)
    ws.send_now("card", "u1", message_id="card-new", title="신상품", link="https://shop.example/new")
    assert [c["id"] for c in ws.inbox("card", user_id="u1")] == ["card-pinned", "card-new", "card-old"]
    ws.report_inbox("card-new", "impression", user_id="u1")
    ws.report_inbox("card-new", "click", user_id="u1")
    new = next(c for c in ws.inbox("card", user_id="u1") if c["id"] == "card-new")
    assert (new["viewed"], new["clicked"]) == (True, True)
    ws.report_inbox("card-old", "dismiss", user_id="u1")
    assert [c["id"] for c in ws.inbox("card", user_id="u1")] == ["card-pinned", "card-new"]
    clock.advance(hours=1)
    assert [c["id"] for c in ws.inbox("card", user_id="u1")] == ["card-new"]
    clock.advance(days=30)
    assert ws.inbox("card", user_id="u1") == []


def test_a_visitors_inbox_follows_them_when_they_sign_in(ws: Workspace) -> None:
    """Segment SDKs keep sending the anonymousId after identify, so the app names both."""
    ws.track("Product Viewed", anonymous_id="visitor-7")
    ws.flush()
    ws.send_now("card", "anon:visitor-7", message_id="card-welcome", title="첫 방문 쿠폰")
    assert [c["id"] for c in ws.inbox("card", anonymous_id="visitor-7")] == ["card-welcome"]
    ws.identify("u7", {"name": "지훈"}, anonymous_id="visitor-7")
    ws.flush()
    ws.send_now("card", "u7", message_id="card-member", title="회원 쿠폰")
    assert [c["id"] for c in ws.inbox("card", user_id="u7", anonymous_id="visitor-7")] == ["card-member",
                                                                                          "card-welcome"]
    assert [c["id"] for c in ws.inbox("card", user_id="u7")] == ["card-member"]
    ws.report_inbox("card-welcome", "dismiss", user_id="u7", anonymous_id="visitor-7")
    assert [c["id"] for c in ws.inbox("card", user_id="u7", anonymous_id="visitor-7")] == ["card-member"]


def test_an_identified_visitors_profile_is_followed_through_its_merge(ws: Workspace) -> None:
    ws.identify(None, {"name": "방문자"}, anonymous_id="visitor-8")
    ws.flush()
    ws.send_now("card", "anon:visitor-8", message_id="card-v8", title="첫 방문 쿠폰")
    ws.identify("u8", {"name": "서연"}, anonymous_id="visitor-8")
    ws.flush()
    assert [c["id"] for c in ws.inbox("card", user_id="u8")] == ["card-v8"]


def test_reports_that_do_not_fit_are_refused(ws: Workspace) -> None:
    ws.send_now("inapp", "u1", message_id="iam-2", text="안녕")
    with pytest.raises(FieldError, match="userId"):
        ws.inbox("inapp")
    with pytest.raises(FieldError, match="type"):
        ws.report_inbox("iam-2", "swipe", user_id="u1")
    with pytest.raises(FieldError, match="button"):
        ws.report_inbox("iam-2", "click", user_id="u1", button=1)
    with pytest.raises(LookupError):
        ws.report_inbox("iam-2", "impression", user_id="u2")
    with pytest.raises(FieldError, match="channel"):
        ws.inbox("push", user_id="u1")
    failed = ws.send_now("inapp", "u1", layout="banner", text="x", buttons=[{"label": "a", "action": "dismiss"}])
    assert not failed.sent and ws.inbox("inapp", user_id="u1")[0]["id"] == "iam-2"
    reused = ws.send_now("inapp", "u2", message_id="iam-2", text="안녕").outcome
    assert (reused.verdict.value, reused.code) == ("permanent", "message_id_taken")
    assert ws.inbox("inapp", user_id="u2") == []


def test_an_expired_message_cannot_record_a_consent(ws: Workspace, clock: FakeClock) -> None:
    ws.send_now("inapp", "u1", message_id="iam-old", title="혜택", buttons=[CONSENT_BUTTON], ttl_seconds=3600)
    clock.advance(hours=2)
    with pytest.raises(FieldError, match="expired"):
        ws.report_inbox("iam-old", "click", user_id="u1", button=1)
    assert ws.profile("u1") is None  # no consent, no profile made for it


def test_a_second_user_on_a_shared_device_does_not_see_the_first_ones_inbox(ws: Workspace) -> None:
    ws.identify(None, {"name": "방문자"}, anonymous_id="shared-device")
    ws.identify("first", {"name": "A"}, anonymous_id="shared-device")
    ws.identify("second", {"name": "B"})
    ws.flush()
    ws.send_now("inapp", "first", message_id="iam-first", title="A님 혜택", buttons=[CONSENT_BUTTON])
    assert ws.inbox("inapp", user_id="second", anonymous_id="shared-device") == []
    with pytest.raises(LookupError):
        ws.report_inbox("iam-first", "click", user_id="second", anonymous_id="shared-device", button=1)
    assert [m["id"] for m in ws.inbox("inapp", anonymous_id="shared-device")] == ["iam-first"]


def test_to_is_a_user_id_unless_it_says_anon(ws: Workspace) -> None:
    ws.identify(None, {"name": "방문자"}, anonymous_id="abc")
    ws.flush()
    ws.send_now("card", "abc", message_id="card-user-abc", title="회원 abc에게")
    assert ws.inbox("card", user_id="abc")[0]["id"] == "card-user-abc"
    assert ws.inbox("card", anonymous_id="abc") == []


# -- over HTTP with the write key ------------------------------------------------------------------------------


@pytest.fixture
def served(sqlite_ws: Workspace) -> Iterator[tuple[httpx.Client, Workspace]]:
    write_key = sqlite_ws.keys.create(KeyScope.WRITE, "app", sqlite_ws.clock())[1]
    with LiveServer(sqlite_ws) as server, httpx.Client(base_url=server.url, auth=(write_key, ""), timeout=10) as client:
        yield client, sqlite_ws


def test_the_app_reads_its_inbox_and_reports_back_over_http(served: tuple[httpx.Client, Workspace]) -> None:
    client, ws = served
    ws.identify("u1", {"name": "민지"})
    ws.send_now("inapp", "u1", message_id="iam-http", layout="html",
                html='<p>혜택</p><script>x()</script><button data-nudge-action="consent">받기</button>')
    ws.send_now("card", "u1", message_id="card-http", title="쿠폰", pinned=True)
    assert httpx.get(f"{client.base_url}/v1/inapp", params={"userId": "u1"}).status_code == 401
    messages = client.get("/v1/inapp", params={"userId": "u1"}).json()["messages"]
    assert [m["id"] for m in messages] == ["iam-http"]
    assert "script" not in messages[0]["html"] and 'data-nudge-action="consent"' in messages[0]["html"]
    assert client.get("/v1/cards", params={"userId": "u1"}).json()["cards"][0]["title"] == "쿠폰"
    answer = client.post("/v1/inbox/report", json={"id": "iam-http", "type": "impression", "userId": "u1"})
    assert answer.status_code == 200 and answer.json()["first"] is True
    assert client.get("/v1/inapp", params={"userId": "u1"}).json()["messages"] == []
    nobody = client.post("/v1/inbox/report", json={"id": "iam-http", "type": "click", "userId": "u2"})
    assert nobody.status_code == 404 and nobody.json()["errors"][0]["field"] == "id"
    bad = client.post("/v1/inbox/report", json={"id": "iam-http", "type": "swipe", "userId": "u1"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "type"
    anonymous = client.get("/v1/cards")
    assert anonymous.status_code == 400 and anonymous.json()["errors"][0]["field"] == "userId"

    def shown() -> bool:
        return any(e["event"] == "In-App Message Shown" for e in ws.profile("u1")["recent_events"])

    wait_for(shown)


def test_the_cli_sends_to_an_inbox_and_shows_it(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws")[0].close()

    def nudge(*args: str) -> Any:
        return CliRunner(env={"NUDGE_HOME": str(tmp_path / "ws")}).invoke(app, list(args))

    sent = nudge("message", "send", "--channel", "inapp", "--to", "u1", "--title", "혜택", "--layout", "modal",
                 "--button", json.dumps(CONSENT_BUTTON), "--json")
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)["provider"] == "inbox"
    assert nudge("message", "send", "--channel", "card", "--to", "anon:v1", "--title", "쿠폰", "--pinned").exit_code == 0
    [message] = json.loads(nudge("inbox", "show", "--user", "u1", "--json").output)
    assert message["buttons"] == [CONSENT_BUTTON]
    shown = nudge("inbox", "show", "--anonymous-id", "v1", "--cards")
    assert "쿠폰" in shown.output and "pinned new" in shown.output
    refused = nudge("inbox", "show")
    assert refused.exit_code == 2 and "--user" in refused.output
    banner = nudge("message", "check", "--channel", "inapp", "--layout", "banner", "--text", "x", "--button",
                   '{"label":"a","action":"dismiss"}', "--json")
    assert banner.exit_code == 1 and json.loads(banner.output)["problems"][0]["code"] == "banner_buttons"


def test_a_consent_button_over_http_needs_the_users_signed_token(served: tuple[httpx.Client, Workspace]) -> None:
    client, ws = served
    ws.identify("u1", {"name": "민지"})
    ws.send_now("inapp", "u1", message_id="iam-c", title="혜택", buttons=[CONSENT_BUTTON])
    click = {"id": "iam-c", "type": "click", "button": 1, "userId": "u1"}
    forged = client.post("/v1/inbox/report", json=click)
    assert forged.status_code == 403 and forged.json()["errors"][0]["field"] == "button"
    assert ws.profile("u1")["consent_history"] == []

    ws.settings.inbox.user_token_secret = "s3cret"
    assert client.get("/v1/inapp", params={"userId": "u1"}).status_code == 401
    wrong = client.get("/v1/inapp", params={"userId": "u1"}, headers={"Nudge-User-Token": user_token("s3cret", "u2")})
    assert wrong.status_code == 401 and "does not belong" in wrong.json()["message"]
    token = {"Nudge-User-Token": user_token("s3cret", "u1")}
    assert [m["id"] for m in client.get("/v1/inapp", params={"userId": "u1"}, headers=token).json()["messages"]] == [
        "iam-c"]
    assert client.get("/v1/inapp", params={"anonymousId": "a1"}, headers=token).status_code == 401
    answer = client.post("/v1/inbox/report", json=click, headers=token)
    assert answer.status_code == 200, answer.text
    assert {(c["channel"], c["source"]) for c in answer.json()["consents"]} == {("push", "in_app"), ("sms", "in_app")}
    assert len(ws.profile("u1")["consent_history"]) == 2
