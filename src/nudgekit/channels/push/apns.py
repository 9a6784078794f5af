"""App push straight to Apple (APNs) over HTTP/2: `POST {base}/3/device/{token}`, one notification per
stream, many streams at once on one connection; authorised by a provider token — a JWT signed ES256 with the
.p8 key from the Apple developer account (header `kid` = key id, claims `iss` = team id and `iat`).

Apple refuses a provider token older than an hour and one renewed more often than every 20 minutes
(429 TooManyProviderTokenUpdates), so one token is made and reused for 50 minutes — kept in the process and,
when the workspace gives a cache file, on disk, so test sends from separate `nudge` commands reuse it too.

Answers (CHANNEL_RULES E, developer.apple.com "Handling notification responses from APNs"):
410 Unregistered / ExpiredToken -> the token is dead (invalid recipient, the uninstall signal);
400 BadDeviceToken / DeviceTokenNotForTopic -> permanent, not remembered: they also come from sending
sandbox tokens to production or from a wrong bundle id, which must not wipe every token;
403 ExpiredProviderToken -> one new token and one more try, unless ours is fresh (then the clock is wrong);
403 InvalidProviderToken and other 4xx -> permanent (configuration); 429 -> rate limited;
500 / 503 (InternalServerError, ServiceUnavailable, Shutdown) -> retryable: APNs took nothing; any other 5xx
comes from something between us and Apple (a proxy's 502 / 504) and may have gone through -> uncertain.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import orjson

from nudgekit.channels.provider import Capabilities, Envelope, Outcome, Verdict, failed_request, retry_after_seconds
from nudgekit.channels.push.message import PushMessage, apns_expiration, apns_payload
from nudgekit.config import ApnsSettings
from nudgekit.vocabulary import MessageChannel

HOSTS = {"production": "https://api.push.apple.com", "sandbox": "https://api.sandbox.push.apple.com"}
TOKEN_REUSE_SECONDS = 50 * 60
"""Renew between Apple's 20-minute floor and its 60-minute ceiling."""
TOKEN_FLOOR_SECONDS = 20 * 60
CONCURRENCY = 100
"""Streams in flight on the connection (APNs advertises its own maximum, typically 1,000)."""
DEAD_TOKEN = frozenset({"Unregistered", "ExpiredToken"})
RETRYABLE = frozenset({"InternalServerError", "ServiceUnavailable", "Shutdown"})
APNS_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2}){32,100}")
"""An APNs device token as an app receives it (hex, 32 bytes today; Apple says it may grow). Firebase
registration tokens look nothing like it (they carry a colon and base64 characters)."""
_TOKENS: dict[str, tuple[str, float]] = {}
_TOKEN_LOCK = threading.Lock()
"""Provider tokens made in this process, by team and key id."""
NAMESPACE = uuid.UUID("6f0c3c8e-6c1e-4b57-9a51-5d4c2f1f0a7e")


class ApnsConfigError(ValueError):
    pass


def is_apns_token(token: str) -> bool:
    return APNS_TOKEN.fullmatch(token) is not None


def apns_id(message_id: str) -> str:
    """The `apns-id` header: a UUID fixed by our message id, so APNs' answers and logs name our message."""
    return str(uuid.uuid5(NAMESPACE, message_id))


