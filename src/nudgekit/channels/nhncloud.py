"""NHN Cloud Notification: SMS v3.0 (SMS / LMS / MMS and their advertising endpoints), KakaoTalk Bizmessage
AlimTalk v2.3 and Brand Message v1.0 (docs.nhncloud.com > Notification).

Each service has its own app key (in the path) and secret key (`X-Secret-Key`). A request carries one
content for up to 1,000 recipients, so messages with the same content are sent together and each answer is
found again by the recipient's grouping key (SMS, AlimTalk) or sequence number (Brand Message). Every answer
is HTTP 200 with `header.isSuccessful`; a refused request says why in `header.resultCode`, a refused
recipient in its own `resultCode`.

:TRICKY: AlimTalk requests carry `X-NC-API-IDEMPOTENCY-KEY`, derived from the messages' ids, so the same
batch sent again within 10 minutes is refused with -1005 instead of delivered twice; -1005 is read as
uncertain (the first request arrived; whether it went out is for the receipts to say), never resent.
NHN sends the fallback text message itself (`resendParameter`) when Kakao cannot deliver, for AlimTalk and
Brand Message alike; the advertising one through its ad-SMS service with the 080 number.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import phonenumbers

from nudgekit.channels.kakao.alimtalk import AlimtalkMessage
from nudgekit.channels.kakao.brand import BrandMessage
from nudgekit.channels.kakao.buttons import KNOWN_BUTTONS, KakaoButton
from nudgekit.channels.kakao.templates import Template
from nudgekit.channels.numbers import digits_of, spelled
from nudgekit.channels.provider import (
    Capabilities,
    Delivery,
    Envelope,
    Outcome,
    Receipt,
    ReceiptsUnavailable,
    Refused,
    Sent,
    Verdict,
    failed_request,
    read_image,
    refused_request,
)
from nudgekit.channels.sms.message import SmsMessage, carrier_bytes, normalised
from nudgekit.config import NhnCloudSettings, SenderSettings
from nudgekit.vocabulary import BrandFormat, MessageChannel, TemplateStatus

MAX_RECIPIENTS = 1000
JSON = "application/json;charset=UTF-8"
TITLE_BYTES = 40
STATUS = {"TSC01": TemplateStatus.PENDING, "TSC02": TemplateStatus.INSPECTING, "TSC03": TemplateStatus.APPROVED,
          "TSC04": TemplateStatus.REJECTED}
INVALID_NUMBER = frozenset({-2018, -2019, -5000, -4019})
"""Recipient number empty or invalid (SMS -2018/-2019, KakaoTalk -5000/-4019)."""
RETRYABLE = frozenset({-2021, -2009, -2010, -7000})
"""Queue insert failed, upload server errors, Kakao's API failed: nothing was sent."""
UNCERTAIN = frozenset({-9999, -1005})
"""A system error after the request was taken; the idempotency key already used (see :TRICKY:)."""

SMS_PENDING = frozenset({"1", "2", "7"})
"""msgStatus: requested, in progress, waiting to be resent (advertising limits)."""
SMS_NO_RECIPIENT = frozenset({"1002", "3001", "3003"})
"""Carrier results: the number is malformed, has no subscriber, is not in service: suppressed."""
SMS_NOT_REACHED = frozenset({"2001", "2002", "2003", "2004", "2005", "2006", "2007"})
"""The handset was off, out of range, its inbox full ...: this message failed, another may arrive."""
KAKAO_NOT_A_USER = frozenset({"3008", "3019", "3020"})
"""Bad number, not a KakaoTalk user, AlimTalk blocked: remembered, later messages go to the fallback."""
KAKAO_NOT_NOW = frozenset({"3018", "3021"})
"""Not active for 7 days / sanctioned, app too old: this message falls back, the person may be reachable later."""
NOT_KNOWN = frozenset({"2000", "3005"})
"""SMS delivery timed out (25 h / 80 h), Kakao sent without an acknowledgement: nobody can say; never resend."""
RESEND = {"RSC02": Delivery.PENDING, "RSC03": Delivery.PENDING, "RSC04": Delivery.DELIVERED,
          "RSC05": Delivery.FAILED}
