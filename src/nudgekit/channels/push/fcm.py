"""App push through FCM HTTP v1: `POST {base}/v1/projects/{project}/messages:send`, one message per request
(v1 has no batch call), several at once; authorised by an OAuth2 access token the service account obtains
with a signed JWT (RFC 7523) and reuses until shortly before it expires.

Answers (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode, CHANNEL_RULES E): UNREGISTERED (404) and
SENDER_ID_MISMATCH (403) mean the token is dead -> invalid recipient; QUOTA_EXCEEDED (429) -> rate limited
(Retry-After, else 60 s); UNAVAILABLE / INTERNAL (503 / 500) -> retryable; THIRD_PARTY_AUTH_ERROR, a refused
service account and INVALID_ARGUMENT -> permanent. A 401 on a token we thought valid is answered by getting a
new access token and sending once more (the message was refused, so nothing was delivered).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from nudgekit.channels.provider import Capabilities, Envelope, Outcome, Verdict, retry_after_seconds
from nudgekit.channels.push.message import PushMessage, fcm_message
from nudgekit.config import FcmSettings
from nudgekit.vocabulary import MessageChannel

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
CONCURRENCY = 20
QUOTA_WAIT_SECONDS = 60.0
"""FCM asks for at least a minute's back-off after QUOTA_EXCEEDED when it gives no Retry-After."""
DEAD_TOKEN = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


class ServiceAccountError(ValueError):
    pass


def load_service_account(path: Path) -> dict[str, Any]:
    """The service-account JSON key from the Firebase console; says which field is missing."""
    try:
        account = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ServiceAccountError(f"fcm: cannot read the service account file {path}: {exc}") from None
    missing = [k for k in ("client_email", "private_key", "token_uri") if not account.get(k)]
    if missing:
        raise ServiceAccountError(f"fcm: {path} lacks {', '.join(missing)}; download a service account key "
                                  "(JSON) from Firebase console > Project settings > Service accounts")
    return account


class FcmProvider:
    name = "fcm"
    capabilities = Capabilities(channels=frozenset({MessageChannel.PUSH}), batch_size=500,
                                rate_per_second=10_000.0)
    """600,000 messages a minute per project."""

    def __init__(self, settings: FcmSettings, *, clock: Callable[[], float] = time.time,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if settings.service_account_file is None:
            raise ServiceAccountError("fcm: set [fcm] service_account_file (or NUDGE_FCM__SERVICE_ACCOUNT_FILE)")
        self.account = load_service_account(settings.service_account_file)
        self.project = settings.project_id or self.account.get("project_id")
        if not self.project:
            raise ServiceAccountError("fcm: no project id: set [fcm] project_id")
        self.settings = settings
        self.clock = clock
        self.client = httpx.AsyncClient(timeout=settings.timeout_seconds, transport=transport)
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def _access_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            if self._token is not None and not renew and self._token[1] > self.clock() + 60:
                return self._token[0]
            now = int(self.clock())
            assertion = jwt.encode({"iss": self.account["client_email"], "scope": SCOPE,
                                    "aud": self.account["token_uri"], "iat": now, "exp": now + 3600},
                                   self.account["private_key"], algorithm="RS256",
                                   headers={"kid": self.account.get("private_key_id")} if
                                   self.account.get("private_key_id") else None)
            response = await self.client.post(self.account["token_uri"], data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
            if response.status_code != 200:
                raise _Refused(response)
            answer = response.json()
            self._token = (answer["access_token"], now + float(answer.get("expires_in", 3600)))
            return self._token[0]

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._one(e) for e in batch)))

    async def _one(self, envelope: Envelope) -> Outcome:
        message = envelope.message
        assert isinstance(message, PushMessage)
        url = f"{self.settings.base_url.rstrip('/')}/v1/projects/{self.project}/messages:send"
        body = orjson.dumps({"message": fcm_message(message, envelope.to, self.clock())})
        async with self._gate:
            for renew in (False, True):
                try:
                    token = await self._access_token(renew=renew)
                except _Refused as refused:
                    return Outcome(Verdict.PERMANENT, str(refused.response.status_code),
                                   f"the service account was refused: {refused.response.text[:300]}")
                except httpx.HTTPError as exc:
                    return Outcome(Verdict.RETRYABLE, None, f"cannot get an access token: {type(exc).__name__}: {exc}")
                try:
                    response = await self._post(url, body, token)
                except httpx.TimeoutException as exc:
                    return Outcome(Verdict.UNCERTAIN, None, f"no answer within {self.settings.timeout_seconds:g} s "
                                   f"({type(exc).__name__}); FCM may have accepted it")
                except httpx.HTTPError as exc:
                    return Outcome(Verdict.RETRYABLE, None, f"{type(exc).__name__}: {exc}")
                if response.status_code != 401 or _error_of(response)[0] == "THIRD_PARTY_AUTH_ERROR":
                    break
        return classify(response)

    async def _post(self, url: str, body: bytes, token: str) -> httpx.Response:
        return await self.client.post(url, content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=UTF-8"})

    async def aclose(self) -> None:
        await self.client.aclose()


class _Refused(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def classify(response: httpx.Response) -> Outcome:
    status = response.status_code
    if status == 200:
        return Outcome(Verdict.ACCEPTED, "200", "", provider_message_id=response.json().get("name"))
    code, detail = _error_of(response)
    wait = retry_after_seconds(response.headers.get("retry-after"))
    if code in DEAD_TOKEN or status == 404:
        return Outcome(Verdict.INVALID_RECIPIENT, code, detail)
    if code == "QUOTA_EXCEEDED" or status == 429:
        return Outcome(Verdict.RATE_LIMITED, code, detail, retry_after=wait or QUOTA_WAIT_SECONDS)
    if code in ("UNAVAILABLE", "INTERNAL") or status >= 500:
        return Outcome(Verdict.RETRYABLE, code, detail, retry_after=wait)
    return Outcome(Verdict.PERMANENT, code, detail)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """FCM's own errorCode (in error.details) or the Google status, and the message; tolerant of bodies that
    are not the documented JSON (a proxy's HTML error page)."""
    try:
        error = response.json()["error"]
        details = [d.get("errorCode") for d in error.get("details", []) if isinstance(d, dict)]
        code = next((d for d in details if d), None) or error.get("status") or str(response.status_code)
        return str(code), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(response.status_code), response.text[:300]