class ApnsProvider:
    name = "apns"
    capabilities = Capabilities(channels=frozenset({MessageChannel.PUSH}), batch_size=1000)

    def __init__(self, settings: ApnsSettings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 token_cache: Path | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        missing = [k for k in ("key_file", "key_id", "team_id", "bundle_id") if not getattr(settings, k)]
        if missing:
            raise ApnsConfigError(f"apns: set [apns] {', '.join(missing)} (Apple developer account > Keys; the "
                                  "bundle id is the app's)")
        assert settings.key_file is not None
        try:
            self.key = settings.key_file.read_text()
        except OSError as exc:
            raise ApnsConfigError(f"apns: cannot read the key file {settings.key_file}: {exc}") from None
        if "PRIVATE KEY" not in self.key:
            raise ApnsConfigError(f"apns: {settings.key_file} is not a .p8 key (download it again from Apple "
                                  "developer account > Certificates, Identifiers & Profiles > Keys)")
        self.settings = settings
        self.base_url = (settings.base_url or HOSTS[settings.environment]).rstrip("/")
        self.clock = clock
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            verify = ssl.create_default_context()
            verify.load_verify_locations(cafile=str(settings.ca_file))
        self.client = httpx.AsyncClient(http1=False, http2=True, verify=verify, transport=transport,
                                        timeout=settings.timeout_seconds)
        self.token_cache = token_cache
        self._identity = f"{settings.team_id}/{settings.key_id}/{hashlib.sha256(self.key.encode()).hexdigest()[:16]}"
        self._token: tuple[str, float] | None = _TOKENS.get(self._identity) or self._cached()
        self._gate = asyncio.Semaphore(CONCURRENCY)

    def _provider_token(self, *, expired: str | None = None) -> tuple[str, float]:
        """The token to send with, and when it was made. `expired` is one APNs called expired: it is replaced,
        unless another request (or process) has replaced it already — then that newer one is used."""
        with _TOKEN_LOCK:
            now = self.clock().timestamp()
            for read in (lambda: (self._token, _TOKENS.get(self._identity)), lambda: (self._cached(),)):
                # the cache file is read only when this process holds no usable token
                newest = max((t for t in read() if t is not None), key=lambda t: t[1], default=None)
                if newest is not None and newest[0] != expired and 0 <= now - newest[1] < TOKEN_REUSE_SECONDS:
                    self._token = newest
                    return newest
            try:
                signed = jwt.encode({"iss": self.settings.team_id, "iat": int(now)}, self.key, algorithm="ES256",
                                    headers={"kid": self.settings.key_id})
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise ApnsConfigError(f"apns: cannot sign with {self.settings.key_file}: {exc}") from None
            self._token = (signed, now)
            self._keep()
            return self._token

    def _cached(self) -> tuple[str, float] | None:
        if self.token_cache is None:
            return None
        try:
            kept = orjson.loads(self.token_cache.read_bytes())
            return (str(kept["token"]), float(kept["made"])) if kept.get("identity") == self._identity else None
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def _keep(self) -> None:
        assert self._token is not None
        _TOKENS[self._identity] = self._token
        if self.token_cache is None:
            return
        try:
            self.token_cache.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.token_cache.with_suffix(f".{os.getpid()}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(orjson.dumps({"identity": self._identity, "token": self._token[0], "made": self._token[1]}))
            temporary.replace(self.token_cache)
        except OSError:
            pass  # a cache we cannot write costs a new token next time, nothing more

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(e) for e in batch)))

    async def _one(self, envelope: Envelope) -> Outcome:
        message = envelope.message
        assert isinstance(message, PushMessage)
        headers = {"apns-topic": str(self.settings.bundle_id), "apns-id": apns_id(envelope.message_id),
                   "apns-push-type": "background" if message.silent else "alert",
                   "apns-priority": "5" if message.silent else "10"}
        if message.ttl_seconds is not None:
            headers["apns-expiration"] = apns_expiration(message.ttl_seconds, self.clock().timestamp())
        if message.collapse_key:
            headers["apns-collapse-id"] = message.collapse_key
        if not is_apns_token(envelope.to):
            return Outcome(Verdict.PERMANENT, "not_an_apns_token", "this is not an APNs device token (hex): a "
                           "Firebase token goes through fcm ([providers] push_apns sends only APNs tokens to Apple)")
        url = f"{self.base_url}/3/device/{envelope.to}"
        body = orjson.dumps(apns_payload(message))
        async with self._gate:
            expired: str | None = None
            for last in (False, True):
                try:
                    token, made = self._provider_token(expired=expired)
                except ApnsConfigError as exc:
                    return Outcome(Verdict.PERMANENT, "provider_token", str(exc))
                try:
                    response = await self.client.post(url, content=body,
                                                      headers={**headers, "authorization": f"bearer {token}"})
                except httpx.HTTPError as exc:
                    return failed_request("apns", exc)
                reason = _reason_of(response)
                if response.status_code != 403 or reason != "ExpiredProviderToken" or last:
                    break
                if self._token is not None and self._token[0] == token and \
                        self.clock().timestamp() - made < TOKEN_FLOOR_SECONDS:
                    return Outcome(Verdict.PERMANENT, reason, "APNs says our provider token expired although it "
                                   "was made minutes ago: check this machine's clock")
                expired = token
        return classify(response, reason)

    async def aclose(self) -> None:
        await self.client.aclose()


def classify(response: httpx.Response, reason: str) -> Outcome:
    status = response.status_code
    if status == 200:
        return Outcome(Verdict.ACCEPTED, "200", "", provider_message_id=response.headers.get("apns-id"))
    detail = _detail(response, reason)
    if status == 410 or reason in DEAD_TOKEN:
        return Outcome(Verdict.INVALID_RECIPIENT, reason, detail, since=_unregistered_at(response))
    if status == 429:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        if reason == "TooManyProviderTokenUpdates":
            wait = wait or float(TOKEN_FLOOR_SECONDS)
        return Outcome(Verdict.RATE_LIMITED, reason, detail, retry_after=wait)
    if status in (500, 503) or reason in RETRYABLE:
        return Outcome(Verdict.RETRYABLE, reason, detail, retry_after=retry_after_seconds(response.headers.get(
            "retry-after")))
    if status >= 500:
        return Outcome(Verdict.UNCERTAIN, reason, detail)
    return Outcome(Verdict.PERMANENT, reason, detail)


def _reason_of(response: httpx.Response) -> str:
    """APNs' `reason`, or the HTTP status when the body is not APNs' JSON (a proxy's error page)."""
    if response.status_code == 200:
        return ""
    try:
        reason = orjson.loads(response.content).get("reason")
    except (orjson.JSONDecodeError, AttributeError):
        reason = None
    return reason if isinstance(reason, str) and reason else str(response.status_code)


def _unregistered_at(response: httpx.Response) -> datetime | None:
    """A 410's `timestamp`: when Apple last saw the token stop being valid (milliseconds since the epoch)."""
    try:
        value = response.json().get("timestamp")
        return datetime.fromtimestamp(int(value) / 1000, UTC) if value is not None else None
    except (ValueError, AttributeError, TypeError, OverflowError, OSError):
        return None


def _detail(response: httpx.Response, reason: str) -> str:
    hints = {"BadDeviceToken": "the token is not valid here: a development build's token sent to production "
                               "(or the reverse), see [apns] environment",
             "DeviceTokenNotForTopic": "the token belongs to another app: check [apns] bundle_id",
             "InvalidProviderToken": "Apple refused our provider token: check [apns] key_id, team_id and the key",
             "TopicDisallowed": "this key may not push to [apns] bundle_id",
             "PayloadTooLarge": "the payload is over 4 KB"}
    if reason in hints:
        return hints[reason]
    if reason == str(response.status_code):
        return response.text[:300]
    return reason

