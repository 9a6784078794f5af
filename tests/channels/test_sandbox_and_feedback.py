"""The sandbox records what would have gone out (`nudge message send`, `nudge outbox show`); providers are
chosen per channel in [providers]; what a provider says about a dead recipient is remembered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from typer.testing import CliRunner

from nudgekit.channels import feedback
from nudgekit.channels.provider import Outcome, Verdict
from nudgekit.channels.providers import PROVIDERS
from nudgekit.cli import app
from nudgekit.config import PROVIDER_NAMES, Settings
from nudgekit.store.state import Profile, PushToken, Suppression
from nudgekit.vocabulary import MessageChannel
from nudgekit.workspace import Workspace


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with Workspace.init(tmp_path / "ws")[0] as ws:
        ws.set_sender(sms_numbers=["0212345678"], email_from="news@nudge.example")
    return tmp_path / "ws"


def nudge(home: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner(env={"NUDGE_HOME": str(home)}).invoke(app, list(args))


def test_a_test_send_is_recorded_by_the_sandbox_and_shown_in_the_outbox(home: Path) -> None:
    sent = nudge(home, "message", "send", "--channel", "sms", "--to", "010-1234-5678", "--text", "주문이 출발했어요")
    assert sent.exit_code == 0, sent.output
    assert "accepted by sandbox" in sent.output
    long = nudge(home, "message", "send", "--channel", "sms", "--to", "01012345678", "--subject", "안내",
                 "--text", "가" * 60, "--json")
    assert long.exit_code == 0 and json.loads(long.stdout)["outcome"]["verdict"] == "accepted"
    shown = nudge(home, "outbox", "show", "--json")
    rows = json.loads(shown.stdout)
    assert [(r["channel"], r["type"], r["to"]) for r in rows] == [("sms", "LMS", "+821012345678"),
                                                                 ("sms", "SMS", "+821012345678")]
    assert rows[1]["message"]["text"] == "주문이 출발했어요"
    table = nudge(home, "outbox", "show", "--channel", "sms", "--limit", "1")
    assert "sms LMS" in table.output and "sms SMS" not in table.output and "안내" in table.output


def test_a_message_that_fails_its_check_is_neither_sent_nor_recorded(home: Path) -> None:
    result = nudge(home, "message", "send", "--channel", "sms", "--to", "01012345678", "--text", "세일 🎉")
    assert result.exit_code == 1 and "not sent" in result.output and "unsupported_characters" not in result.output
    assert "🎉" in result.output
    assert json.loads(nudge(home, "outbox", "show", "--json").stdout) == []
    assert "no messages yet" in nudge(home, "outbox", "show").output


def test_bad_recipients_and_options_are_named(home: Path) -> None:
    bad_phone = nudge(home, "message", "send", "--channel", "sms", "--to", "12", "--text", "안녕")
    assert bad_phone.exit_code == 2 and "--to" in bad_phone.output
    for number in ("+1 202 555 0123", "02-2123-4567"):
        foreign = nudge(home, "message", "send", "--channel", "sms", "--to", number, "--text", "안녕")
        assert foreign.exit_code == 2 and "not a Korean mobile number" in foreign.output
        kakao = nudge(home, "message", "send", "--channel", "brand_message", "--to", number, "--text", "안녕")
        assert kakao.exit_code == 2 and "not a Korean mobile number" in kakao.output
    bad_email = nudge(home, "message", "send", "--channel", "email", "--to", "kim@", "--subject", "a", "--text", "b")
    assert bad_email.exit_code == 2 and "--to" in bad_email.output
    image = nudge(home, "message", "check", "--channel", "email", "--subject", "a", "--text", "b", "--image", "x.jpg")
    assert image.exit_code == 2 and "--image: email messages have no such field" in image.output
    data = nudge(home, "message", "check", "--channel", "webhook", "--url", "https://a.example", "--data", "{x")
    assert data.exit_code == 2 and "--data: not JSON" in data.output
    kakao = nudge(home, "message", "check", "--channel", "alimtalk", "--text", "안녕")
    assert kakao.exit_code == 2 and "--template: alimtalk messages need it" in kakao.output
    card = nudge(home, "message", "check", "--channel", "card", "--text", "안녕")
    assert card.exit_code == 2 and "--title: card messages need it" in card.output


def test_the_same_message_id_is_recorded_once(home: Path) -> None:
    with Workspace.open(home) as ws:
        first = ws.send_now("email", "Kim@Example.com", message_id="m-7", subject="안내", text="본문")
        again = ws.send_now("email", "kim@example.com", message_id="m-7", subject="안내", text="본문")
        assert first.outcome.sent and again.outcome.sent and again.outcome.detail == "already recorded"
        assert first.outcome.provider_message_id == again.outcome.provider_message_id
        assert [r["to"] for r in ws.outbox()] == ["Kim@example.com"]


def test_providers_are_named_in_nudge_toml_and_must_fit_the_channel(home: Path) -> None:
    assert set(PROVIDERS) == set(PROVIDER_NAMES)
    with pytest.raises(ValidationError, match="unknown provider 'twilio'"):
        Settings(home=home, providers={"sms": "twilio"})
    with Workspace.open(home, providers={"email": "webhook"}, webhook={"secret": "s"}) as ws:
        with pytest.raises(ValueError, match="webhook cannot send email"):
            ws.send_now("email", "kim@example.com", subject="안내", text="본문")


def test_dead_recipients_are_remembered(ws: Workspace) -> None:
    ws.identify("u1", {"phone": "010-2345-6789", "kakao_reachable": True,
                       "push_tokens": [{"token": "fcm-1", "platform": "android"}]})
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    gone = Outcome(Verdict.INVALID_RECIPIENT, "UNREGISTERED", "Requested entity was not found.")
    with ws.sessions.begin() as session:
        assert feedback.remember(session, MessageChannel.PUSH, "fcm-1", None, gone, now) == "push token invalid"
        assert feedback.remember(session, MessageChannel.PUSH, "fcm-1", None, gone, now) is None
        not_a_friend = Outcome(Verdict.PERMANENT, "3102", "친구 아님", fallback=True)
        assert feedback.remember(session, MessageChannel.BRAND_MESSAGE, "+821023456789", "u1",
                                 not_a_friend, now) is None
        kakao = Outcome(Verdict.INVALID_RECIPIENT, "3019", "카카오톡 미사용자", fallback=True)
        assert feedback.remember(session, MessageChannel.ALIMTALK, "+821023456789", "u1", kakao, now)
        bounce = Outcome(Verdict.INVALID_RECIPIENT, "550", "5.1.1 no such user")
        feedback.remember(session, MessageChannel.EMAIL, "Gone@example.com", None, bounce, now)
        assert feedback.remember(session, MessageChannel.EMAIL, "gone@example.com", None, bounce, now) is None
        assert feedback.suppressed(session, MessageChannel.EMAIL, "GONE@example.com") is not None
        busy = Outcome(Verdict.RETRYABLE, "1001", "Server Busy")
        assert feedback.remember(session, MessageChannel.SMS, "+821099998888", None, busy, now) is None
    with ws.sessions() as session:
        token = session.get(PushToken, "fcm-1")
        assert (token.status, token.status_reason) == ("invalid", "UNREGISTERED: Requested entity was not found.")
        assert session.get(Profile, "u1").kakao_reachable is False
        rows = session.scalars(select(Suppression)).all()
        assert [(r.channel, r.address, r.reason) for r in rows] == [("email", "gone@example.com", "hard_bounce")]
