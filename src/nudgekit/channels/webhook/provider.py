"""The webhook provider: POSTs signed JSON with httpx, several at once, and classifies the answer.

2xx accepted; 429 rate limited (Retry-After); 408, 425, 5xx retryable; any other status permanent (a redirect
is not followed: the receiver must give its final address). A timeout or a dropped connection is retryable:
the receiver sees the same Nudge-Message-Id on every attempt and drops repeats (at-least-once delivery, the
contract every webhook sender keeps).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import orjson

from nudgekit.channels.provider import Capabilities, Envelope, Outcome, Verdict, retry_after_seconds
from nudgekit.channels.webhook.message import ID_HEADER, SIGNATURE_HEADER, WebhookMessage, sign
from nudgekit.config import WebhookSettings
from nudgekit.vocabulary import MessageChannel

CONCURRENCY = 10
RETRYABLE_STATUS = frozenset({408, 425, 500, 502, 503, 504})


def classify(response: httpx.Response) -> Outcome:
    code = str(response.status_code)
    detail = response.text[:500]
    if response.is_success:
        return Outcome(Verdict.ACCEPTED, code, detail)
    wait = retry_after_seconds(response.headers.get("retry-after"))
    if response.status_code == 429:
        return Outcome(Verdict.RATE_LIMITED, code, detail, retry_after=wait)
    if response.status_code in RETRYABLE_STATUS or response.status_code >= 500:
        return Outcome(Verdict.RETRYABLE, code, detail, retry_after=wait)
    if response.is_redirect:
        return Outcome(Verdict.PERMANENT, code, f"redirected to {response.headers.get('location')}; "
                       "give the receiver's final address")
    return Outcome(Verdict.PERMANENT, code, detail)


class WebhookProvider:
    name = "webhook"
    capabilities = Capabilities(channels=frozenset({MessageChannel.WEBHOOK}), batch_size=50, idempotency=True)

    def __init__(self, settings: WebhookSettings, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not settings.secret:
            raise ValueError("webhook: no signing secret; set NUDGE_WEBHOOK__SECRET")
        self.settings = settings
        self.secret = settings.secret
        self.clock = clock
        self.client = httpx.AsyncClient(timeout=settings.timeout_seconds, follow_redirects=False,
                                        transport=transport, headers={"User-Agent": "nudgekit-webhook/1"})
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(e) for e in batch)))

    async def _one(self, envelope: Envelope) -> Outcome:
        message = envelope.message
        assert isinstance(message, WebhookMessage)
        now = self.clock()
        body = orjson.dumps({"id": envelope.message_id, "profile_id": envelope.profile_id,
                             "created_at": now.isoformat(), "data": message.data})
        headers = {"Content-Type": "application/json", ID_HEADER: envelope.message_id,
                   SIGNATURE_HEADER: sign(self.secret, body, int(now.timestamp()))}
        async with self._gate:
            try:
                response = await self.client.post(message.url, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                return Outcome(Verdict.RETRYABLE, None, f"no answer within {self.settings.timeout_seconds:g} s "
                               f"({type(exc).__name__})")
            except httpx.HTTPError as exc:
                return Outcome(Verdict.RETRYABLE, None, f"{type(exc).__name__}: {exc}")
        return classify(response)

    async def aclose(self) -> None:
        await self.client.aclose()
