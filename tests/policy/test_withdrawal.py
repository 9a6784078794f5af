"""Withdrawing consent by every way the law names — the unsubscribe page, RFC 8058 one-click, 080 call records,
"수신거부"/"STOP" replies — and each taking effect at once, queued messages included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from conftest import FakeClock, LiveServer

from nudgekit.testing.smtp import FakeSmtp
from nudgekit.vocabulary import KeyScope

from .helpers import NOON_KST, open_shop, person, reasons

AD_EMAIL = {"subject": "겨울 세일 30%", "text": "이번 주말까지 겨울 세일입니다.", "ad": True}
AD_SMS = {"text": "겨울 세일 30%, 이번 주말까지", "ad": True}


def consent_of(ws, user: str, channel: str, purpose: str = "advertising") -> dict:  # type: ignore[no-untyped-def]
    return next(c for c in ws.profile(user)["consents"] if (c["channel"], c["purpose"]) == (channel, purpose))


def test_advertising_email_carries_the_persons_own_signed_link(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOON_KST)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        person(ws, "kim", email="kim@example.com", consent=("email",))
        person(ws, "lee", email="lee@example.com", phone="010-2222-3333", consent=("email",))
        ruling = ws.check_for("email", "kim", **AD_EMAIL)
        assert not ruling.sends and reasons(ruling)["label"] == "no_unsubscribe_link"
        assert "public_url" in next(d.en for d in ruling.decisions if d.rule == "label")

        ws.settings.public_url = "https://nudge.example.com"
        kim = ws.check_for("email", "kim", **AD_EMAIL)
        lee = ws.check_for("email", "lee", **AD_EMAIL)
        assert kim.sends and reasons(kim)["label"] == "label_added"
        kim_link, lee_link = kim.candidate.message.unsubscribe_url, lee.candidate.message.unsubscribe_url
        assert kim_link.startswith("https://nudge.example.com/u/") and kim_link != lee_link
        assert kim_link in kim.candidate.message.text
        assert kim_link == ws.unsubscribe_link("kim")
        assert ws.unsubscribe_channel(kim_link.rsplit("/", 1)[1]) == "email"


def test_a_forged_or_damaged_link_withdraws_nothing(tmp_path: Path) -> None:
    with open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", FakeClock(NOON_KST),
                   ) as ws:
        ws.settings.public_url = "https://nudge.example.com"
        person(ws, "kim", email="kim@example.com", consent=("email",))
        token = ws.unsubscribe_link("kim").rsplit("/", 1)[1]
        payload, signature = token.split(".")
        for bad in (f"{payload}.{signature[:-2]}AA", "x", "", f"{payload[:-1]}.{signature}", "a.b.c"):
            with pytest.raises(ValueError, match="damaged or was not made"):
                ws.unsubscribe(bad)
        assert consent_of(ws, "kim", "email")["granted"]


@pytest.fixture
def relay():  # type: ignore[no-untyped-def]
    with FakeSmtp() as server:
        yield server


def test_one_click_from_the_email_header_stops_the_next_advertising_email(tmp_path: Path, relay: FakeSmtp) -> None:
    """The whole round: an advertising email goes out over SMTP with the person's own link in the body and
    the List-Unsubscribe header; the mail provider POSTs List-Unsubscribe=One-Click to it (RFC 8058); the
    next advertising email is skipped, and informational mail still goes."""
    clock = FakeClock(NOON_KST)
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock)
    ws.settings.providers.email = "smtp"
    ws.settings.smtp.host, ws.settings.smtp.port, ws.settings.smtp.security = "127.0.0.1", relay.port, "none"
    with ws, LiveServer(ws) as server:
        ws.settings.public_url = server.url
        person(ws, "kim", email="kim@example.com", consent=("email",))
        first = ws.send("email", "kim", **AD_EMAIL)
        assert first.sent, first.as_dict()
        (mail,) = [r.message for r in relay.received]
        header = mail["List-Unsubscribe"]
        link = " ".join(str(header).split()).strip("<>")
        assert link.startswith(f"{server.url}/u/"), repr(str(header))
        assert link in mail.get_body(("plain",)).get_content()

        answer = httpx.post(link, content="List-Unsubscribe=One-Click",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and answer.text == "unsubscribed"
        state = consent_of(ws, "kim", "email")
        assert not state["granted"] and state["source"] == "unsubscribe_link"
        assert consent_of(ws, "kim", "email", "advertising")["at"] == NOON_KST.isoformat()

        second = ws.send("email", "kim", **AD_EMAIL)
        assert not second.sent and reasons(second.ruling)["consent"] == "consent_withdrawn"
        receipt = ws.send("email", "kim", subject="주문이 접수되었습니다", text="주문번호 1234")
        assert receipt.sent
        assert len(relay.received) == 2
        again = httpx.post(link, files={"List-Unsubscribe": (None, "One-Click")})  # multipart, RFC 8058 allows it
        assert again.status_code == 200 and again.text == "unsubscribed"
        assert len([h for h in ws.profile("kim")["consent_history"] if h["source"] == "unsubscribe_link"]) == 1


def test_the_unsubscribe_page_asks_then_shows_the_result(tmp_path: Path) -> None:
    clock = FakeClock(NOON_KST)
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock)
    with ws, LiveServer(ws) as server:
        ws.settings.public_url = server.url
        person(ws, "kim", email="kim@example.com", consent=("email", "sms", "push"), night=("sms",))
        link = ws.unsubscribe_link("kim")
        page = httpx.get(link)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert '<form method="post">' in page.text and "넛지샵" in page.text
        assert all(c["granted"] for c in ws.profile("kim")["consents"])  # opening the page changes nothing

        done = httpx.post(link, data={"confirm": "yes", "every": "yes"})
        assert done.status_code == 200 and "수신거부가 처리되었습니다" in done.text and "2026-11-24" in done.text
        assert not any(c["granted"] for c in ws.profile("kim")["consents"])
        assert consent_of(ws, "kim", "sms", "night")["source"] == "unsubscribe_link"
        # the page showed the result: that was the result notice, none is due for these changes
        assert ws.consent_due() == []

        broken = httpx.get(f"{server.url}/u/not-a-link")
        assert broken.status_code == 404 and "text/html" in broken.headers["content-type"]
        one_click = httpx.post(f"{server.url}/u/not-a-link", content="List-Unsubscribe=One-Click")
        assert one_click.status_code == 404


CALLS = """수신거부번호,수신거부일시,비고
010-1234-5678,2026-11-20 13:05:00,
01099998888,2026.11.21 09:00,
010-12,2026-11-21 10:00:00,
010-5555-6666,어제,
010-7777-8888,2026-12-30 10:00:00,
"""


def test_080_call_records_withdraw_by_number_now_and_for_whoever_has_it_later(tmp_path: Path,
                                                                              state_url: str) -> None:
    clock = FakeClock(NOON_KST)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        person(ws, "kim", phone="010-1234-5678", consent=("sms", "kakao"), night=("sms",))
        person(ws, "park", phone="010-3333-4444", consent=("sms",))
        queued = ws.gate("sms", "kim", stage="queue", **AD_SMS)
        assert queued.sends

        path = tmp_path / "calls.csv"
        path.write_bytes(CALLS.encode("cp949"))  # as Korean Excel saves it
        result = ws.import_optout_calls(path)
        assert (result["calls"], result["numbers"], result["profiles"]) == (2, 2, 1)
        assert [(r["line"], r["field"]) for r in result["rejected"]] == [
            (4, "수신거부번호"), (5, "수신거부일시"), (6, "수신거부일시")]
        assert "future" in result["rejected"][2]["reason"]

        for channel, purpose in (("sms", "advertising"), ("kakao", "advertising"), ("sms", "night")):
            state = consent_of(ws, "kim", channel, purpose)
            assert not state["granted"] and state["source"] == "optout_080_call", (channel, purpose)
        assert consent_of(ws, "park", "sms")["granted"]
        # the message queued before the call was imported does not go at hand-over
        handed = ws.gate("sms", "kim", stage="handover", message_id=queued.candidate.message_id, **AD_SMS)
        assert not handed.sends and reasons(handed)["consent"] == "consent_withdrawn"

        again = ws.import_optout_calls(path)
        assert again["recorded"] == 0 and again["calls"] == 2

        # someone who signs up later with the number that called 080 (before they consented) stays refused
        person(ws, "choi", phone="010-9999-8888")
        ws.set_consent("choi", channel="sms", purpose="advertising", granted=True, source="signup_form",
                       at=datetime(2026, 11, 1, tzinfo=UTC))
        assert reasons(ws.check_for("sms", "choi", **AD_SMS))["consent"] == "consent_withdrawn"
        # ... until they opt in again after the call
        ws.set_consent("choi", channel="sms", purpose="advertising", granted=True, source="settings_screen")
        assert ws.check_for("sms", "choi", **AD_SMS).sends


def test_a_call_record_file_it_cannot_read_says_why(tmp_path: Path) -> None:
    with open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", FakeClock(NOON_KST)) as ws:
        path = tmp_path / "calls.csv"
        path.write_text("name,memo\nkim,x\n", encoding="utf-8")
        with pytest.raises(ValueError, match="which column holds the phone number; the columns are name, memo"):
            ws.import_optout_calls(path)
        path.write_text("recipientNo,createDate\n01012345678,20261120130500\n", encoding="utf-8")
        assert ws.import_optout_calls(path)["calls"] == 1
        path.write_text("번호,시각\n01012345678,2026-11-20T13:05:00+09:00\n", encoding="utf-8")
        assert ws.import_optout_calls(path, phone_column="번호", at_column="시각")["calls"] == 1


@pytest.mark.parametrize(("text", "refuses"), [
    ("수신거부", True), ("수신 거부", True), ("STOP", True), ("stop.", True), ("Unsubscribe", True),
    ("수신거부 부탁드립니다", True), ("광고거부", True), ("그만", True),
    ("안녕하세요", False), ("stop by the store", False), ("거부하지 않습니다 감사해요", False), ("", False),
])
def test_replies_that_refuse(text: str, refuses: bool) -> None:
    from nudgekit.consent.optout import is_optout_reply

    assert is_optout_reply(text) is refuses


def test_a_stop_reply_over_http_withdraws_and_a_retry_records_once(tmp_path: Path) -> None:
    clock = FakeClock(NOON_KST)
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock)
    admin = ws.keys.create(KeyScope.ADMIN, "ops", NOON_KST)[1]
    write = ws.keys.create(KeyScope.WRITE, "app", NOON_KST)[1]
    with ws, LiveServer(ws) as server:
        person(ws, "kim", phone="010-1234-5678", consent=("sms", "kakao"))
        url = f"{server.url}/v1/sms/replies"
        refused = httpx.post(url, json={"from": "+821012345678", "text": "STOP"}, auth=(write, ""))
        assert refused.status_code == 403
        body = {"replies": [{"from": "010-1234-5678", "text": "수신거부", "id": "mo-1"},
                            {"from": "010-1234-5678", "text": "고맙습니다", "id": "mo-2"},
                            {"from": "12", "text": "STOP"}]}
        answer = httpx.post(url, json=body, auth=(admin, ""))
        assert answer.status_code == 200
        first, thanks, bad = answer.json()["replies"]
        assert first["optout"] and first["profiles"] == ["kim"] and first["recorded"] == 2
        assert not thanks["optout"] and bad["error"]["field"] == "from"
        assert httpx.post(url, json=body, auth=(admin, "")).json()["replies"][0]["recorded"] == 0
        state = consent_of(ws, "kim", "kakao")
        assert not state["granted"] and state["source"] == "sms_reply"
        assert reasons(ws.check_for("brand_message", "kim", text="겨울 세일"))["consent"] \
            == "consent_withdrawn"


def test_a_withdrawal_before_a_later_reconsent_does_not_undo_it(tmp_path: Path) -> None:
    """An 080 file arriving late: the call predates the person's new opt-in, so the opt-in stands."""
    clock = FakeClock(NOON_KST)
    with open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock) as ws:
        person(ws, "kim", consent=("sms",))
        ws.set_consent("kim", channel="sms", purpose="advertising", granted=True, source="settings_screen",
                       at=NOON_KST - timedelta(days=1))
        path = tmp_path / "calls.csv"
        path.write_text("phone,at\n010-1234-5678,2026-11-20 10:00\n", encoding="utf-8")
        assert ws.import_optout_calls(path)["recorded"] == 2  # sms and kakao advertising
        assert consent_of(ws, "kim", "sms")["granted"]
        assert ws.check_for("sms", "kim", **AD_SMS).sends
