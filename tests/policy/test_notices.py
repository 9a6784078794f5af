"""The consent notices the law owes: a result notice within 14 days of a change, a re-confirmation every two
years of an advertising consent — found by `consent_due`, sent once, with no advertising in them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import FakeClock

from nudgekit.consent import notices
from nudgekit.policy.purpose import PROMOTIONAL

from .helpers import open_shop, person, reasons

SIGNED_UP = datetime(2024, 12, 10, 3, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def grant(ws, user: str, channel: str, *, purpose: str = "advertising", granted: bool = True,  # type: ignore[no-untyped-def]
          source: str = "settings_screen") -> None:
    ws.set_consent(user, channel=channel, purpose=purpose, granted=granted, source=source)


def test_a_change_gets_one_result_notice_by_its_own_channel(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOW)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        person(ws, "kim", email="kim@example.com")
        person(ws, "lee", phone="010-2222-3333")
        grant(ws, "kim", "sms", granted=False)
        grant(ws, "lee", "sms", source="import")  # moved from another system: not a new choice
        ws.set_consent("lee", channel="email", purpose="advertising", granted=True, source="signup_form",
                       at=NOW - timedelta(days=400))  # history learned of long after: not a choice to answer now
        (due,) = ws.consent_due()
        assert (due["user_id"], due["kind"], due["overdue"]) == ("kim", "result", False)
        assert due["due_by"] == (NOW + timedelta(days=14)).isoformat()
        assert [(c["channel"], c["granted"]) for c in due["changes"]] == [("sms", False)]

        dry = ws.send_consent_notices(dry_run=True)
        assert [n["channel"] for n in dry["sent"]] == ["sms"] and ws.outbox() == []

        run = ws.send_consent_notices()
        (sent,) = run["sent"]
        assert sent["channel"] == "sms" and not run["unreachable"]
        (message,) = ws.outbox(channel="sms")
        text = message["message"]["text"]
        assert message["to"] == "+821012345678"
        assert "넛지샵" in text and "2026-11-24 문자 광고성 정보 수신 거부: 2026-11-24 처리 완료" in text
        assert "(광고)" not in text and not PROMOTIONAL.search(text)
        assert ws.consent_due() == [] and ws.send_consent_notices()["sent"] == []
        (passed,) = ws.explain(user="kim")
        assert passed["campaign"] == notices.CAMPAIGN and passed["purpose"] == "informational"

        clock.advance(days=1)
        grant(ws, "kim", "sms")  # a new change is a new notice
        assert [len(n["changes"]) for n in ws.consent_due()] == [1]


def test_consent_two_years_old_is_reconfirmed_then_not_again_for_two_years(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(SIGNED_UP)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        for user in ("kim", "lee", "park"):
            person(ws, user, email=f"{user}@example.com")
        grant(ws, "kim", "email", source="import")
        grant(ws, "kim", "sms", purpose="night", source="import")
        grant(ws, "lee", "email", source="import")
        clock.advance(days=40)
        grant(ws, "lee", "email", granted=False, source="import")  # withdrawn since: nothing to reconfirm
        clock.advance(days=200)
        grant(ws, "park", "email", source="import")  # only 19 months old on NOW

        clock.advance(seconds=(NOW - clock()).total_seconds())
        assert ws.consent_due(lead_days=10) == []  # the anniversary (2026-12-10) is 16 days away
        (due,) = ws.consent_due()
        assert (due["user_id"], due["kind"], due["due_by"]) == ("kim", "reconfirm", "2026-12-10T03:00:00+00:00")
        assert sorted((c["channel"], c["purpose"]) for c in due["changes"]) == [
            ("email", "advertising"), ("sms", "night")]

        ws.settings.public_url = "https://nudge.example.com"
        run = ws.send_consent_notices()
        assert [n["channel"] for n in run["sent"]] == ["email"]
        (mail,) = ws.outbox(channel="email")
        body = mail["message"]["text"]
        assert mail["message"]["subject"] == "[넛지샵] 광고성 정보 수신동의 현황 안내"
        assert "2024-12-10 이메일 광고성 정보 수신 동의" in body and "2024-12-10 문자 야간(21시~08시)" in body
        assert "따로 하실 일은 없습니다" in body and ws.unsubscribe_link("kim") in body and "080-123-4567" in body
        assert not PROMOTIONAL.search(body) and "(광고)" not in body
        assert ws.consent_due() == []

        clock.advance(days=365 * 2 - 40)  # park's consent has come due; kim was told on NOW
        assert [n["user_id"] for n in ws.consent_due()] == ["park"]
        clock.advance(days=20)  # two years after kim's notice, less the 30 days' lead
        assert [n["user_id"] for n in ws.consent_due()] == ["park", "kim"]


def test_the_notices_read_as_informational_to_the_purpose_rule(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOW)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        person(ws, "kim", email="kim@example.com")
        grant(ws, "kim", "email")
        grant(ws, "kim", "push", purpose="night")
        with ws.sessions() as session:
            (due,) = notices.due(session, NOW)
            reconfirm = notices.DueNotice("kim", "kim", "reconfirm", NOW, due.changes, "x")
        for notice in (due, reconfirm):
            title, text = notices.compose(notice, ws.settings, ws.settings.zone, "https://n.example/u/1")
            for channel in notices.NOTICE_CHANNELS:
                fields = notices.message_fields(channel, title, text)
                ruling = ws.check_for(channel, "kim", **fields)
                assert reasons(ruling)["purpose"] == "informational", (notice.kind, channel)


def test_someone_no_channel_reaches_stays_due_and_says_why(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOW)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        person(ws, "ghost", phone=None, plan="free")
        grant(ws, "ghost", "email", granted=False)
        run = ws.send_consent_notices()
        (missed,) = run["unreachable"]
        assert [t["channel"] for t in missed["tried"]] == ["email", "sms", "push"]
        assert {t["reason"] for t in missed["tried"]} == {"no_address"}
        assert len(ws.consent_due()) == 1


def test_two_runs_cannot_claim_the_same_notice(tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOW)
    with open_shop(tmp_path / "ws", state_url, clock) as ws:
        person(ws, "kim")
        grant(ws, "kim", "sms", granted=False)
        with ws.sessions() as session:
            (notice,) = notices.due(session, NOW)
        with ws.sessions.begin() as session:
            assert notices.claim(session, notice, NOW, "text") is not None
        with ws.sessions.begin() as session:
            assert notices.claim(session, notice, NOW, "text") is None
            # a claim whose send never finished is taken again after an hour
            assert notices.claim(session, notice, NOW + timedelta(hours=2), "text") is not None
