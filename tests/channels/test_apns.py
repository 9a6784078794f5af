"""App push straight to Apple: HTTP/2 over TLS to a real fake APNs that verifies the ES256 provider token,
the headers and the payload; 410 marks the token invalid; the provider token is reused, not remade per send."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FakeClock
from cryptography.hazmat.primitives.asymmetric import ec

from nudgekit.channels.provider import Verdict
from nudgekit.channels.push.apns import apns_id, is_apns_token
from nudgekit.testing.apns import FakeApns, reason
from nudgekit.testing.fcm import FakeFcm
from nudgekit.testing.http import Answer
from nudgekit.workspace import Workspace


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 24, 3, 0, tzinfo=UTC))


@pytest.fixture
def apns(clock: FakeClock) -> Iterator[FakeApns]:
    with FakeApns(clock=clock) as server:
        yield server


def settings(server: FakeApns, key_file: Path) -> dict:
    return {"key_file": str(key_file), "key_id": server.key_id, "team_id": server.team_id,
            "bundle_id": server.bundle_id, "base_url": server.url, "ca_file": str(server.ca_file),
            "timeout_seconds": 2.0}


@pytest.fixture
def ws(tmp_path: Path, apns: FakeApns, clock: FakeClock) -> Iterator[Workspace]:
    apns.key_file(tmp_path / "AuthKey.p8")
    workspace, _ = Workspace.init(tmp_path / "ws", clock=clock, providers={"push": "apns"},
                                  apns=settings(apns, tmp_path / "AuthKey.p8"))
    yield workspace
    workspace.close()


def test_an_alert_reaches_apns_over_http2_with_a_verified_provider_token(ws: Workspace, apns: FakeApns) -> None:
    token = apns.device()
    result = ws.send_now("push", token, message_id="m-1", title="주문 완료", text="곧 출발해요", badge=2,
                         link="myapp://orders/1", data={"order": "1"}, collapse_key="order-1", ttl_seconds=3600)
    assert result.outcome.verdict == Verdict.ACCEPTED
    assert result.outcome.provider_message_id == apns_id("m-1")
    [delivered] = apns.delivered
    assert delivered["token"] == token
    assert delivered["payload"] == {"aps": {"alert": {"title": "주문 완료", "body": "곧 출발해요"}, "sound": "default",
                                            "badge": 2}, "order": "1", "link": "myapp://orders/1"}
    headers = delivered["headers"]
    assert (headers["apns-topic"], headers["apns-push-type"], headers["apns-priority"]) == ("com.nudge.app", "alert",
                                                                                            "10")
    assert headers["apns-collapse-id"] == "order-1"
    assert int(headers["apns-expiration"]) == int(datetime(2026, 11, 24, 4, 0, tzinfo=UTC).timestamp())


def test_a_silent_push_is_a_background_push_at_priority_5(ws: Workspace, apns: FakeApns) -> None:
    token = apns.device()
    assert ws.send_now("push", token, silent=True).outcome.sent
    headers = apns.delivered[0]["headers"]
    assert (headers["apns-push-type"], headers["apns-priority"]) == ("background", "5")
    assert apns.delivered[0]["payload"] == {"aps": {"content-available": 1}}


def test_an_uninstalled_app_answers_410_and_the_token_is_marked_invalid(ws: Workspace, apns: FakeApns) -> None:
    token = apns.device()
    ws.identify("u1", {"push_tokens": [{"token": token, "platform": "ios"}]})
    apns.uninstall(token)
    first = ws.send_now("push", token, profile_id="u1", silent=True)
    assert (first.outcome.verdict, first.outcome.code) == (Verdict.INVALID_RECIPIENT, "Unregistered")
    assert [t["status"] for t in ws.profile("u1")["push_tokens"]] == ["invalid"]
    again = ws.send_now("push", token, profile_id="u1", silent=True)
    assert again.outcome is None and "invalid" in again.note
    assert len(apns.requests) == 1


def test_a_token_registered_again_after_apple_saw_it_die_stays_valid(ws: Workspace, apns: FakeApns,
                                                                    clock: FakeClock) -> None:
    token = apns.device()
    ws.identify("u1", {"push_tokens": [{"token": token, "platform": "ios"}]})
    apns.uninstall(token)  # Apple's 410 timestamp: now
    clock.advance(hours=1)
    ws.identify("u1", {"push_tokens": [{"token": token, "platform": "ios"}]})  # the app registered it again
    stale = ws.send_now("push", token, profile_id="u1", silent=True)
    assert stale.outcome.verdict == Verdict.INVALID_RECIPIENT
    assert stale.outcome.since == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    assert [t["status"] for t in ws.profile("u1")["push_tokens"]] == ["valid"]
    clock.advance(hours=1)
    apns.uninstall(token)  # dead again, after the registration: now it counts
    assert ws.send_now("push", token, profile_id="u1", silent=True).outcome.since > stale.outcome.since
    assert [t["status"] for t in ws.profile("u1")["push_tokens"]] == ["invalid"]


def test_one_provider_token_serves_many_sends_and_is_renewed_after_50_minutes(ws: Workspace, apns: FakeApns,
                                                                              clock: FakeClock) -> None:
    token = apns.device()
    for i in range(3):
        assert ws.send_now("push", token, text=f"{i}").outcome.sent
    assert len(apns.provider_tokens) == 1
    clock.advance(minutes=30)
    assert ws.send_now("push", token, text="later").outcome.sent
    assert len(apns.provider_tokens) == 1
    clock.advance(minutes=25)
    assert ws.send_now("push", token, text="after 55 minutes").outcome.sent
    assert len(apns.provider_tokens) == 2


def test_the_provider_token_outlives_the_process_in_the_workspace_cache(ws: Workspace, apns: FakeApns,
                                                                        tmp_path: Path) -> None:
    from nudgekit.channels.push import apns as module

    token = apns.device()
    assert ws.send_now("push", token, text="1").outcome.sent
    module._TOKENS.clear()
    assert (tmp_path / "ws" / ".cache" / "apns-token.json").stat().st_mode & 0o077 == 0
    assert ws.send_now("push", token, text="2").outcome.sent
    assert len(apns.provider_tokens) == 1


def test_an_expired_provider_token_is_remade_once(ws: Workspace, apns: FakeApns, clock: FakeClock) -> None:
    token = apns.device()
    assert ws.send_now("push", token, text="1").outcome.sent
    clock.advance(minutes=21)
    apns.script.append(reason(403, "ExpiredProviderToken"))
    assert ws.send_now("push", token, text="2").outcome.sent
    assert len(apns.provider_tokens) == 2


def test_a_fresh_token_called_expired_blames_the_clock(ws: Workspace, apns: FakeApns) -> None:
    apns.script.append(reason(403, "ExpiredProviderToken"))
    outcome = ws.send_now("push", apns.device(), text="x").outcome
    assert outcome.verdict == Verdict.PERMANENT and "clock" in outcome.detail


def test_a_key_apple_does_not_know_is_a_configuration_error(ws: Workspace, apns: FakeApns, tmp_path: Path) -> None:
    apns.key_file(tmp_path / "AuthKey.p8", ec.generate_private_key(ec.SECP256R1()))
    outcome = ws.send_now("push", apns.device(), text="x").outcome
    assert (outcome.verdict, outcome.code) == (Verdict.PERMANENT, "InvalidProviderToken")
    assert "key_id" in outcome.detail


@pytest.mark.parametrize(("answer", "verdict", "retry_after"), [
    (reason(429, "TooManyRequests"), Verdict.RATE_LIMITED, None),
    (Answer(429, {"reason": "TooManyRequests"}, {"Retry-After": "30"}), Verdict.RATE_LIMITED, 30.0),
    (reason(429, "TooManyProviderTokenUpdates"), Verdict.RATE_LIMITED, 1200.0),
    (reason(503, "ServiceUnavailable"), Verdict.RETRYABLE, None),
    (reason(500, "InternalServerError"), Verdict.RETRYABLE, None),
    (reason(503, "Shutdown"), Verdict.RETRYABLE, None),
    (reason(400, "BadDeviceToken"), Verdict.PERMANENT, None),
    (reason(400, "DeviceTokenNotForTopic"), Verdict.PERMANENT, None),
    (reason(410, "ExpiredToken"), Verdict.INVALID_RECIPIENT, None),
    (reason(413, "PayloadTooLarge"), Verdict.PERMANENT, None),
    (Answer(502, b"<html>Bad Gateway</html>"), Verdict.UNCERTAIN, None),
    (Answer(403, b"<html>Forbidden</html>"), Verdict.PERMANENT, None),
    (Answer(200, b"", delay=3.0), Verdict.UNCERTAIN, None),
])
def test_apns_answers_are_classified(ws: Workspace, apns: FakeApns, answer: Answer, verdict: Verdict,
                                     retry_after: float | None) -> None:
    token = apns.device()
    ws.identify("u1", {"push_tokens": [{"token": token, "platform": "ios"}]})
    apns.script.append(answer)
    outcome = ws.send_now("push", token, profile_id="u1", text="안녕").outcome
    assert (outcome.verdict, outcome.retry_after) == (verdict, retry_after)
    expected = "invalid" if verdict == Verdict.INVALID_RECIPIENT else "valid"
    assert [t["status"] for t in ws.profile("u1")["push_tokens"]] == [expected]


def test_a_sandbox_token_sent_to_production_does_not_wipe_the_token(ws: Workspace, apns: FakeApns) -> None:
    """BadDeviceToken is also what a development build's token gets from production: permanent, with the hint,
    and the token stays valid."""
    token = "ab" * 32
    ws.identify("u1", {"push_tokens": [{"token": token, "platform": "ios"}]})
    outcome = ws.send_now("push", token, profile_id="u1", text="x").outcome
    assert (outcome.verdict, outcome.code) == (Verdict.PERMANENT, "BadDeviceToken") and "environment" in outcome.detail
    assert [t["status"] for t in ws.profile("u1")["push_tokens"]] == ["valid"]


def test_apns_settings_that_are_missing_are_named(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", providers={"push": "apns"})[0] as ws:
        with pytest.raises(ValueError, match="key_file, key_id, team_id, bundle_id"):
            ws.send_now("push", "ab" * 32, text="x")
    (tmp_path / "ws" / "cert.pem").write_text("not a key")
    with Workspace.open(tmp_path / "ws", providers={"push": "apns"},
                        apns={"key_file": "cert.pem", "key_id": "KEY1234567", "team_id": "TEAM123456",
                              "bundle_id": "x"}) as ws:
        with pytest.raises(ValueError, match="not a .p8 key"):
            ws.send_now("push", "ab" * 32, text="x")
    with pytest.raises(ValueError, match="key_id"):
        Workspace.open(tmp_path / "ws", apns={"key_id": "short"})


def test_apns_tokens_can_go_to_apple_while_firebase_tokens_go_to_fcm(tmp_path: Path, apns: FakeApns,
                                                                     clock: FakeClock) -> None:
    assert is_apns_token("ab" * 32) and not is_apns_token("dGVzd:APA91bH" + "x" * 100) and not is_apns_token("ab")
    apns.key_file(tmp_path / "AuthKey.p8")
    with FakeFcm() as fcm:
        fcm.service_account(tmp_path / "key.json")
        with Workspace.init(tmp_path / "ws", clock=clock, providers={"push": "fcm", "push_apns": "apns"},
                            apns=settings(apns, tmp_path / "AuthKey.p8"),
                            fcm={"service_account_file": str(tmp_path / "key.json"), "base_url": fcm.url})[0] as ws:
            assert ws.send_now("push", apns.device(), text="iOS").outcome.sent
            assert ws.send_now("push", "fcm-token:APA91b", text="Android").outcome.sent
        assert [m["notification"]["body"] for m in fcm.sent] == ["Android"]
    assert [m["payload"]["aps"]["alert"]["body"] for m in apns.delivered] == ["iOS"]


def test_a_batch_whose_token_apple_calls_expired_makes_one_new_token(tmp_path: Path, apns: FakeApns,
                                                                     clock: FakeClock) -> None:
    """Every stream in flight carries the old token; the first to hear "expired" makes a new one and the others
    use it instead of blaming the clock."""
    import asyncio

    from nudgekit.channels.provider import Envelope
    from nudgekit.channels.push.apns import ApnsProvider
    from nudgekit.channels.push.message import PushMessage
    from nudgekit.config import ApnsSettings
    from nudgekit.vocabulary import MessageChannel

    apns.key_file(tmp_path / "AuthKey.p8")
    config = ApnsSettings.model_validate({**settings(apns, tmp_path / "AuthKey.p8"), "key_id": "KEYBATCH01"})
    apns.key_id = "KEYBATCH01"
    tokens = [apns.device() for _ in range(5)]

    async def run() -> list:
        provider = ApnsProvider(config, clock=clock)
        try:
            first = await provider.send([Envelope("warm", MessageChannel.PUSH, tokens[0], PushMessage(text="0"))])
            clock.advance(minutes=30)
            apns.expired_before = clock().timestamp()
            envelopes = [Envelope(f"m{i}", MessageChannel.PUSH, t, PushMessage(text=str(i))) for i, t in enumerate(tokens)]
            return first + await provider.send(envelopes)
        finally:
            await provider.aclose()

    outcomes = asyncio.run(run())
    assert [o.verdict for o in outcomes] == [Verdict.ACCEPTED] * 6
    assert len(apns.provider_tokens) == 2


def test_what_is_not_an_apns_token_never_reaches_apple(ws: Workspace, apns: FakeApns) -> None:
    for token in ("ab" * 31 + "/../x", "fcm-token:APA91b", "ab" * 32 + "%0a"):
        outcome = ws.send_now("push", token, text="x").outcome
        assert (outcome.verdict, outcome.code) == (Verdict.PERMANENT, "not_an_apns_token"), token
    assert not is_apns_token("ab" * 32 + "\n")
    assert apns.requests == []
    with pytest.raises(ValueError, match="64 bytes"):
        ws.send_now("push", apns.device(), text="x", collapse_key="가" * 22)
