"""A fake NHN Cloud Notification (SMS v3.0, AlimTalk v2.3, Brand Message v1.0) on 127.0.0.1, answering as
docs.nhncloud.com documents: `X-Secret-Key` per service, every answer HTTP 200 with
`header {isSuccessful, resultCode, resultMessage}`, a refused request with the API's negative code, each
recipient with its own result, the AlimTalk idempotency key (-1005), the ad endpoints' label and 080 checks.

What happens after the request — Kakao's refusals and the fallback text message NHN sends instead — is kept
in `delivered`; NHN reports it later through its query APIs, never in the send's answer.
"""

from __future__ import annotations

import base64
import io
import itertools
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from PIL import Image

from nudgekit.testing.http import Answer, FakeHttpServer, Request

SMS_PATH = re.compile(r"^/sms/v3\.0/appKeys/([^/]+)/(sender/(?:ad-)?(?:sms|mms)|attachfile/binaryUpload)$")
KAKAO_PATH = re.compile(r"^/(alimtalk/v2\.3|brand-message/v1\.0)/appkeys/([^/]+)/(.+)$")
OPTOUT = re.compile(r"(무료수신거부|무료거부)\s*080[\d\-]{7,10}")
KOREA = ZoneInfo("Asia/Seoul")


def header(code: int = 0, message: str = "SUCCESS") -> dict[str, Any]:
    return {"isSuccessful": code == 0, "resultCode": code, "resultMessage": message}


def refused(code: int, message: str) -> Answer:
    return Answer(200, {"header": header(code, message)})


@dataclass
class FakeTemplate:
    templateCode: str
    templateName: str
    templateContent: str
    templateStatus: str = "TSC03"
    buttons: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)


