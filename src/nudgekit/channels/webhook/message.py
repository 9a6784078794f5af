"""A webhook: a JSON object POSTed to a customer's URL, signed so the receiver knows it came from us.

The request (docs/channels.md#webhook):

    POST <url>
    Content-Type: application/json
    Nudge-Message-Id: <message id>            the same on every retry: receivers drop repeats by it
    Nudge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

    {"id": <message id>, "profile_id": ..., "created_at": <ISO 8601>, "data": <the message's payload>}
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict

from nudgekit.channels.check import Checked, Size
from nudgekit.config import PriceSettings, WebhookSettings
from nudgekit.vocabulary import MessageChannel

PAYLOAD_BYTES = 256_000
"""Our ceiling for one request body: large enough for any message, small enough for every receiver."""
SIGNATURE_HEADER = "Nudge-Signature"
ID_HEADER = "Nudge-Message-Id"
TOLERANCE_SECONDS = 300
"""How old a signature a receiver should accept (replay protection)."""


class WebhookMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    data: dict[str, Any]
    """Any JSON object; it arrives as the request body's "data"."""


def check(message: WebhookMessage, settings: WebhookSettings, prices: PriceSettings) -> Checked:
    out = Checked(MessageChannel.WEBHOOK, None, prices.webhook)
    _check_url(out, message.url, settings)
    try:
        size = len(orjson.dumps(message.data))
    except TypeError as exc:
        out.problem("data", "not_json", f"The data cannot be written as JSON: {exc}.",
                    "data를 JSON으로 바꿀 수 없습니다.")
    else:
        out.sizes["data"] = Size(size, PAYLOAD_BYTES, "bytes")
        if size > PAYLOAD_BYTES:
            out.problem("data", "too_long", f"The data is {size:,} bytes; a webhook carries at most {PAYLOAD_BYTES:,}.",
                        f"data가 {size:,}바이트입니다. 웹훅은 {PAYLOAD_BYTES:,}바이트까지 보낼 수 있습니다.")
    if not settings.secret:
        out.problem("secret", "no_webhook_secret",
                    "Webhooks are signed: set a signing secret in NUDGE_WEBHOOK__SECRET (or [webhook] secret).",
                    "웹훅은 서명해서 보냅니다. NUDGE_WEBHOOK__SECRET(또는 [webhook] secret)에 서명 키를 설정해 주세요.")
    return out


def _check_url(out: Checked, url: str, settings: WebhookSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        out.problem("url", "bad_url", f"{url} is not a web address (https://...).",
                    f"{url}은(는) 웹 주소(https://...)가 아닙니다.")
        return
    if settings.allow_local:
        return
    if parts.scheme != "https":
        out.problem("url", "not_https", "Webhooks go only to https:// addresses (set [webhook] allow_local for "
                    "local testing).", "웹훅은 https:// 주소로만 보냅니다(로컬 테스트는 [webhook] allow_local).")
    if _is_local(parts.hostname):
        out.problem("url", "local_address",
                    f"{parts.hostname} is a local or private address; webhooks go to public hosts only.",
                    f"{parts.hostname}은(는) 내부망 주소입니다. 웹훅은 공개된 주소로만 보냅니다.")


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The Nudge-Signature header value for this body."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance: float = TOLERANCE_SECONDS) -> bool:
    """What a receiver runs: the signature matches the raw body and is recent (not a replay)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    return hmac.compare_digest(expected.encode(), fields.get("v1", "").encode())
