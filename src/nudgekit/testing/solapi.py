"""A fake Solapi on 127.0.0.1 that answers as Solapi documents (developers.solapi.com; the official SDKs):
HMAC-SHA256 signatures checked (403 InvalidAPIKey / SignatureDoesNotMatch / RequestTimeTooSkewed /
DuplicatedSignature), send-many/detail answered 200 with `messageList` and `failedMessageList` and their
status codes, images uploaded to storage, AlimTalk templates listed page by page, a prepaid balance spent.

What happens after registration — delivery, Kakao's refusals, the SMS Solapi sends instead of an AlimTalk —
is kept in `delivered` so tests can see it; Solapi reports it later, never in the send's answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from nudgekit.testing.http import Answer, FakeHttpServer, Request

AUTH = re.compile(r"^HMAC-SHA256\s+(.*)$")
PRICES = {"SMS": 13.0, "LMS": 29.0, "MMS": 60.0, "ATA": 8.0, "BMS_FREE": 20.0}
UPLOAD_LIMITS = {"MMS": (200_000, {"JPEG"}), "BMS": (5_000_000, {"JPEG", "PNG"}),
                 "BMS_WIDE": (5_000_000, {"JPEG", "PNG"}), "KAKAO": (500_000, {"JPEG", "PNG"})}


def error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"errorCode": code, "errorMessage": message})


@dataclass
class FakeTemplate:
    templateId: str
    name: str
    content: str
    status: str = "APPROVED"
    buttons: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    isDeleted: bool = False


class FakeSolapi(FakeHttpServer):
    def __init__(self, api_key: str = "NCSFAKEKEY000001", api_secret: str = "fake-secret-0123456789abcdef0123",
                 pf_id: str = "KA01PF000000000000000000000000001") -> None:
        super().__init__()
        self.api_key, self.api_secret, self.pf_id = api_key, api_secret, pf_id
        self.senders: set[str] = {"0212345678"}
        """Registered sender numbers (발신번호); others fail with 1062."""
        self.kakao_users: set[str] | None = None
        """Numbers that use KakaoTalk (None: everyone does)."""
        self.friends: set[str] = set()
        """Friends of the channel, the only ones a Brand Message targeting I reaches."""
        self.targeting_allowed = {"I"}
        self.carrier_results: dict[str, tuple[str, str]] = {}
        """A number's carrier result, when not 4000 (e.g. "3010" no such number), reported after settle()."""
        self.templates: dict[str, FakeTemplate] = {}
        self.balance = 100_000.0
        self.point = 0.0
        self.files: dict[str, dict[str, Any]] = {}
        self.script: deque[Answer] = deque()
        """Answers given to the next send requests instead of the real one (429, 503, malformed ...)."""
        self.received: list[dict[str, Any]] = []
        """Every message registered (statusCode 2000)."""
        self.delivered: list[dict[str, Any]] = []
        """What happened after registration: {"to", "type", "text", "status"} — a fallback SMS appears as its
        own entry with "replaces": the AlimTalk's messageId."""
        self.results: dict[str, dict[str, Any]] = {}
        """Every registered message as `GET /messages/v4/list` reports it: statusCode 2000 until `settle()`."""
        self.max_list_limit = 500
        """The most messages one list page holds, whatever `limit` asks."""
        self.list_script: deque[Answer] = deque()
        """Answers given to the next list requests instead of the real one."""
        self._finals: dict[str, tuple[str, str]] = {}
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._signatures: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- auth ---------------------------------------------------------------------------------

    def _unauthorised(self, request: Request) -> Answer | None:
        header = request.headers.get("authorization", "")
        match = AUTH.match(header)
        if match is None:
            return error(401, "Unauthorized", "Authorization header is missing or not HMAC-SHA256")
        parts = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in match.group(1).split(","))}
        if parts.get("apikey") != self.api_key:
            return error(403, "InvalidAPIKey", "Invalid API Key")
        date, salt, signature = parts.get("date", ""), parts.get("salt", ""), parts.get("signature", "")
        expected = hmac.new(self.api_secret.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return error(403, "SignatureDoesNotMatch", "Signature does not match")
        try:
            when = datetime.fromisoformat(date.replace("Z", "+00:00"))
        except ValueError:
            return error(400, "ValidationError", "date must be an ISO 8601 date")
        if when.tzinfo is None or abs(when - self.clock()) > timedelta(minutes=15):
            return error(403, "RequestTimeTooSkewed", "Request time is too skewed from server time")
        with self._lock:
            if signature in self._signatures:
                return error(403, "DuplicatedSignature", "The signature was used before")
            self._signatures.add(signature)
        return None

    def answer(self, request: Request) -> Answer:
        refused = self._unauthorised(request)
        if refused is not None:
            return refused
        path = urlsplit(request.path).path
        if request.method == "POST" and path == "/messages/v4/send-many/detail":
            return self.script.popleft() if self.script else self._send(request)
        if request.method == "POST" and path == "/storage/v1/files":
            return self._upload(request)
        if request.method == "GET" and path == "/messages/v4/list":
            return self.list_script.popleft() if self.list_script else self._list(request)
        if request.method == "GET" and path == "/kakao/v2/templates":
            return self._templates(request)
        if request.method == "GET" and path == "/cash/v1/balance":
            return Answer(200, {"balance": self.balance, "point": self.point})
        return error(404, "NotFound", f"{request.method} {path} does not exist")

    # -- sending ------------------------------------------------------------------------------

    def _send(self, request: Request) -> Answer:
        try:
            body = request.json()
            messages = body["messages"]
            assert isinstance(messages, list)
        except (ValueError, KeyError, AssertionError):
            return error(400, "ValidationError", '"messages" is required and must be an array')
        if not 1 <= len(messages) <= 10_000:
            return error(400, "ValidationError", '"messages" must contain 1 to 10,000 messages')
        group = f"G4V{self.clock():%Y%m%d%H%M%S}{next(self._ids):017d}"
        registered, failed = [], []
        seen: set[str] = set()
        for message in messages:
            message_id = f"M4V{self.clock():%Y%m%d%H%M%S}{next(self._ids):017d}"
            code, text = self._verdict(message, seen, body.get("allowDuplicates", False))
            entry = {"messageId": message_id, "statusCode": code, "statusMessage": text,
                     "customFields": message.get("customFields") or {}}
            if code == "2000":
                registered.append(entry)
                with self._lock:
                    self.received.append({**message, "messageId": message_id})
                    self.results[message_id] = {
                        "messageId": message_id, "groupId": group, "type": message.get("type"),
                        "to": message.get("to"), "from": message.get("from"), "country": message.get("country", "82"),
                        "statusCode": "2000", "status": "PENDING", "reason": None, "replacement": False,
                        "customFields": message.get("customFields") or {}, "dateCreated": self._now(),
                        "dateUpdated": self._now(), "dateReceived": None}
                self._deliver(message, message_id)
            else:
                failed.append({**entry, "to": message.get("to"), "from": message.get("from"),
                               "type": message.get("type"), "country": message.get("country", "82"),
                               "accountId": "fake"})
        answer: dict[str, Any] = {
            "groupInfo": {"groupId": group, "status": "SENDING", "count": {
                "total": len(messages), "registeredSuccess": len(registered), "registeredFailed": len(failed),
                "sentTotal": 0, "sentPending": len(registered), "sentSuccess": 0, "sentFailed": 0}},
            "failedMessageList": failed}
        if body.get("showMessageList"):
            answer["messageList"] = registered
        return Answer(200, answer)

    def _verdict(self, message: dict[str, Any], seen: set[str], duplicates: bool) -> tuple[str, str]:
        kind = message.get("type")
        to = str(message.get("to") or "")
        if not to.isdigit():
            return "1010", "수신번호(to)가 없거나 형식이 올바르지 않습니다"
        if not duplicates and to in seen:
            return "1026", "중복 수신번호"
        seen.add(to)
        if kind not in PRICES:
            return "1025", "메시지 타입이 올바르지 않습니다"
        checked = (self._check_text(message) if kind in ("SMS", "LMS", "MMS") else
                   self._check_alimtalk(message) if kind == "ATA" else self._check_brand(message))
        if checked is not None:
            return checked
        if self.balance + self.point < PRICES[kind]:
            return "1030", "잔액 부족"
        if self.point >= PRICES[kind]:
            self.point -= PRICES[kind]
        else:
            self.balance -= PRICES[kind]
        return "2000", "정상 접수(이통사로 접수 예정) "

    def _check_sender(self, message: dict[str, Any]) -> tuple[str, str] | None:
        if str(message.get("from") or "") not in self.senders:
            return "1062", "발신번호 미등록"
        return None

    def _check_text(self, message: dict[str, Any]) -> tuple[str, str] | None:
        refused = self._check_sender(message)
        if refused is not None:
            return refused
        kind, text, subject = message["type"], str(message.get("text") or ""), message.get("subject")
        try:
            size = len(text.encode("cp949"))
            if subject is not None:
                subject_size = len(str(subject).encode("cp949"))
        except UnicodeEncodeError:
            return "1029", "EUC-KR 로 표현할 수 없는 문자가 포함되어 있습니다"
        if kind == "SMS" and subject:
            return "1013", "SMS 는 제목을 입력할 수 없습니다"
        if subject and subject_size > 40:
            return "1014", "제목의 길이가 40바이트를 초과합니다"
        if size > (90 if kind == "SMS" else 2000):
            return "1031", "메시지 길이가 초과되었습니다"
        if kind == "MMS" and message.get("imageId") not in self.files:
            return "1034", "imageId 에 해당하는 이미지를 찾을 수 없습니다"
        return None

    def _check_alimtalk(self, message: dict[str, Any]) -> tuple[str, str] | None:
        options = message.get("kakaoOptions") or {}
        if options.get("pfId") != self.pf_id:
            return "1041", "유효하지 않은 발신프로필 키"
        template = self.templates.get(str(options.get("templateId")))
        if template is None or template.isDeleted or template.status != "APPROVED":
            return "1042", "유효하지 않은 템플릿 아이디"
        variables = options.get("variables") or {}
        if any(not isinstance(v, str) for v in variables.values()):
            return "1011", "변수 값은 문자열이어야 합니다"
        text = re.sub(r"#\{[^{}]+\}", lambda m: variables.get(m.group(0), m.group(0)), template.content)
        if "#{" in text:
            return "1043", "템플릿 내용과 일치하지 않습니다(치환되지 않은 변수)"
        if len(text) > 1000:
            return "1031", "메시지 길이가 초과되었습니다"
        if not options.get("disableSms"):
            refused = self._check_sender(message)
            if refused is not None:
                return refused
        message["_text"] = text
        return None

    def _check_brand(self, message: dict[str, Any]) -> tuple[str, str] | None:
        options = message.get("kakaoOptions") or {}
        bms = options.get("bms") or {}
        if options.get("pfId") != self.pf_id:
            return "1041", "유효하지 않은 발신프로필 키"
        if bms.get("targeting") not in ("I", "M", "N"):
            return "1011", "bms.targeting 은 I, M, N 중 하나여야 합니다"
        if bms["targeting"] not in self.targeting_allowed:
            return "1011", f"{bms['targeting']} 타게팅 발송 권한이 없는 채널입니다"
        bubble = bms.get("chatBubbleType")
        limit = {"TEXT": 1300, "IMAGE": 1300, "WIDE": 76}.get(str(bubble))
        if limit is None:
            return "1011", "chatBubbleType 이 올바르지 않습니다"
        if len(str(message.get("text") or "")) > limit:
            return "1031", "메시지 길이가 초과되었습니다"
        if bubble in ("IMAGE", "WIDE") and bms.get("imageId") not in self.files:
            return "1034", "imageId 에 해당하는 이미지를 찾을 수 없습니다"
        if len(bms.get("buttons") or []) > (2 if bubble == "WIDE" else 5):
            return "1050", "버튼 개수가 초과되었습니다"
        return None

    def _deliver(self, message: dict[str, Any], message_id: str) -> None:
        """What Solapi does after registering: the AlimTalk reaches KakaoTalk users; others get the SMS
        Solapi sends instead (unless disableSms), billed as SMS/LMS; a Brand Message reaches channel
        friends when targeting I."""
        to, kind = message["to"], message["type"]
        options = message.get("kakaoOptions") or {}
        text = message.pop("_text", message.get("text"))
        on_kakao = self.kakao_users is None or to in self.kakao_users
        if kind == "ATA" and not on_kakao:
            self.delivered.append({"to": to, "type": kind, "text": text, "status": "3104", "id": message_id})
            self._finals[message_id] = ("3104", "카카오톡 미사용자")
            if not options.get("disableSms"):
                fallback = "SMS" if len(text.encode("cp949", "replace")) <= 90 else "LMS"
                self.delivered.append({"to": to, "type": fallback, "text": text, "status": "4000",
                                       "replaces": message_id})
            return
        if kind == "BMS_FREE" and ((options.get("bms") or {}).get("targeting") == "I" and to not in self.friends
                                   or not on_kakao):
            self.delivered.append({"to": to, "type": kind, "text": text, "status": "3102", "id": message_id})
            self._finals[message_id] = ("3102", "카카오톡 채널 친구가 아님")
            return
        final = self.carrier_results.get(to, ("4000", "수신완료"))
        self.delivered.append({"to": to, "type": kind, "text": text, "status": final[0], "id": message_id})
        self._finals[message_id] = final

    def settle(self) -> None:
        """Time passes: every registered message gets the result the carrier or Kakao gave it; an AlimTalk's
        SMS fallback appears as its own message with replacement true."""
        with self._lock:
            for message_id, (code, reason) in list(self._finals.items()):
                entry = self.results[message_id]
                entry.update(statusCode=code, reason=reason, status="COMPLETE" if code == "4000" else "FAILED",
                             dateUpdated=self._now(), dateReceived=self._now())
            for item in self.delivered:
                if "replaces" in item and not any(r.get("replaces") == item["replaces"] for r in self.results.values()):
                    fallback_id = f"M4V{self.clock():%Y%m%d%H%M%S}{next(self._ids):017d}"
                    self.results[fallback_id] = {
                        "messageId": fallback_id, "type": item["type"], "to": item["to"], "statusCode": "4000",
                        "status": "COMPLETE", "replacement": True, "replaces": item["replaces"],
                        "dateCreated": self._now(), "dateUpdated": self._now(), "dateReceived": self._now()}
            self._finals.clear()

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _list(self, request: Request) -> Answer:
        """`GET /messages/v4/list`: by messageId / repeated messageIds, page by page (startKey, limit); the
        messageList is an object keyed by messageId."""
        query = parse_qs(urlsplit(request.path).query)
        wanted = set(query.get("messageIds", [])) | set(query.get("messageId", []))
        try:
            limit = int(query.get("limit", ["20"])[0])
        except ValueError:
            return error(400, "ValidationError", '"limit" must be a number')
        if not 1 <= limit <= 500:
            return error(400, "ValidationError", '"limit" must be between 1 and 500')
        with self._lock:
            rows = sorted((r for r in self.results.values() if not wanted or r["messageId"] in wanted),
                          key=lambda r: r["messageId"])
        start = query.get("startKey", [None])[0]
        if start:
            rows = [r for r in rows if r["messageId"] >= start]
        limit = min(limit, self.max_list_limit)
        page, rest = rows[:limit], rows[limit:]
        return Answer(200, {"startKey": start, "nextKey": rest[0]["messageId"] if rest else None, "limit": limit,
                            "messageList": {r["messageId"]: dict(r) for r in page}})

    # -- storage, templates ---------------------------------------------------------------------

    def _upload(self, request: Request) -> Answer:
        try:
            body = request.json()
            data = base64.b64decode(body["file"], validate=True)
        except (ValueError, KeyError, TypeError):
            return error(400, "ValidationError", '"file" must be a base64 string')
        kind = body.get("type", "DOCUMENT")
        if kind not in UPLOAD_LIMITS:
            return error(400, "ValidationError", f'"type" {kind!r} is not supported here')
        limit, formats = UPLOAD_LIMITS[kind]
        try:
            with Image.open(io.BytesIO(data)) as image:
                found, (width, height) = image.format, image.size
        except OSError:
            return error(400, "ValidationError", "the file is not an image")
        if len(data) > limit or found not in formats:
            return error(400, "ValidationError", f"{kind} images are {'/'.join(sorted(formats))} up to {limit} bytes")
        file_id = f"ST01FZ{next(self._ids):026d}"
        self.files[file_id] = {"fileId": file_id, "type": kind, "name": body.get("name"), "width": width,
                               "height": height, "fileSize": len(data)}
        return Answer(200, {**self.files[file_id], "url": f"https://fake.solapi/{file_id}", "link": None})

    def _templates(self, request: Request) -> Answer:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        rows = [t for t in self.templates.values() if query.get("channelId") in (None, self.pf_id)]
        rows.sort(key=lambda t: t.templateId)
        start = query.get("startKey")
        if start:
            rows = [t for t in rows if t.templateId >= start]
        limit = int(query.get("limit", 20))
        page, rest = rows[:limit], rows[limit:]
        return Answer(200, {"templateList": [
            {**t.__dict__, "channelId": self.pf_id, "variables": [{"name": n} for n in
                                                                  re.findall(r"#\{([^{}]+)\}", t.content)]}
            for t in page], "limit": limit, "startKey": start, "nextKey": rest[0].templateId if rest else None})
