"""Webhooks: signed POSTs a receiver can verify, sent to a real HTTP server; every answer classified."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nudgekit.channels.provider import Verdict, retry_after_seconds
from nudgekit.channels.webhook.message import WebhookMessage, check, sign, verify
from nudgekit.config import PriceSettings, WebhookSettings
from nudgekit.testing.http import Answer
from nudgekit.testing.webhook import FakeWebhookReceiver
from nudgekit.workspace import Workspace

SECRET = "whsec_test_7f3a"


def codes(url: str, settings: WebhookSettings | None = None, data: dict | None = None) -> list[str]:
    settings = settings or WebhookSettings(secret=SECRET)
    return [p.code for p in check(WebhookMessage(url=url, data=data or {"a": 1}), settings, PriceSettings()).problems]


def test_only_https_to_public_hosts_unless_local_testing_is_allowed() -> None:
    assert codes("https://hooks.example.com/nudge") == []
    assert codes("http://hooks.example.com/nudge") == ["not_https"]
    assert codes("https://127.0.0.1/x") == ["local_address"]
    assert codes("https://169.254.169.254/latest/meta-data") == ["local_address"]
    assert codes("https://10.0.0.7/x") == ["local_address"]
    assert codes("https://[::1]/x") == ["local_address"]
    assert codes("https://localhost/x") == ["local_address"]
    assert codes("ftp://hooks.example.com") == ["bad_url"]
    assert codes("http://127.0.0.1:9/x", WebhookSettings(secret=SECRET, allow_local=True)) == []
    assert codes("https://hooks.example.com", WebhookSettings()) == ["no_webhook_secret"]
    assert codes("https://hooks.example.com", data={"x": "가" * 90_000}) == ["too_long"]


def test_a_signature_verifies_only_for_the_same_body_secret_and_a_recent_time() -> None:
    body = b'{"id":"m1","data":{"a":1}}'
    header = sign(SECRET, body, 1_800_000_000)
    assert verify(SECRET, body, header, now=1_800_000_100)
    assert not verify(SECRET, body + b" ", header, now=1_800_000_100)
    assert not verify("other", body, header, now=1_800_000_100)
    assert not verify(SECRET, body, header, now=1_800_000_400)  # older than five minutes: a replay
    assert not verify(SECRET, body, "garbage", now=1_800_000_100)
    assert not verify(SECRET, body, "t=1800000000,v1=한글", now=1_800_000_100)


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver(SECRET) as server:
        yield server


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace, _ = Workspace.init(tmp_path / "ws", providers={"webhook": "webhook"},
                                  webhook={"secret": SECRET, "allow_local": True, "timeout_seconds": 1})
    yield workspace
    workspace.close()


def test_the_receiver_verifies_the_signature_and_gets_the_message_id(ws: Workspace,
                                                                    receiver: FakeWebhookReceiver) -> None:
    result = ws.send_now("webhook", receiver.url + "/hook", message_id="m-1", profile_id="u1",
                         url=receiver.url + "/hook", data={"event": "cart_abandoned", "total": 39000})
    assert result.outcome.verdict == Verdict.ACCEPTED
    (request,) = receiver.requests
    assert receiver.verified == [True] and request.path == "/hook" and request.method == "POST"
    assert request.headers["nudge-message-id"] == "m-1"
    sent = request.json()
    assert sent["id"] == "m-1" and sent["profile_id"] == "u1"
    assert sent["data"] == {"event": "cart_abandoned", "total": 39000}
    assert abs(int(request.headers["nudge-signature"].split(",")[0][2:]) - time.time()) < 60


@pytest.mark.parametrize(("answer", "verdict", "retry_after"), [
    (Answer(429, {"error": "slow down"}, {"Retry-After": "30"}), Verdict.RATE_LIMITED, 30.0),
    (Answer(503, b"maintenance", {"Retry-After": "5"}), Verdict.RETRYABLE, 5.0),
    (Answer(500, b"boom"), Verdict.RETRYABLE, None),
    (Answer(408, b""), Verdict.RETRYABLE, None),
    (Answer(400, {"error": "bad"}), Verdict.PERMANENT, None),
    (Answer(410, b"gone"), Verdict.PERMANENT, None),
    (Answer(301, b"", {"Location": "https://elsewhere.example/"}), Verdict.PERMANENT, None),
    (Answer(200, b"", delay=2.0), Verdict.RETRYABLE, None),
])
def test_answers_are_classified(ws: Workspace, receiver: FakeWebhookReceiver, answer: Answer, verdict: Verdict,
                                retry_after: float | None) -> None:
    receiver.script.append(answer)
    outcome = ws.send_now("webhook", receiver.url, url=receiver.url, data={"a": 1}).outcome
    assert (outcome.verdict, outcome.retry_after) == (verdict, retry_after)
    if answer.status == 301:
        assert "elsewhere.example" in outcome.detail


def test_nothing_listening_is_retryable(ws: Workspace) -> None:
    receiver = FakeWebhookReceiver(SECRET).start()
    url = receiver.url
    receiver.stop()
    outcome = ws.send_now("webhook", url, url=url, data={"a": 1}).outcome
    assert outcome.verdict == Verdict.RETRYABLE