class FakeNhnCloud(FakeHttpServer):
    def __init__(self) -> None:
        super().__init__()
        self.sms_app_key, self.sms_secret = "smsAppKey01", "smsSecret01"
        self.kakao_app_key, self.kakao_secret = "kakaoAppKey01", "kakaoSecret01"
        self.sender_key = "a" * 40
        self.senders: set[str] = {"0212345678"}
        self.optout_080: set[str] = {"0801234567"}
        """080 numbers the workspace has joined NHN's opt-out service with."""
        self.opted_out: set[str] = set()
        """Numbers that refused ads through the 080 number (-6001)."""
        self.kakao_users: set[str] | None = None
        self.friends: set[str] = set()
        self.targeting_allowed = {"I"}
        self.templates: dict[str, FakeTemplate] = {}
        self.script: deque[Answer] = deque()
        self.received: list[dict[str, Any]] = []
        """Every accepted request: {"path", "body"}."""
        self.delivered: list[dict[str, Any]] = []
        self.files: dict[int, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.carrier_results: dict[str, tuple[str, str]] = {}
        """A number's carrier result code when not 1000 (e.g. ("3001", "가입자 없음")), reported after settle()."""
        self.results: dict[str, list[dict[str, Any]]] = {"sms": [], "mms": [], "alimtalk": [], "brand": []}
        """What the result queries report, per API: in progress until `settle()`."""
        self._finals: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._keys: dict[str, datetime] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def answer(self, request: Request) -> Answer:
        path = urlsplit(request.path).path
        if (match := SMS_PATH.match(path)) is not None:
            if match.group(1) != self.sms_app_key:
                return refused(-1000, "Invalid appKey")
            if request.headers.get("x-secret-key") != self.sms_secret:
                return refused(-1001, "Invalid secretKey")
            if request.method == "GET" and match.group(2) in ("sender/sms", "sender/mms"):
                return self._listed(request, match.group(2).removeprefix("sender/"), "body")
            if not request.headers.get("content-type", "").startswith("application/json"):
                return refused(-9996, "Content-Type must be application/json")
            if self.script:
                return self.script.popleft()
            return self._upload(request) if match.group(2).startswith("attach") else self._sms(request, match.group(2))
        if (match := KAKAO_PATH.match(path)) is not None:
            if match.group(2) != self.kakao_app_key:
                return refused(-1000, "Invalid appKey")
            if request.headers.get("x-secret-key") != self.kakao_secret:
                return refused(-1001, "Invalid secretKey")
            api, rest = match.group(1), match.group(3)
            if api.startswith("alimtalk") and rest.startswith("senders/") and request.method == "GET":
                return self._templates(request, rest)
            if rest == "messages" and request.method == "GET":
                return self._listed(request, "alimtalk" if api.startswith("alimtalk") else "brand",
                                    "messageSearchResultResponse")
            if self.script and request.method == "POST" and rest != "images":
                return self.script.popleft()
            if api.startswith("alimtalk") and rest == "messages":
                return self._alimtalk(request)
            if api.startswith("brand") and rest == "freestyle-messages":
                return self._brand(request)
            if api.startswith("brand") and rest == "images":
                return self._brand_image(request)
        return Answer(404, {"header": header(-9998, "API not found")})

    def _json(self, request: Request) -> dict[str, Any] | Answer:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return refused(-9996, "Content-Type must be application/json")
        try:
            body = request.json()
            assert isinstance(body, dict)
            return body
        except (ValueError, AssertionError):
            return refused(-9997, "Invalid API parameters")

    def _request_id(self) -> str:
        return f"{self.clock():%Y%m%d%H%M%S}{next(self._ids):07d}"

    # -- SMS ----------------------------------------------------------------------------------

    def _sms(self, request: Request, endpoint: str) -> Answer:
        body = self._json(request)
        if isinstance(body, Answer):
            return body
        recipients = body.get("recipientList") or []
        if not recipients:
            return refused(-2001, "recipientList is null")
        if len(recipients) > 1000:
            return refused(-2016, "recipientList exceeds 1000")
        if str(body.get("sendNo") or "") not in self.senders:
            return refused(-2312, "Not regist sendno.")
        text = str(body.get("body") or "")
        mms = endpoint.endswith("mms")
        if not text or (mms and not body.get("title")):
            return refused(-2014, "title or body is empty")
        try:
            size = len(text.encode("cp949"))
        except UnicodeEncodeError:
            return refused(-2023, "body has characters that cannot be sent")
        if size > (2000 if mms else 90) or (mms and len(str(body["title"]).encode("cp949", "replace")) > 40):
            return refused(-2015, "title or body exceeds the maximum")
        for file_id in body.get("attachFileIdList") or []:
            if file_id not in self.files:
                return refused(-2004, "attachment expired or missing")
        if "ad-" in endpoint:
            found = OPTOUT.search(text)
            if not text.startswith("(광고)") or found is None:
                return refused(-6003, "body lacks the (광고) label or the opt-out phrase")
            if re.sub(r"\D", "", found.group(0)) not in self.optout_080:
                return refused(-6004, "the unsubscribe number is not joined")
        results, request_id = [], self._request_id()
        for seq, recipient in enumerate(recipients, start=1):
            number = str(recipient.get("recipientNo") or recipient.get("internationalRecipientNo") or "")
            code, message = 0, "SUCCESS"
            if not re.fullmatch(r"0\d{8,10}|\d{10,15}", number):
                code, message = -2019, "recipientNo is invalid"
            elif "ad-" in endpoint and number in self.opted_out:
                code, message = -6001, "the recipient has opted out"
            else:
                final, name = self.carrier_results.get(number, ("1000", "성공"))
                self.delivered.append({"to": number, "type": "MMS" if body.get("attachFileIdList") else
                                       ("LMS" if mms else "SMS"), "text": text, "status": final})
                self._result("mms" if mms else "sms", {
                    "requestId": request_id, "recipientSeq": seq, "recipientNo": number, "sendNo": body.get("sendNo"),
                    "msgStatus": "2", "msgStatusName": "처리 중", "resultCode": None, "resultCodeName": None,
                    "adYn": "Y" if "ad-" in endpoint else "N"},
                    {"msgStatus": "3" if final == "1000" else "0", "msgStatusName": "성공" if final == "1000" else "실패",
                     "resultCode": final, "resultCodeName": name})
            results.append({"recipientNo": number, "resultCode": code, "resultMessage": message,
                            "recipientSeq": seq, "recipientGroupingKey": recipient.get("recipientGroupingKey")})
        with self._lock:
            self.received.append({"path": request.path, "body": body})
        return Answer(200, {"header": header(), "body": {"data": {
            "requestId": request_id, "statusCode": "2", "senderGroupingKey": body.get("senderGroupingKey"),
            "sendResultList": results}}})

    def _upload(self, request: Request) -> Answer:
        body = self._json(request)
        if isinstance(body, Answer):
            return body
        name = str(body.get("fileName") or "")
        if not name or len(name) > 45 or not body.get("createUser"):
            return refused(-2002, "invalid attachment name")
        if not name.lower().endswith((".jpg", ".jpeg")):
            return refused(-2003, "attachment is not jpg/jpeg")
        try:
            data = base64.b64decode(str(body.get("fileBody") or ""), validate=True)
        except ValueError:
            return refused(4, "fileBody is not base64")
        if len(data) > 300 * 1024:
            return refused(-2005, "attachment exceeds 300KB")
        file_id = next(self._ids)
        self.files[file_id] = {"fileName": name, "size": len(data)}
        return Answer(200, {"header": header(), "body": {"data": {"fileId": file_id, "fileName": name,
                                                                    "filePath": f"/fake/{file_id}"}}})

    # -- KakaoTalk ------------------------------------------------------------------------------

    def _resend_ok(self, recipient: dict[str, Any]) -> bool:
        resend = recipient.get("resendParameter")
        return not resend or not resend.get("isResend") or str(resend.get("resendSendNo")) in self.senders

    def _fallback(self, number: str, recipient: dict[str, Any], replaces: str) -> None:
        resend = recipient.get("resendParameter") or {}
        if resend.get("isResend"):
            self.delivered.append({"to": number, "type": resend.get("resendType"), "text": resend.get("resendContent"),
                                   "title": resend.get("resendTitle"), "status": "1000", "replaces": replaces,
                                   "unsubscribe": resend.get("resendUnsubscribeNo")})

    def _alimtalk(self, request: Request) -> Answer:
        body = self._json(request)
        if isinstance(body, Answer):
            return body
        key = request.headers.get("x-nc-api-idempotency-key")
        now = self.clock()
        with self._lock:
            if key and key in self._keys and now - self._keys[key] < timedelta(minutes=10):
                return refused(-1005, "The same 'X-NC-API-IDEMPOTENCY-KEY' was used within the last 10 minute.")
            if key:
                self._keys[key] = now
        if body.get("senderKey") != self.sender_key:
            return refused(-2017, "sender profile not found")
        template = self.templates.get(str(body.get("templateCode")))
        if template is None:
            return refused(-3003, "template not found")
        if template.templateStatus != "TSC03":
            return refused(-3005, "template is not approved")
        request_id, results = self._request_id(), []
        for seq, recipient in enumerate(body.get("recipientList") or [], start=1):
            number = str(recipient.get("recipientNo") or "")
            values = recipient.get("templateParameter") or {}
            text = re.sub(r"#\{([^{}]+)\}", lambda m, v=values: str(v.get(m.group(1), m.group(0))),
                          template.templateContent)
            code, message = 0, "SUCCESS"
            if not re.fullmatch(r"0\d{8,10}|\d{10,15}", number):
                code, message = -5000, "invalid recipientNo"
            elif "#{" in text:
                code, message = -3004, "template parameter error"
            elif not self._resend_ok(recipient):
                code, message = -1003, "invalid SMS sendNo"
            elif self.kakao_users is not None and number not in self.kakao_users:
                self.delivered.append({"to": number, "type": "ALIMTALK", "text": text, "status": "3019"})
                self._fallback(number, recipient, f"{request_id}:{seq}")
                self._kakao_result("alimtalk", request_id, seq, number, recipient, "3019", "카카오톡 유저가 아님")
            else:
                self.delivered.append({"to": number, "type": "ALIMTALK", "text": text, "status": "1000"})
                self._kakao_result("alimtalk", request_id, seq, number, recipient, "1000", "성공")
            results.append({"recipientSeq": seq, "recipientNo": number, "resultCode": code, "resultMessage": message,
                            "recipientGroupingKey": recipient.get("recipientGroupingKey")})
        with self._lock:
            self.received.append({"path": request.path, "body": body, "idempotency_key": key})
        return Answer(200, {"header": header(), "message": {"requestId": request_id, "senderGroupingKey":
                                                            body.get("senderGroupingKey"), "sendResults": results}})

    def _brand(self, request: Request) -> Answer:
        body = self._json(request)
        if isinstance(body, Answer):
            return body
        if body.get("senderKey") != self.sender_key:
            return refused(-2017, "sender profile not found")
        bubble = body.get("chatBubbleType")
        limit = {"TEXT": 1300, "IMAGE": 400, "WIDE": 76}.get(str(bubble))
        if limit is None:
            return refused(4, "chatBubbleType is invalid")
        content = str(body.get("content") or "")
        if not content:
            return refused(-2001, "content is blank")
        if len(content) > limit:
            return refused(-2000, "content is too long")
        if bubble in ("IMAGE", "WIDE") and (body.get("image") or {}).get("imageUrl") not in self.images:
            return refused(-8001, "image not found")
        if len(body.get("buttons") or []) > (2 if bubble == "WIDE" else 5):
            return refused(-2018, "invalid button")
        local = self.clock().astimezone(KOREA).time()
        open_now = time(8, 0) <= local < time(20, 50)
        request_id, results = self._request_id(), []
        for seq, recipient in enumerate(body.get("recipientList") or [], start=1):
            number, targeting = str(recipient.get("recipientNo") or ""), recipient.get("targeting")
            code, message = 0, "SUCCESS"
            if not re.fullmatch(r"0\d{8,10}|\d{10,15}", number):
                code, message = -5000, "invalid recipientNo"
            elif targeting not in ("I", "M", "N"):
                code, message = -3298, "targeting is invalid"
            elif targeting not in self.targeting_allowed:
                code, message = -4029, "M/N targeting is not enabled for the sender"
            elif targeting != "I" and not body.get("unsubscribeNo"):
                code, message = -3340, "unsubscribeNo is required"
            elif not self._resend_ok(recipient):
                code, message = -1003, "invalid SMS sendNo"
            elif not open_now:
                self.delivered.append({"to": number, "type": "BRAND", "text": content, "status": "3022"})
                self._kakao_result("brand", request_id, seq, number, {}, "3022", "메시지 발송 가능한 시간이 아님")
            elif targeting == "I" and number not in self.friends:
                self.delivered.append({"to": number, "type": "BRAND", "text": content, "status": "3018"})
                self._fallback(number, recipient, f"{request_id}:{seq}")
                self._kakao_result("brand", request_id, seq, number, recipient, "3018", "메시지를 전송할 수 없음")
            else:
                self.delivered.append({"to": number, "type": "BRAND", "text": content, "status": "1000"})
                self._kakao_result("brand", request_id, seq, number, recipient, "1000", "성공")
            results.append({"recipientSeq": seq, "recipientNo": number, "resultCode": code, "resultMessage": message})
        with self._lock:
            self.received.append({"path": request.path, "body": body})
        return Answer(200, {"header": header(), "message": {"requestId": request_id, "sendResults": results}})

    # -- results ------------------------------------------------------------------------------

    def _result(self, api: str, row: dict[str, Any], final: dict[str, Any]) -> None:
        with self._lock:
            self.results[api].append(row)
            self._finals.append((row, final))

    def _kakao_result(self, api: str, request_id: str, seq: int, number: str, recipient: dict[str, Any],
                      final: str, name: str) -> None:
        resend = bool((recipient.get("resendParameter") or {}).get("isResend"))
        status_key = "resendStatus" if api == "alimtalk" else "resendStatusCode"
        self._result(api, {"requestId": request_id, "recipientSeq": seq, "recipientNo": number,
                           "messageStatus": None, "resultCode": None, "resultCodeName": None,
                           status_key: "RSC02" if resend else "RSC01"},
                     {"messageStatus": "COMPLETED" if final == "1000" else "FAILED", "resultCode": final,
                      "resultCodeName": name, status_key: ("RSC04" if resend and final != "1000" else
                                                           "RSC02" if resend else "RSC01")})

    def settle(self) -> None:
        """Time passes: every message gets the result its carrier or Kakao gave it (and NHN's fallback text
        message, when one was due, arrives)."""
        when = self.clock().astimezone(KOREA).strftime("%Y-%m-%d %H:%M:%S.0")
        with self._lock:
            for row, final in self._finals:
                row.update(final)
                row["resultDate" if "msgStatus" in row else "receiveDate"] = when
            self._finals.clear()

    def _listed(self, request: Request, api: str, wrapper: str) -> Answer:
        """The list queries by requestId (SMS: `body.data`, Kakao: `messageSearchResultResponse.messages`)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        if not query.get("requestId"):
            return refused(-9997, "requestId or a date range is required")
        try:
            page, size = int(query.get("pageNum", 1)), int(query.get("pageSize", 15))
        except ValueError:
            return refused(-9997, "pageNum and pageSize are numbers")
        if not 1 <= size <= 1000 or page < 1:
            return refused(-9997, "pageSize is 1 to 1000")
        with self._lock:
            rows = [dict(r) for r in self.results[api] if r["requestId"] == query["requestId"]]
        shown = rows[(page - 1) * size:page * size]
        if wrapper == "body":
            return Answer(200, {"header": header(), "body": {"pageNum": page, "pageSize": size,
                                                             "totalCount": len(rows), "data": shown}})
        return Answer(200, {"header": header(), wrapper: {"messages": shown, "totalCount": len(rows)}})

    def _brand_image(self, request: Request) -> Answer:
        kind = request.headers.get("content-type", "")
        if not kind.startswith("multipart/form-data"):
            return refused(-9993, "a multipart request is required")
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + request.body)
        parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        image, image_type = parts.get("image"), parts.get("imageType")
        if image is None or image_type is None:
            return refused(-9993, "image and imageType are required")
        data = image.get_payload(decode=True)
        try:
            with Image.open(io.BytesIO(data)) as picture:
                found, (width, height) = picture.format, picture.size
        except OSError:
            return refused(-8001, "not an image")
        if found not in ("JPEG", "PNG") or len(data) > 5_000_000:
            return refused(-8002, "images are jpg or png up to 5MB")
        url = f"https://mud-kage.kakao.com/fake/{next(self._ids)}.{found.lower()}"
        self.images[url] = {"type": image_type.get_payload(decode=True).decode(), "width": width, "height": height}
        return Answer(200, {"header": header(), "image": {"imageSeq": len(self.images), "imageUrl": url,
                                                          "imageName": image.get_filename()}})

    def _templates(self, request: Request, rest: str) -> Answer:
        if rest.split("/")[1] != self.sender_key:
            return refused(-2017, "sender profile not found")
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        page, size = int(query.get("pageNum", 1)), int(query.get("pageSize", 15))
        rows = sorted(self.templates.values(), key=lambda t: t.templateCode)
        shown = rows[(page - 1) * size:page * size]
        return Answer(200, {"header": header(), "templateListResponse": {
            "templates": [{**t.__dict__, "senderKey": self.sender_key, "status": t.templateStatus} for t in shown],
            "totalCount": len(rows)}})
