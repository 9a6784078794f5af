"""Email: checked before sending, sent over SMTP to a real server (aiosmtpd), every reply classified, and a
hard bounce suppresses the address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nudgekit.channels.email.message import EmailMessage, check, plain_text_of
from nudgekit.channels.email.smtp import classify
from nudgekit.channels.provider import Verdict
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.testing.smtp import FakeSmtp
from nudgekit.workspace import Workspace

SENDER = SenderSettings(name="뉴지샵", email_from="news@nudge.example", email_reply_to="help@nudge.example")
UNSUB = "https://nudge.example/u/abc123"
AD = {"subject": "(광고) 겨울 세일 30%", "ad": True, "unsubscribe_url": UNSUB,
      "html": f'<p>세일 소식입니다.</p><p><a href="{UNSUB}">수신거부</a></p>'}


def codes(message: EmailMessage, sender: SenderSettings = SENDER) -> list[str]:
    return [p.code for p in check(message, sender, PriceSettings()).problems]


def test_a_lawful_advertising_email_passes() -> None:
    assert codes(EmailMessage(**AD)) == []


def test_advertising_needs_the_label_a_sender_name_and_an_unsubscribe_link_in_the_body() -> None:
    assert codes(EmailMessage(**{**AD, "subject": "[광고] 겨울 세일"})) == ["ad_label_missing"]
    assert codes(EmailMessage(**AD), SenderSettings(email_from="news@nudge.example")) == ["no_sender_name"]
    assert codes(EmailMessage(**{**AD, "unsubscribe_url": None})) == ["no_unsubscribe_link"]
    assert codes(EmailMessage(**{**AD, "html": "<p>세일</p>"})) == ["unsubscribe_link_not_in_body"]


def test_informational_email_needs_only_a_subject_a_body_and_a_sender() -> None:
    assert codes(EmailMessage(subject="주문이 접수되었습니다", text="주문번호 1234")) == []
    assert codes(EmailMessage(subject="주문", text="x"), SenderSettings()) == ["no_from_address"]
    assert codes(EmailMessage(subject=" ", text=" ")) == ["empty", "empty"]
    assert codes(EmailMessage(subject="a\r\nBcc: x@evil.example", text="x")) == ["line_break_in_subject"]
    assert codes(EmailMessage(subject="a", text="x", reply_to="not an address")) == ["bad_address"]


def test_http_unsubscribe_link_and_clipped_html_are_warned() -> None:
    body = "<p>" + "가" * 40_000 + '</p><a href="http://nudge.example/u/1">x</a>'
    out = check(EmailMessage(subject="a", html=body, unsubscribe_url="http://nudge.example/u/1"), SENDER,
                PriceSettings())
    assert out.ok and [w.code for w in out.warnings] == ["gmail_clips", "one_click_needs_https"]
    assert out.sizes["html"].value > 102_000


def test_plain_text_is_made_from_html() -> None:
    html = "<html><head><style>p{color:red}</style></head><body><h1>세일</h1><p>30% &amp; 무료배송<br>오늘만</p>" \
           "<script>alert(1)</script></body></html>"
    assert plain_text_of(html) == "세일\n30% & 무료배송\n오늘만\n"


@pytest.mark.parametrize(("code", "text", "at_rcpt", "verdict"), [
    (250, "2.0.0 Ok", False, Verdict.ACCEPTED),
    (550, "5.1.1 The email account that you tried to reach does not exist", True, Verdict.INVALID_RECIPIENT),
    (550, "No such user here", True, Verdict.INVALID_RECIPIENT),
    (550, "5.2.1 Mailbox disabled", True, Verdict.INVALID_RECIPIENT),
    (553, "5.1.8 Sender address rejected: Domain not found", True, Verdict.PERMANENT),  # ours, not theirs
    (552, "5.2.2 Mailbox full", True, Verdict.PERMANENT),
    (550, "5.7.1 Message rejected as spam", True, Verdict.PERMANENT),
    (554, "5.7.1 Message rejected as spam", False, Verdict.PERMANENT),
    (550, "5.7.515 Access denied, sending domain does not meet the required authentication level", False,
     Verdict.PERMANENT),
    (421, "4.7.28 Our system has detected an unusual rate of unsolicited mail", False, Verdict.RATE_LIMITED),
    (450, "4.2.1 The user you are trying to contact is receiving mail too quickly", True, Verdict.RATE_LIMITED),
    (451, "Too many messages, slow down", False, Verdict.RATE_LIMITED),
    (451, "4.3.0 Temporary local problem", False, Verdict.RETRYABLE),
    (452, "4.2.2 Mailbox full", True, Verdict.RETRYABLE),
])
def test_smtp_replies_are_classified(code: int, text: str, at_rcpt: bool, verdict: Verdict) -> None:
    assert classify(code, text, at_recipient=at_rcpt) == verdict


@pytest.fixture
def relay() -> Iterator[FakeSmtp]:
    with FakeSmtp(refuse={"nobody@example.com": "550 5.1.1 <nobody@example.com>: Recipient address rejected",
                          "busy@example.com": "451 4.7.1 Rate limited, try again later"}) as server:
        yield server


def workspace(tmp_path: Path, relay: FakeSmtp, **smtp: object) -> Workspace:
    ws, _ = Workspace.init(tmp_path / "ws", providers={"email": "smtp"},
                           smtp={"host": "127.0.0.1", "port": relay.port, "security": "none", **smtp})
    ws.set_sender(name="뉴지샵", email_from="news@nudge.example", email_reply_to="help@nudge.example")
    return ws


def test_an_advertising_email_arrives_with_both_unsubscribe_headers(tmp_path: Path, relay: FakeSmtp) -> None:
    with workspace(tmp_path, relay) as ws:
        result = ws.send_now("email", "kim@example.com", **AD)
    assert result.outcome.verdict == Verdict.ACCEPTED and result.provider == "smtp"
    assert result.outcome.provider_message_id == "FAKE00001"
    (got,) = relay.received
    assert got.mail_from == "news@nudge.example" and got.rcpt_tos == ["kim@example.com"]
    mail = got.message
    assert mail["Subject"] == "(광고) 겨울 세일 30%"
    assert mail["From"].addresses[0].display_name == "뉴지샵"
    assert mail["Reply-To"] == "help@nudge.example"
    assert mail["List-Unsubscribe"] == f"<{UNSUB}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = {p.get_content_type(): p.get_content() for p in mail.iter_parts()}
    assert "수신거부" in parts["text/plain"] and UNSUB in parts["text/html"]


def test_a_message_that_fails_its_check_is_not_sent(tmp_path: Path, relay: FakeSmtp) -> None:
    with workspace(tmp_path, relay) as ws:
        result = ws.send_now("email", "kim@example.com", **{**AD, "subject": "겨울 세일"})
    assert result.outcome is None and not result.checked.ok and relay.received == []


def test_a_hard_bounce_suppresses_the_address(tmp_path: Path, relay: FakeSmtp) -> None:
    with workspace(tmp_path, relay) as ws:
        first = ws.send_now("email", "nobody@example.com", subject="안내", text="본문")
        assert first.outcome.verdict == Verdict.INVALID_RECIPIENT and first.outcome.code == "550"
        assert "suppressed" in first.note
        again = ws.send_now("email", "nobody@example.com", subject="안내", text="본문")
        assert again.outcome is None and "suppressed on email (hard_bounce" in again.note
        busy = ws.send_now("email", "busy@example.com", subject="안내", text="본문")
        assert busy.outcome.verdict == Verdict.RATE_LIMITED and busy.note is None
        assert ws.send_now("email", "kim@example.com", subject="안내", text="본문").outcome.sent
    assert [r.rcpt_tos for r in relay.received] == [["kim@example.com"]]


def test_content_refused_at_data_is_permanent_and_suppresses_nothing(tmp_path: Path) -> None:
    with FakeSmtp(data_reply="554 5.7.1 Message rejected: spam") as relay, workspace(tmp_path, relay) as ws:
        result = ws.send_now("email", "kim@example.com", subject="안내", text="본문")
        assert result.outcome.verdict == Verdict.PERMANENT and result.note is None
        assert ws.send_now("email", "kim@example.com", subject="안내", text="본문").outcome is not None


def test_a_relay_that_goes_silent_after_the_data_is_uncertain_never_retryable(tmp_path: Path) -> None:
    with FakeSmtp(data_delay=3) as relay, workspace(tmp_path, relay, timeout_seconds=0.5) as ws:
        result = ws.send_now("email", "kim@example.com", subject="안내", text="본문")
    assert result.outcome.verdict == Verdict.UNCERTAIN


def test_an_unreachable_relay_is_retryable(tmp_path: Path) -> None:
    relay = FakeSmtp().start()
    relay.stop()
    with workspace(tmp_path, relay) as ws:
        result = ws.send_now("email", "kim@example.com", subject="안내", text="본문")
    assert result.outcome.verdict == Verdict.RETRYABLE and "cannot reach" in result.outcome.detail


def test_a_wrong_password_is_permanent(tmp_path: Path) -> None:
    with FakeSmtp(login=("apikey", "right")) as relay:
        with workspace(tmp_path, relay, username="apikey", password="wrong") as ws:
            result = ws.send_now("email", "kim@example.com", subject="안내", text="본문")
        assert result.outcome.verdict == Verdict.PERMANENT and "login refused" in result.outcome.detail
        with Workspace.open(tmp_path / "ws", smtp={"host": "127.0.0.1", "port": relay.port, "security": "none",
                                                    "username": "apikey", "password": "right"}) as ws:
            assert ws.send_now("email", "kim@example.com", subject="안내", text="본문").outcome.sent
