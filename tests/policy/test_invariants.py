"""Property tests: over random people, consent histories, time zones and send times, nothing the policy
chain lets through to a provider (the sandbox records what reached it) ever breaks the law's invariants —
no advertising without consent at that moment, none at night without night consent, none without the label
and the opt-out line, and no cap exceeded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudgekit.channels.push.message import OPTOUT_PATH
from nudgekit.channels.sms.message import OPTOUT_LINE
from nudgekit.store.state import SandboxMessage
from nudgekit.workspace import Workspace

from .helpers import open_shop, person

T0 = datetime(2026, 10, 30, 9, 0, tzinfo=UTC)  # New York leaves DST two days later
ZONES = ["Asia/Seoul", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London"]
TEXTS = ["겨울 세일 안내", "(광고)넛지샵\n세일", "[광고] 세일", "가" * 44, "주문하신 상품이 출발했습니다"]
CAP = 2


@dataclass(frozen=True)
class Op:
    minutes: int
    who: int
    kind: str  # consent | send
    channel: str
    purpose: str = "advertising"
    granted: bool = True
    ad: bool = True
    text: str = ""


ops = st.builds(
    Op, minutes=st.integers(0, 3 * 24 * 60), who=st.integers(0, 2), kind=st.sampled_from(["consent", "send", "send"]),
    channel=st.sampled_from(["sms", "push"]), purpose=st.sampled_from(["advertising", "night"]),
    granted=st.booleans(), ad=st.booleans(), text=st.sampled_from(TEXTS))
worlds = st.tuples(st.lists(st.sampled_from(ZONES), min_size=3, max_size=3), st.lists(ops, min_size=1, max_size=25))


def play(home: Path, zones: list[str], script: list[Op]) -> Workspace:
    clock = FakeClock(T0)
    ws = open_shop(home, f"sqlite:///{home.parent / (home.name + '.db')}", clock,
                   caps=[{"channel": "*", "limit": CAP, "hours": 24}])
    for i, zone in enumerate(zones):
        person(ws, f"p{i}", phone=f"010-7777-000{i}", timezone=zone,
               push_tokens=[{"token": f"{i}" * 64, "platform": "android"}])
    for op in sorted(script, key=lambda o: o.minutes):
        clock.now = T0 + timedelta(minutes=op.minutes)
        if op.kind == "consent":
            ws.set_consent(f"p{op.who}", channel=op.channel, purpose=op.purpose, granted=op.granted, source="api")
        elif op.channel == "sms":
            ws.send("sms", f"p{op.who}", text=op.text, ad=op.ad)
        else:
            ws.send("push", f"p{op.who}", title="알림", text=op.text, ad=op.ad)
    return ws


def consented(history: list[dict], channel: str, purpose: str, at: datetime) -> bool:
    state = False
    for record in history:  # in time order
        if record["channel"] == channel and record["purpose"] == purpose and \
                datetime.fromisoformat(record["at"]) <= at:
            state = record["change"] == "granted"
    return state


def check_invariants(ws: Workspace, zones: list[str]) -> int:
    """Assert the invariants over everything that reached the provider; returns how many ads did."""
    with ws.sessions() as session:
        sent = [(r.profile_id, r.channel, r.body, r.recorded_at) for r in session.query(SandboxMessage)]
    ads = 0
    for i, zone in enumerate(zones):
        history = ws.profile(f"p{i}")["consent_history"]
        mine = sorted((row for row in sent if row[0] == f"p{i}"), key=lambda row: row[3])
        ad_times = []
        for _, channel, body, at in mine:
            if not body.get("ad"):
                continue
            ads += 1
            ad_times.append(at)
            assert consented(history, channel, "advertising", at), ("no consent", channel, at)
            if not 8 <= at.astimezone(ZoneInfo(zone)).hour < 21:
                assert consented(history, channel, "night", at), ("night without consent", zone, at)
            if channel == "sms":
                assert body["text"].startswith("(광고)넛지샵")
                assert OPTOUT_LINE.search(body["text"].splitlines()[-1])
            else:
                assert body["title"].startswith("(광고)") and OPTOUT_PATH.search(body["text"])
        for j, start in enumerate(ad_times):
            assert sum(1 for t in ad_times[j:] if t < start + timedelta(hours=24)) <= CAP, "cap exceeded"
    return ads


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=worlds)
def test_nothing_that_reaches_a_provider_breaks_the_invariants(tmp_path_factory: pytest.TempPathFactory,
                                                               world: tuple[list[str], list[Op]]) -> None:
    zones, script = world
    ws = play(tmp_path_factory.mktemp("world") / "ws", zones, script)
    try:
        check_invariants(ws, zones)
    finally:
        ws.close()


def test_the_invariant_check_sees_what_was_sent(tmp_path: Path) -> None:
    """The harness is not vacuous: a scripted world sends ads (labelled) and the check counts them, and a
    message that broke an invariant would be seen."""
    script = [Op(0, 0, "consent", "sms"), Op(60, 0, "send", "sms", text="겨울 세일"),
              Op(61, 0, "send", "sms", text="두번째"), Op(62, 0, "send", "sms", text="세번째 (capped)"),
              Op(0, 1, "consent", "push"), Op(600, 1, "send", "push", text="밤 (deferred)")]
    zones = ["Asia/Seoul", "Asia/Seoul", "Asia/Seoul"]  # T0 + 600 min = 04:00 KST
    ws = play(tmp_path / "ws", zones, script)
    assert check_invariants(ws, zones) == 2
    with ws.sessions.begin() as session:  # a message sent behind the chain's back is caught
        session.add(SandboxMessage(message_id="rogue", channel="sms", type="SMS", recipient="+821077770002",
                                   profile_id="p2", body={"ad": True, "text": "세일"}, recorded_at=T0))
    with pytest.raises(AssertionError, match="no consent"):
        check_invariants(ws, zones)
    ws.close()
