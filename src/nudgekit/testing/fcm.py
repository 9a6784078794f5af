"""A fake FCM (HTTP v1) and Google OAuth2 token endpoint on 127.0.0.1, answering as Google documents: the
service account's JWT is verified with its public key, the access token is required on every send, and
messages are refused the way FCM refuses them."""

from __future__ import annotations

import itertools
import re
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nudgekit.testing.http import Answer, FakeHttpServer, Request

SEND = re.compile(r"^/v1/projects/([^/]+)/messages:send$")


def fcm_error(status: int, google_status: str, message: str, error_code: str | None = None) -> Answer:
    details = ([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
               if error_code else [])
    return Answer(status, {"error": {"code": status, "message": message, "status": google_status,
                                     "details": details}})


class FakeFcm(FakeHttpServer):
    def __init__(self, project: str = "nudge-test") -> None:
        super().__init__()
        self.project = project
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.unregistered: set[str] = set()
        self.script: deque[Answer] = deque()
        """Answers given to the next sends, in order (QUOTA_EXCEEDED, UNAVAILABLE ...)."""
        self.sent: list[dict] = []
        self.tokens_issued: list[str] = []
        self.revoked: set[str] = set()
        self._ids = itertools.count(1)

    def service_account(self, path: Path, key: rsa.RSAPrivateKey | None = None) -> Path:
        """Write a service account key file pointing at this server (signed with `key`: another key makes a
        service account this server refuses)."""
        pem = (key or self.key).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        path.write_bytes(orjson.dumps({
            "type": "service_account", "project_id": self.project, "private_key_id": "k1", "private_key": pem,
            "client_email": f"firebase-adminsdk@{self.project}.iam.gserviceaccount.com",
            "token_uri": f"{self.url}/token"}))
        return path

    def answer(self, request: Request) -> Answer:
        if request.path == "/token":
            return self._token(request)
        match = SEND.match(request.path)
        if request.method != "POST" or match is None:
            return Answer(404, b"Not Found")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.tokens_issued or bearer in self.revoked:
            return Answer(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                          "message": "Request had invalid authentication credentials."}})
        if match.group(1) != self.project:
            return fcm_error(403, "PERMISSION_DENIED", "Permission denied on project", "SENDER_ID_MISMATCH")
        if self.script:
            return self.script.popleft()
        try:
            message = request.json()["message"]
        except (ValueError, KeyError):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        targets = [k for k in ("token", "topic", "condition") if k in message]
        if len(targets) != 1:
            return fcm_error(400, "INVALID_ARGUMENT", "Exactly one of token, topic or condition is required.",
                             "INVALID_ARGUMENT")
        if any(not isinstance(v, str) for v in message.get("data", {}).values()):
            return fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data'", "INVALID_ARGUMENT")
        if len(request.body) > 4096 + 20:
            return fcm_error(400, "INVALID_ARGUMENT", "Message is too big", "INVALID_ARGUMENT")
        if message.get("token") in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        self.sent.append(message)
        return Answer(200, {"name": f"projects/{self.project}/messages/{next(self._ids)}"})

    def _token(self, request: Request) -> Answer:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        try:
            claims = jwt.decode(form.get("assertion", ""), self.key.public_key(), algorithms=["RS256"],
                                audience=f"{self.url}/token")
        except jwt.PyJWTError as exc:
            return Answer(400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"})
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or "firebase.messaging" not in \
                claims.get("scope", ""):
            return Answer(400, {"error": "invalid_scope"})
        token = f"ya29.fake-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return Answer(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
