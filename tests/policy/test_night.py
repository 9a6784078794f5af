"""The night rule at its edges: 20:59:59 and 08:00:00 go, 21:00:00 and 07:59:59 wait — in Seoul, in a zone
with daylight saving time and on both sides of the date line; deferrals land on the recipient's 08:00."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FakeClock

from nudgekit.policy.hours import Window, next_local, parse_window
from nudgekit.workspace import Workspace

from .helpers import NOON_KST, open_shop, person, reasons

ZONES = ["Asia/Seoul", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
EDGES = [(time(20, 59, 59), "send"), (time(21, 0, 0), "defer"), (time(7, 59, 59), "defer"), (time(8, 0, 0), "send")]


@pytest.fixture
def shop(tmp_path: Path, state_url: str) -> Workspace:
    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST))
    for zone in ZONES:
        person(ws, zone, timezone=zone, consent=("sms", "push", "email"))
        person(ws, f"{zone}+night", timezone=zone, consent=("sms",), night=("sms",))
    yield ws
    ws.close()


@pytest.mark.parametrize("zone", ZONES)
def test_the_edges_of_the_night_in_the_recipients_own_zone(shop: Workspace, zone: str) -> None:
    for day in (datetime(2026, 3, 7), datetime(2026, 11, 1), datetime(2026, 12, 31)):  # around DST changes too
        for clock, expected in EDGES:
            at = datetime.combine(day.date(), clock, tzinfo=ZoneInfo(zone))
            ruling = shop.check_for("sms", zone, text="세일", ad=True, at=at)
            assert ruling.action == expected, (zone, at)
            if expected == "defer":
                local = ruling.until.astimezone(ZoneInfo(zone))
                assert (local.hour, local.minute, local.second) == (8, 0, 0) and ruling.until > at
                assert (ruling.until - at).total_seconds() <= 11 * 3600 + 1
            with_night = shop.check_for("sms", f"{zone}+night", text="세일", ad=True, at=at)
            assert with_night.sends
            if expected == "defer":
                assert reasons(with_night)["night"] == "night_consent"


def test_the_deferral_lands_on_local_0800_across_the_end_of_daylight_saving_time(shop: Workspace) -> None:
    # New York leaves DST at 02:00 on 2026-11-01: 08:00 that morning is 13:00 UTC, not 12:00
    at = datetime(2026, 10, 31, 22, 30, tzinfo=ZoneInfo("America/New_York"))
    ruling = shop.check_for("sms", "America/New_York", text="세일", ad=True, at=at)
    assert ruling.until == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_email_is_exempt_and_informational_messages_go_at_any_hour(shop: Workspace) -> None:
    at = datetime(2026, 11, 24, 23, 30, tzinfo=ZoneInfo("Asia/Seoul"))
    shop.identify("Asia/Seoul", {"email": "night@example.com"})
    email = shop.check_for("email", "Asia/Seoul", subject="세일", text="본문", ad=True,
                           unsubscribe_url="https://shop.example/u/1", at=at)
    assert email.sends
    assert shop.check_for("sms", "Asia/Seoul", text="주문 출발", at=at).sends


def test_a_campaign_may_drop_instead_of_waiting(shop: Workspace) -> None:
    at = datetime(2026, 11, 24, 23, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    ruling = shop.check_for("sms", "Asia/Seoul", text="세일", ad=True, at=at, night="drop")
    assert (ruling.action, ruling.reason) == ("skip", "night_dropped")


def test_us_recipients_get_the_tcpa_hours_and_night_consent_does_not_lift_them(shop: Workspace) -> None:
    person(shop, "us", phone="+1 212 555 0100", consent=("push",), night=("push",),
           push_tokens=[{"token": "b" * 64, "platform": "ios"}])
    at = datetime(2026, 11, 24, 7, 30, tzinfo=ZoneInfo("America/New_York"))  # 21:30 in Seoul
    ruling = shop.check_for("push", "us", title="Sale", text="Today only", ad=True, at=at)
    assert ruling.action == "defer" and "TCPA" in ruling.decisions[6].en
    assert ruling.until == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 08:00 New York
    # the phone number tells the zone when the profile does not
    assert "America/New_York" in ruling.decisions[6].en
    # text messages go to Korean mobiles only: a US number is not an address for them
    assert shop.check_for("sms", "us", text="Your order shipped", at=at).reason == "no_address"


def test_kakao_advertising_hours_apply_on_top_whatever_the_consent(shop: Workspace) -> None:
    person(shop, "k", consent=("kakao", "sms"), night=("kakao",))
    at = datetime(2026, 11, 24, 20, 50, tzinfo=ZoneInfo("Asia/Seoul"))
    ruling = shop.check_for("brand_message", "k", text="세일", at=at)
    assert (ruling.action, ruling.reason) == ("defer", "kakao_ad_hours")
    assert ruling.until == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # 08:00 KST
    assert shop.check_for("brand_message", "k", text="세일",
                          at=datetime(2026, 11, 24, 20, 49, 59, tzinfo=ZoneInfo("Asia/Seoul"))).sends


@pytest.mark.parametrize(("spelled", "start", "end"), [("21:00-08:00", time(21), time(8)),
                                                      ("9:30 - 18:00", time(9, 30), time(18)),
                                                      ("22:00-24:00", time(22), time(0))])
def test_windows_are_read_as_written(spelled: str, start: time, end: time) -> None:
    assert parse_window(spelled) == Window(start, end)


@pytest.mark.parametrize("bad", ["21-08", "25:00-08:00", "08:00-08:00", "evening", "21:00-08:60"])
def test_bad_windows_are_refused_in_words(bad: str) -> None:
    with pytest.raises(ValueError, match="HH:MM|hours|same time"):
        parse_window(bad)


def test_next_local_skips_a_time_daylight_saving_leaves_out() -> None:
    zone = ZoneInfo("America/New_York")  # 2026-03-08 02:30 does not exist there
    start = datetime(2026, 3, 8, 1, 0, tzinfo=zone)
    assert next_local(start, zone, time(2, 30)).astimezone(zone).date().isoformat() == "2026-03-09"