"""What became of the fallback text message NHN sent for a Kakao message (RSC01: none was due)."""
KST = ZoneInfo("Asia/Seoul")


class NhnCloudError(ValueError):
    """NHN Cloud refused a call that is not a send (templates): the operator must act."""


def classify(code: int, detail: str) -> Outcome:
    """An NHN Cloud result code (SMS and KakaoTalk Bizmessage API code tables) as a verdict."""
    text = str(code)
    if code == 0:
        return Outcome(Verdict.ACCEPTED, text, detail)
    if code in INVALID_NUMBER:
        return Outcome(Verdict.INVALID_RECIPIENT, text, detail)
    if code in RETRYABLE:
        return Outcome(Verdict.RETRYABLE, text, detail)
    if code in UNCERTAIN:
        return Outcome(Verdict.UNCERTAIN, text, detail)
    return Outcome(Verdict.PERMANENT, text, detail)


def recipient_number(number: str) -> dict[str, str]:
    """A Korean mobile number (the only kind the recipient check lets through) as dialled at home."""
    return {"recipientNo": f"0{phonenumbers.parse(number).national_number}"}


def _button(button: KakaoButton, ordering: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ordering": ordering, "type": button.type.value, "name": button.name,
                           "linkMo": button.url_mobile, "linkPc": button.url_pc,
                           "schemeAndroid": button.scheme_android, "schemeIos": button.scheme_ios}
    return {k: v for k, v in out.items() if v is not None}


@dataclass
class _Request:
    """One request: a content and the recipients it goes to (each remembered by its envelope's index)."""

    service: str
    """"sms" or "kakao": which app key, secret and base URL."""
    path: str
    body: dict[str, Any]
    recipients: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    idempotent: bool = False


