"""A fake APNs on 127.0.0.1 (HTTP/2 over TLS) answering as Apple documents ("Sending notification requests
to APNs", "Handling notification responses from APNs"): the provider token is verified with the key's public
half (ES256, kid, iss, iat no older than an hour, not renewed within 20 minutes), the headers and payload are
checked, and tokens that were unregistered answer 410 with the time they stopped being valid."""

from __future__ import annotations

import re
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nudgekit.testing.http import Answer, Request
from nudgekit.testing.http2 import FakeHttp2Server

DEVICE = re.compile(r"^/3/device/([^/?]+)$")
PUSH_TYPES = frozenset({"alert", "background", "voip", "complication", "fileprovider", "mdm", "location",
                        "liveactivity", "pushtotalk", "widgets", "controls"})


def reason(status: int, why: str, **extra: object) -> Answer:
    return Answer(status, {"reason": why, **extra})


class FakeApns(FakeHttp2Server):
    def __init__(self, *, team_id: str = "TEAM123456", key_id: str = "KEY1234567", bundle_id: str = "com.nudge.app",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.team_id, self.key_id, self.bundle_id, self.clock = team_id, key_id, bundle_id, clock
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.devices: set[str] = set()
        """Tokens of installed apps; anything else well-formed is a BadDeviceToken."""
        self.unregistered: dict[str, datetime] = {}
        self.script: deque[Answer] = deque()
        """Answers given to the next well-authorised sends, in order."""
        self.delivered: list[dict] = []
        self.provider_tokens: list[tuple[str, int]] = []
        """Each new provider token seen, with its iat."""
        self.expired_before: float | None = None
        """Provider tokens made before this moment (epoch seconds) are answered ExpiredProviderToken, as
        Apple does when its clock runs ahead of ours."""

    def key_file(self, path: Path, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
        """Write the .p8 key (PKCS#8 PEM, as Apple hands it out); another key makes tokens this server refuses."""
        path.write_bytes((key or self.key).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        return path

    def device(self, token: str | None = None) -> str:
        token = token or uuid.uuid4().hex + uuid.uuid4().hex
        self.devices.add(token)
        return token

    def uninstall(self, token: str) -> None:
        self.devices.discard(token)
        self.unregistered[token] = self.clock()

    def answer(self, request: Request) -> Answer:
        match = DEVICE.match(request.path)
        if match is None:
            return reason(404, "BadPath")
        if request.method != "POST":
            return reason(405, "MethodNotAllowed")
        refused = self._authorise(request.headers.get("authorization", ""))
        if refused is not None:
            return refused
        headers = request.headers
        if "apns-topic" not in headers:
            return reason(400, "MissingTopic")
        if headers["apns-topic"] != self.bundle_id:
            return reason(400, "TopicDisallowed")
        push_type = headers.get("apns-push-type", "alert")
        if push_type not in PUSH_TYPES:
            return reason(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("10", "5", "1"):
            return reason(400, "BadPriority")
        if "apns-id" in headers:
            try:
                uuid.UUID(headers["apns-id"])
            except ValueError:
                return reason(400, "BadMessageId")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return reason(400, "BadCollapseId")
        if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
            return reason(400, "BadExpirationDate")
        if self.script:
            return self.script.popleft()
        if not request.body:
            return reason(400, "PayloadEmpty")
        if len(request.body) > 4096:
            return reason(413, "PayloadTooLarge")
        try:
            payload = orjson.loads(request.body)
            aps = payload["aps"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return reason(400, "BadRequest")
        if push_type == "background" and (headers.get("apns-priority") != "5" or aps.get("content-available") != 1
                                          or {"alert", "sound", "badge"} & set(aps)):
            return reason(400, "BadPriority" if headers.get("apns-priority") != "5" else "BadRequest")
        token = match.group(1)
        if token in self.unregistered:
            return reason(410, "Unregistered", timestamp=int(self.unregistered[token].timestamp() * 1000))
        if token not in self.devices:
            return reason(400, "BadDeviceToken")
        self.delivered.append({"token": token, "headers": dict(headers), "payload": payload})
        return Answer(200, b"", headers={"apns-id": headers.get("apns-id") or str(uuid.uuid4())})

    def _authorise(self, authorization: str) -> Answer | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return reason(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.key.public_key(), algorithms=["ES256"],
                                options={"verify_iat": False, "require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return reason(403, "InvalidProviderToken")
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return reason(403, "InvalidProviderToken")
        now = self.clock().timestamp()
        iat = int(claims["iat"])
        if now - iat > 3600 or (self.expired_before is not None and iat < self.expired_before):
            return reason(403, "ExpiredProviderToken")
        if iat > now + 60:
            return reason(403, "InvalidProviderToken")
        if not self.provider_tokens or self.provider_tokens[-1][0] != token:
            if self.provider_tokens and iat - self.provider_tokens[-1][1] < 20 * 60:
                return reason(429, "TooManyProviderTokenUpdates")
            self.provider_tokens.append((token, iat))
        return None