class NhnCloudProvider:
    name = "nhncloud"
    capabilities = Capabilities(
        channels=frozenset({MessageChannel.SMS, MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE}),
        batch_size=MAX_RECIPIENTS)

    def __init__(self, settings: NhnCloudSettings, sender: SenderSettings, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.sender = sender
        self.clock = clock
        self.clients: dict[str, httpx.AsyncClient] = {}
        for service, app_key, secret, base in (
                ("sms", settings.sms_app_key, settings.sms_secret_key, settings.sms_base_url),
                ("kakao", settings.kakao_app_key, settings.kakao_secret_key, settings.kakao_base_url)):
            if app_key and secret:
                self.clients[service] = httpx.AsyncClient(
                    base_url=base, timeout=settings.timeout_seconds, transport=transport,
                    headers={"X-Secret-Key": secret})
        if not self.clients:
            raise ValueError("nhncloud: set [nhncloud] sms_app_key / kakao_app_key and their secret keys "
                             "(NUDGE_NHNCLOUD__SMS_SECRET_KEY, NUDGE_NHNCLOUD__KAKAO_SECRET_KEY)")
        self._uploaded: dict[tuple[Path, str], Any] = {}

    def _client(self, service: str) -> httpx.AsyncClient:
        client = self.clients.get(service)
        if client is None:
            what = "sms_app_key and NUDGE_NHNCLOUD__SMS_SECRET_KEY" if service == "sms" else \
                "kakao_app_key and NUDGE_NHNCLOUD__KAKAO_SECRET_KEY"
            raise Refused(Outcome(Verdict.PERMANENT, "not_configured", f"nhncloud: set [nhncloud] {what}"))
        return client

    # -- sending ------------------------------------------------------------------------------

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        requests: dict[bytes, _Request] = {}
        for i, envelope in enumerate(batch):
            try:
                request, entry = await self._prepare(envelope)
                self._client(request.service)
            except Refused as refused:
                outcomes[i] = refused.outcome
                continue
            key = orjson.dumps([request.service, request.path, request.body], option=orjson.OPT_SORT_KEYS)
            requests.setdefault(key, request).recipients.append((i, entry))
        for request in requests.values():
            for start in range(0, len(request.recipients), MAX_RECIPIENTS):
                part = request.recipients[start:start + MAX_RECIPIENTS]
                ids = [batch[i].message_id for i, _ in part]
                for (i, _), outcome in zip(part, await self._post(request, part, ids), strict=True):
                    outcomes[i] = outcome
        return [outcomes[i] for i in range(len(batch))]

    async def _post(self, request: _Request, part: list[tuple[int, dict[str, Any]]], ids: list[str]) -> list[Outcome]:
        body = {**request.body, "recipientList": [entry for _, entry in part]}
        headers = {"Content-Type": JSON}
        if request.idempotent:
            headers["X-NC-API-IDEMPOTENCY-KEY"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:64]
        try:
            response = await self._client(request.service).post(request.path, content=orjson.dumps(body),
                                                                 headers=headers)
        except httpx.TransportError as exc:
            return [failed_request("nhncloud", exc) for _ in part]
        if response.status_code != 200:
            return [self._http_error(response) for _ in part]
        try:
            answer = response.json()
            header = answer["header"]
        except (ValueError, KeyError, TypeError):
            return [Outcome(Verdict.UNCERTAIN, "malformed", f"nhncloud answered 200 with {response.text[:200]!r}")
                    for _ in part]
        if not header.get("isSuccessful"):
            refused = classify(int(header.get("resultCode") or -1), str(header.get("resultMessage") or ""))
            return [refused for _ in part]
        return self._results(answer, ids)

    def _results(self, answer: dict[str, Any], ids: list[str]) -> list[Outcome]:
        message = answer.get("message") or (answer.get("body") or {}).get("data") or {}
        results = message.get("sendResults") or message.get("sendResultList") or []
        request_id = message.get("requestId")
        by_key = {r.get("recipientGroupingKey"): r for r in results if r.get("recipientGroupingKey")}
        by_seq = {r.get("recipientSeq"): r for r in results}
        outcomes = []
        for seq, message_id in enumerate(ids, start=1):
            result = by_key.get(message_id) or by_seq.get(seq)
            if result is None:
                outcomes.append(Outcome(Verdict.UNCERTAIN, None, "nhncloud's answer does not mention this recipient"))
                continue
            code = result.get("resultCode")
            outcome = classify(int(code) if code is not None else 0, str(result.get("resultMessage") or ""))
            provider_id = f"{request_id}:{result.get('recipientSeq', seq)}" if request_id else None
            outcomes.append(Outcome(outcome.verdict, outcome.code, outcome.detail, provider_id))
        return outcomes

    def _http_error(self, response: httpx.Response) -> Outcome:
        status = response.status_code
        return refused_request(status, str(status), f"nhncloud HTTP {status}: {response.text[:200]}",
                               response.headers.get("retry-after"), self.clock())

    # -- the request for each kind of message ---------------------------------------------------

    async def _prepare(self, envelope: Envelope) -> tuple[_Request, dict[str, Any]]:
        entry: dict[str, Any] = {**recipient_number(envelope.to), "recipientGroupingKey": envelope.message_id}
        message = envelope.message
        if isinstance(message, SmsMessage):
            return await self._sms(message, envelope.type), entry
        if isinstance(message, AlimtalkMessage):
            entry["templateParameter"] = message.values()
            if message.fallback and "fallback" in envelope.meta:
                entry["resendParameter"] = self._resend(envelope.meta["fallback"], ad=False)
            path = f"/alimtalk/v2.3/appkeys/{self.settings.kakao_app_key}/messages"
            body = {"senderKey": self.sender.kakao_sender_key, "templateCode": message.template}
            return _Request("kakao", path, body, idempotent=True), entry
        if isinstance(message, BrandMessage):
            del entry["recipientGroupingKey"]
            entry["targeting"] = message.targeting.value
            if message.fallback and "fallback" in envelope.meta:
                entry["resendParameter"] = self._resend(envelope.meta["fallback"], ad=True)
            return await self._brand(message), entry
        raise Refused(Outcome(Verdict.PERMANENT, "unsupported", f"nhncloud cannot send {envelope.channel.value}"))

    def _send_no(self, wanted: str | None) -> str:
        number = wanted or (self.sender.sms_numbers[0] if self.sender.sms_numbers else None)
        if number is None:
            raise Refused(Outcome(Verdict.PERMANENT, "no_sender_number", "no registered sender number"))
        return digits_of(number)

    async def _sms(self, message: SmsMessage, kind: str | None) -> _Request:
        app = self.settings.sms_app_key
        text = normalised(message.text)
        body: dict[str, Any] = {"body": text, "sendNo": self._send_no(message.sender_number)}
        ad = "ad-" if message.ad else ""
        if kind in (None, "SMS"):
            return _Request("sms", f"/sms/v3.0/appKeys/{app}/sender/{ad}sms", body)
        body["title"] = normalised(message.subject).strip() if message.subject else _title_from(text)
        if message.images:
            body["attachFileIdList"] = [await self._attach(image) for image in message.images]
        return _Request("sms", f"/sms/v3.0/appKeys/{app}/sender/{ad}mms", body)

    def _resend(self, fallback: dict[str, Any], *, ad: bool) -> dict[str, Any]:
        resend = {"isResend": True, "resendType": "SMS" if fallback.get("type") == "SMS" else "LMS",
                  "resendContent": fallback["text"], "resendSendNo": self._send_no(fallback.get("sender_number"))}
        if resend["resendType"] == "LMS":
            resend["resendTitle"] = fallback.get("subject") or _title_from(fallback["text"])
        if ad and self.sender.optout_080:
            resend["resendUnsubscribeNo"] = self.sender.optout_080
        return resend

    async def _brand(self, message: BrandMessage) -> _Request:
        body: dict[str, Any] = {"senderKey": self.sender.kakao_sender_key,
                                "chatBubbleType": {BrandFormat.TEXT: "TEXT", BrandFormat.IMAGE: "IMAGE",
                                                   BrandFormat.WIDE: "WIDE"}[message.format],
                                "content": message.text.strip()}
        if message.image is not None:
            url = await self._brand_image(message.image, "WIDE_IMAGE" if message.format == BrandFormat.WIDE
                                          else "IMAGE")
            body["image"] = {"imageUrl": url, **({"imageLink": message.image_link} if message.image_link else {})}
        if message.buttons:
            body["buttons"] = [_button(b, i) for i, b in enumerate(message.buttons, start=1)]
        if message.targeting.value != "I" and self.sender.optout_080:
            body["unsubscribeNo"] = spelled(self.sender.optout_080)
        path = f"/brand-message/v1.0/appkeys/{self.settings.kakao_app_key}/freestyle-messages"
        return _Request("kakao", path, body)

    # -- uploads and templates -----------------------------------------------------------------

    async def _attach(self, image: Path) -> int:
        """An MMS image's fileId (uploaded once per provider)."""
        known = self._uploaded.get((image, "mms"))
        if known is not None:
            return int(known)
        body = {"fileName": f"{image.stem[:40] or 'image'}.jpg", "createUser": "nudgekit",
                "fileBody": base64.b64encode(read_image(image)).decode()}
        answer = await self._call("sms", "POST", f"/sms/v3.0/appKeys/{self.settings.sms_app_key}/attachfile/"
                                                  "binaryUpload", content=orjson.dumps(body),
                                  headers={"Content-Type": JSON})
        file_id = ((answer.get("body") or {}).get("data") or {}).get("fileId")
        if file_id is None:
            raise Refused(Outcome(Verdict.RETRYABLE, "upload", "nhncloud's upload answer has no fileId"))
        self._uploaded[(image, "mms")] = file_id
        return int(file_id)

    async def _brand_image(self, image: Path, kind: str) -> str:
        known = self._uploaded.get((image, kind))
        if known is not None:
            return str(known)
        answer = await self._call("kakao", "POST", f"/brand-message/v1.0/appkeys/{self.settings.kakao_app_key}/images",
                                  files={"image": (image.name, read_image(image))}, data={"imageType": kind})
        url = (answer.get("image") or {}).get("imageUrl")
        if not url:
            raise Refused(Outcome(Verdict.RETRYABLE, "upload", "nhncloud's image answer has no imageUrl"))
        self._uploaded[(image, kind)] = url
        return str(url)

    async def _call(self, service: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """An upload: refusals become the message's outcome."""
        try:
            response = await self._client(service).request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Refused(Outcome(Verdict.RETRYABLE, "upload", f"nhncloud upload: {exc!r}")) from None
        if response.status_code != 200:
            refused = self._http_error(response)
            raise Refused(Outcome(Verdict.RETRYABLE if refused.verdict == Verdict.UNCERTAIN else refused.verdict,
                                   refused.code, f"upload: {refused.detail}"))
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise Refused(Outcome(Verdict.RETRYABLE, "upload", "nhncloud's upload answer is not JSON")) from None
        header = answer.get("header") or {}
        if not header.get("isSuccessful"):
            refused = classify(int(header.get("resultCode") or -1), str(header.get("resultMessage") or ""))
            raise Refused(Outcome(refused.verdict, refused.code, f"upload: {refused.detail}"))
        return answer

    async def templates(self) -> list[Template]:
        """Every AlimTalk template of the workspace's sender key, page by page."""
        if not self.sender.kakao_sender_key:
            raise NhnCloudError("set [sender] kakao_sender_key to the channel's sender key first")
        client = self.clients.get("kakao")
        if client is None:
            raise NhnCloudError("nhncloud: set [nhncloud] kakao_app_key and NUDGE_NHNCLOUD__KAKAO_SECRET_KEY")
        found: list[Template] = []
        page = 1
        path = f"/alimtalk/v2.3/appkeys/{self.settings.kakao_app_key}/senders/{self.sender.kakao_sender_key}/templates"
        while True:
            try:
                response = await client.get(path, params={"pageNum": page, "pageSize": 1000})
                answer = response.json()
            except (httpx.TransportError, ValueError) as exc:
                raise NhnCloudError(f"nhncloud templates: {exc!r}") from None
            header = answer.get("header") or {}
            if response.status_code != 200 or not header.get("isSuccessful"):
                raise NhnCloudError(f"nhncloud refused the template list: {header.get('resultCode')} "
                                    f"{header.get('resultMessage') or response.text[:200]}")
            listing = answer.get("templateListResponse") or {}
            rows = listing.get("templates") or []
            found.extend(_template(r) for r in rows)
            if not rows or len(found) >= int(listing.get("totalCount") or 0):
                return found
            page += 1

    # -- receipts ---------------------------------------------------------------------------------

    async def receipts(self, sent: list[Sent]) -> dict[str, Receipt]:
        """What became of accepted messages, one list query per request (`requestId`), page by page: SMS
        `GET /sms/v3.0/appKeys/{appKey}/sender/sms|mms`, AlimTalk `GET /alimtalk/v2.3/.../messages`, Brand
        Message `GET /brand-message/v1.0/.../messages`."""
        groups: dict[tuple[str, str, str], dict[str, Sent]] = defaultdict(dict)
        for message in sent:
            request_id, _, seq = message.provider_message_id.rpartition(":")
            if request_id and seq:
                groups[(*self._results_path(message), request_id)][seq] = message
        found: dict[str, Receipt] = {}
        failures: list[str] = []
        for (service, path, request_id), by_seq in groups.items():
            page = 1
            try:
                while True:
                    rows, total = await self._result_page(service, path, request_id, page)
                    for row in rows:
                        message = by_seq.get(str(row.get("recipientSeq")))
                        if message is not None:
                            found[message.message_id] = (_sms_receipt(row) if service == "sms" else
                                                         _kakao_receipt(row))
                    if not rows or page * MAX_RECIPIENTS >= total:
                        break
                    page += 1
            except ReceiptsUnavailable as exc:  # this request's messages wait; the others are read
                failures.append(str(exc))
        if failures and len(failures) == len(groups):
            raise ReceiptsUnavailable(failures[0])
        return found

    def _results_path(self, message: Sent) -> tuple[str, str]:
        if message.channel == MessageChannel.SMS:
            kind = "sms" if message.type in (None, "SMS") else "mms"
            return "sms", f"/sms/v3.0/appKeys/{self.settings.sms_app_key}/sender/{kind}"
        if message.channel == MessageChannel.ALIMTALK:
            return "kakao", f"/alimtalk/v2.3/appkeys/{self.settings.kakao_app_key}/messages"
        return "kakao", f"/brand-message/v1.0/appkeys/{self.settings.kakao_app_key}/messages"

    async def _result_page(self, service: str, path: str, request_id: str, page: int) -> tuple[list[Any], int]:
        client = self.clients.get(service)
        if client is None:
            raise ReceiptsUnavailable(f"nhncloud: the {service} app key is not configured")
        try:
            response = await client.get(path, params={"requestId": request_id, "pageNum": page,
                                                      "pageSize": MAX_RECIPIENTS})
            answer = response.json()
            header = answer.get("header") or {}
            if response.status_code != 200 or not header.get("isSuccessful"):
                raise ReceiptsUnavailable(f"nhncloud refused the result query: {header.get('resultCode')} "
                                          f"{header.get('resultMessage') or response.text[:200]}")
            listing = (answer.get("body") if service == "sms" else answer.get("messageSearchResultResponse")) or {}
            rows = listing.get("data") if service == "sms" else listing.get("messages")
            if not isinstance(rows, list):
                rows = []
            return [r for r in rows if isinstance(r, dict)], int(listing.get("totalCount") or 0)
        except httpx.TransportError as exc:
            raise ReceiptsUnavailable(f"nhncloud is unreachable: {exc!r}") from None
        except (ValueError, AttributeError, TypeError) as exc:
            raise ReceiptsUnavailable(f"nhncloud's result list is malformed: {exc!r}") from None

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()




def _sms_receipt(row: dict[str, Any]) -> Receipt:
    """A text message's result: msgStatus 3 delivered, 0 / 6 failed by resultCode, 4 cancelled, 5 (a
    duplicate) unknown, anything else still pending."""
    status, code = str(row.get("msgStatus")), str(row.get("resultCode") or "")
    detail = str(row.get("resultCodeName") or row.get("msgStatusName") or "")
    at = _kst(row.get("resultDate"))
    if status in SMS_PENDING:
        return Receipt(Delivery.PENDING, Outcome(Verdict.ACCEPTED, code, detail), at)
    if status == "3":
        return Receipt(Delivery.DELIVERED, Outcome(Verdict.ACCEPTED, code or "1000", detail), at)
    if status == "4":
        return Receipt(Delivery.FAILED, Outcome(Verdict.PERMANENT, "cancelled", "the send was cancelled"), at)
    if status == "5":  # a duplicate of a message that may have gone out: never refunded, never resent
        return Receipt(Delivery.UNKNOWN, Outcome(Verdict.UNCERTAIN, code or "duplicate", detail or "duplicate"), at)
    if status not in ("0", "6"):
        return Receipt(Delivery.PENDING, Outcome(Verdict.ACCEPTED, code, detail), at)
    if code in NOT_KNOWN:
        return Receipt(Delivery.UNKNOWN, Outcome(Verdict.UNCERTAIN, code, detail), at)
    verdict = (Verdict.INVALID_RECIPIENT if code in SMS_NO_RECIPIENT else
               Verdict.RETRYABLE if code in SMS_NOT_REACHED else Verdict.PERMANENT)
    return Receipt(Delivery.FAILED, Outcome(verdict, code, detail), at)


def _kakao_receipt(row: dict[str, Any]) -> Receipt:
    """A Kakao message's result (messageStatus COMPLETED / FAILED / CANCEL) and its fallback's (resendStatus)."""
    status, code = str(row.get("messageStatus") or ""), str(row.get("resultCode") or "")
    detail = str(row.get("resultCodeName") or "")
    at = _kst(row.get("receiveDate"))
    fallback = RESEND.get(str(row.get("resendStatus") or row.get("resendStatusCode") or ""))
    if status == "COMPLETED":  # no fallback was needed, whatever its status says
        return Receipt(Delivery.DELIVERED, Outcome(Verdict.ACCEPTED, code or "1000", detail), at)
    if status == "CANCEL":
        return Receipt(Delivery.FAILED, Outcome(Verdict.PERMANENT, "cancelled", "the send was cancelled"), at,
                       fallback)
    if status != "FAILED":
        return Receipt(Delivery.PENDING, Outcome(Verdict.ACCEPTED, code, detail), at, fallback)
    if code in NOT_KNOWN:
        return Receipt(Delivery.UNKNOWN, Outcome(Verdict.UNCERTAIN, code, detail), at, fallback)
    if code in KAKAO_NOT_A_USER:
        return Receipt(Delivery.FAILED, Outcome(Verdict.INVALID_RECIPIENT, code, detail, fallback=True), at, fallback)
    if code in KAKAO_NOT_NOW:
        return Receipt(Delivery.FAILED, Outcome(Verdict.PERMANENT, code, detail, fallback=True), at, fallback)
    return Receipt(Delivery.FAILED, Outcome(Verdict.PERMANENT, code, detail), at, fallback)


def _kst(value: Any) -> datetime | None:
    """NHN's result dates ("2026-11-24 10:00:00.0") are Korean time."""
    try:
        when = datetime.fromisoformat(str(value).split(".")[0])
    except ValueError:
        return None
    return when.replace(tzinfo=KST) if when.tzinfo is None else when


def _title_from(text: str) -> str:
    """An LMS needs a title at NHN: the first line, cut to 40 bytes as carriers count them."""
    line = text.strip().splitlines()[0] if text.strip() else "-"
    while carrier_bytes(line).bytes > TITLE_BYTES:
        line = line[:-1]
    return line


def _template(row: dict[str, Any]) -> Template:
    status = STATUS.get(str(row.get("templateStatus") or row.get("status")), TemplateStatus.PENDING)
    buttons = tuple(KakaoButton(type=b["type"], name=b.get("name") or "", url_mobile=b.get("linkMo"),
                                url_pc=b.get("linkPc"), scheme_android=b.get("schemeAndroid"),
                                scheme_ios=b.get("schemeIos"))
                    for b in sorted(row.get("buttons") or [], key=lambda b: b.get("ordering") or 0)
                    if b.get("type") in KNOWN_BUTTONS)
    comments = [c.get("content") for c in row.get("comments") or [] if c.get("status") == "REJ" and c.get("content")]
    return Template(str(row["templateCode"]), str(row.get("templateName") or row["templateCode"]),
                    str(row.get("templateContent") or ""), status, buttons,
                    comments[-1] if comments and status == TemplateStatus.REJECTED else None, "nhncloud")
