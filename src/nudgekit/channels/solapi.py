"""Solapi (api.solapi.com): SMS / LMS / MMS, Kakao AlimTalk and Brand Message through one REST API.

Requests are signed with `Authorization: HMAC-SHA256 apiKey=, date=, salt=, signature=` where the signature
is hex(HMAC-SHA256(secret, date + salt)). Messages go in one `POST /messages/v4/send-many/detail` of up to
10,000; Solapi answers 200 with the ones it registered (`messageList`, status 2000) and the ones it refused
(`failedMessageList`, a 1xxx status code), each found again by the id we put in its customFields.
Images are uploaded first (`POST /storage/v1/files`) and sent by fileId.

:TRICKY: an AlimTalk is given Solapi's own SMS fallback (`disableSms: false`): whether the recipient uses
KakaoTalk is only known after delivery, long after this call, and only the vendor can fall back then. Solapi
sends the AlimTalk's own text as that SMS/LMS. Brand Messages have no vendor fallback at Solapi, so
theirs is sent by us when Solapi refuses the recipient outright.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import phonenumbers

from nudgekit.channels.kakao.alimtalk import AlimtalkMessage
from nudgekit.channels.kakao.brand import BrandMessage
from nudgekit.channels.kakao.buttons import KNOWN_BUTTONS, KakaoButton
from nudgekit.channels.kakao.templates import Template
from nudgekit.channels.numbers import digits_of
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
from nudgekit.channels.sms.message import SmsMessage, normalised
from nudgekit.config import SenderSettings, SolapiSettings
from nudgekit.vocabulary import BrandFormat, MessageChannel, TemplateStatus

SEND = "/messages/v4/send-many/detail"
MAX_BATCH = 10_000
MMS_IMAGE_BYTES = 200_000
"""Solapi's MMS image limit (200 KB, one JPEG), stricter than the 300 KB our check allows for every provider."""

ACCEPTED = frozenset({"2000", "3000", "4000"})
"""Registered, handed to the carrier, received."""
RETRYABLE = frozenset({"1024", "2024", "3012", "3024", "3040", "3053"})
"""Server errors and carrier queues: nothing reached the phone, it may go again."""
NO_RECIPIENT = frozenset({"3010", "3032", "3050"})
"""Bad number, not a subscriber, the handset cannot receive text messages."""
NOT_A_KAKAO_USER = "3104"
"""Not a KakaoTalk user: remembered, later Kakao messages go straight to the fallback."""
NOT_NOW_ON_KAKAO = frozenset({"3102", "3107"})
"""Not a friend of the channel (a Brand Message only), KakaoTalk unused for 72 h or AlimTalk blocked: this
message falls back, but the person may be reached on Kakao another time, so nothing is remembered."""
PENDING = frozenset({"2000", "3000"})
"""Registered, or with the carrier / Kakao and not yet reported: a receipt poll asks again later."""
RECEIPTS_PER_CALL = 100
"""Message ids asked about in one list call (the URL stays short)."""
STATUS = {TemplateStatus.PENDING: "PENDING", TemplateStatus.INSPECTING: "INSPECTING",
          TemplateStatus.APPROVED: "APPROVED", TemplateStatus.REJECTED: "REJECTED"}


class SolapiError(ValueError):
    """Solapi refused a call that is not a send (templates, balance): the operator must act."""


def authorization(api_key: str, api_secret: str, now: datetime, salt: str | None = None) -> str:
    date = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    salt = salt or secrets.token_hex(16)
    signature = hmac.new(api_secret.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
    return f"HMAC-SHA256 apiKey={api_key}, date={date}, salt={salt}, signature={signature}"


def classify(code: str, detail: str, channel: MessageChannel) -> Outcome:
    """A message's Solapi status code as a verdict (developers.solapi.com message status codes)."""
    if code in ACCEPTED:
        return Outcome(Verdict.ACCEPTED, code, detail)
    if code in RETRYABLE:
        return Outcome(Verdict.RETRYABLE, code, detail)
    if channel in (MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE):
        if code == NOT_A_KAKAO_USER:
            return Outcome(Verdict.INVALID_RECIPIENT, code, detail, fallback=True)
        if code in NOT_NOW_ON_KAKAO:
            return Outcome(Verdict.PERMANENT, code, detail, fallback=True)
    if code in NO_RECIPIENT:
        return Outcome(Verdict.INVALID_RECIPIENT, code, detail)
    if code == "3108":
        return Outcome(Verdict.RETRYABLE, code, f"{detail} (outside Kakao's sending hours)")
    return Outcome(Verdict.PERMANENT, code, detail)


KOREAN_E164 = re.compile(r"\+82[1-9]\d{6,10}")
"""A Korean number as stored (E.164): read without parsing it again."""


def recipient(number: str) -> tuple[str, str]:
    """Solapi's `to` and `country`: Korean numbers as dialled at home (010...), others without their prefix."""
    if KOREAN_E164.fullmatch(number):
        return f"0{number[3:]}", "82"
    parsed = phonenumbers.parse(number)
    national = str(parsed.national_number)
    return (f"0{national}" if parsed.country_code == 82 else national), str(parsed.country_code)


def _button(button: KakaoButton) -> dict[str, Any]:
    """An AlimTalk button in Solapi's words."""
    out = {"buttonType": button.type.value, "buttonName": button.name, "linkMo": button.url_mobile,
           "linkPc": button.url_pc, "linkAnd": button.scheme_android, "linkIos": button.scheme_ios}
    return {k: v for k, v in out.items() if v is not None}


def _brand_button(button: KakaoButton) -> dict[str, Any]:
    """A Brand Message button: the same links under other names than AlimTalk's."""
    out = {"linkType": button.type.value, "name": button.name, "linkMobile": button.url_mobile,
           "linkPc": button.url_pc, "linkAndroid": button.scheme_android, "linkIos": button.scheme_ios}
    return {k: v for k, v in out.items() if v is not None}


class SolapiProvider:
    name = "solapi"
    capabilities = Capabilities(
        channels=frozenset({MessageChannel.SMS, MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE}),
        batch_size=MAX_BATCH)

    def __init__(self, settings: SolapiSettings, sender: SenderSettings, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not settings.api_key or not settings.api_secret:
            raise ValueError("solapi: set [solapi] api_key and NUDGE_SOLAPI__API_SECRET (Solapi console > API Key)")
        self.settings = settings
        self.sender = sender
        self.clock = clock
        self.client = httpx.AsyncClient(base_url=settings.base_url, timeout=settings.timeout_seconds,
                                        transport=transport)
        self._uploaded: dict[tuple[Path, str], str] = {}

    def _headers(self) -> dict[str, str]:
        assert self.settings.api_key and self.settings.api_secret
        return {"Authorization": authorization(self.settings.api_key, self.settings.api_secret, self.clock()),
                "Content-Type": "application/json"}

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        wire: list[dict[str, Any]] = []
        for i, envelope in enumerate(batch):
            try:
                message = await self._message(envelope)
            except Refused as refused:
                outcomes[i] = refused.outcome
                continue
            message["customFields"] = {"nudge_id": envelope.message_id}
            wire.append(message)
        if wire:
            answers = await self._send_many(wire, [e for e, o in zip(batch, outcomes, strict=True) if o is None])
            pending = iter(answers)
            outcomes = [o if o is not None else next(pending) for o in outcomes]
        return [o for o in outcomes if o is not None]

    async def _send_many(self, wire: list[dict[str, Any]], envelopes: list[Envelope]) -> list[Outcome]:
        body = {"messages": wire, "allowDuplicates": True, "showMessageList": True}
        try:
            response = await self.client.post(SEND, content=orjson.dumps(body), headers=self._headers())
        except httpx.TransportError as exc:
            return [failed_request("solapi", exc) for _ in envelopes]
        if response.status_code != 200:
            return [self._refused(response) for _ in envelopes]
        try:
            answer = response.json()
            registered = {self._key(m): m for m in answer.get("messageList") or []}
            failed = {self._key(m): m for m in answer.get("failedMessageList") or []}
        except (ValueError, AttributeError, TypeError):
            return [Outcome(Verdict.UNCERTAIN, "malformed", f"solapi answered 200 with {response.text[:200]!r}")
                    for _ in envelopes]
        outcomes = []
        for envelope in envelopes:
            if (entry := failed.get(envelope.message_id)) is not None:
                outcome = classify(str(entry.get("statusCode")), str(entry.get("statusMessage") or ""),
                                   envelope.channel)
            elif (entry := registered.get(envelope.message_id)) is not None:
                outcome = classify(str(entry.get("statusCode") or "2000"), str(entry.get("statusMessage") or ""),
                                   envelope.channel)
            else:
                outcomes.append(Outcome(Verdict.UNCERTAIN, None, "solapi's answer does not mention this message"))
                continue
            outcomes.append(Outcome(outcome.verdict, outcome.code, outcome.detail.strip(), entry.get("messageId"),
                                    fallback=outcome.fallback))
        return outcomes

    @staticmethod
    def _key(entry: dict[str, Any]) -> str | None:
        return (entry.get("customFields") or {}).get("nudge_id")

    def _refused(self, response: httpx.Response) -> Outcome:
        """A whole request refused: auth (403), validation (400), rate (429), or the server (5xx)."""
        try:
            error = response.json()
            code, text = str(error.get("errorCode")), str(error.get("errorMessage") or "")
        except (ValueError, AttributeError):
            code, text = str(response.status_code), response.text[:200]
        status = response.status_code
        return refused_request(status, code, f"solapi {status} {code}: {text}", response.headers.get("retry-after"),
                               self.clock())

    async def _message(self, envelope: Envelope) -> dict[str, Any]:
        to, country = recipient(envelope.to)
        base = {"to": to, "country": country}
        message = envelope.message
        if isinstance(message, SmsMessage):
            return {**base, **await self._sms(message, envelope.type)}
        if isinstance(message, AlimtalkMessage):
            return {**base, **self._alimtalk(message, envelope)}
        if isinstance(message, BrandMessage):
            return {**base, **await self._brand(message)}
        raise Refused(Outcome(Verdict.PERMANENT, "unsupported", f"solapi cannot send {envelope.channel.value}"))

    def _from(self, wanted: str | None) -> str:
        number = wanted or (self.sender.sms_numbers[0] if self.sender.sms_numbers else None)
        if number is None:
            raise Refused(Outcome(Verdict.PERMANENT, "no_sender_number", "no registered sender number"))
        return digits_of(number)

    async def _sms(self, message: SmsMessage, kind: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self._from(message.sender_number), "text": normalised(message.text),
                               "type": kind or "SMS", "autoTypeDetect": False}
        if message.subject:
            out["subject"] = normalised(message.subject).strip()
        if message.images:
            if len(message.images) > 1:
                raise Refused(Outcome(Verdict.PERMANENT, "one_image",
                                       "Solapi sends one image per MMS; this message has "
                                       f"{len(message.images)}"))
            image = message.images[0]
            size = len(read_image(image))
            if size > MMS_IMAGE_BYTES:
                raise Refused(Outcome(Verdict.PERMANENT, "image_too_large",
                                       f"{image.name} is {size / 1000:.0f} KB; Solapi takes MMS images up to 200 KB"))
            out["imageId"] = await self._upload(image, "MMS")
        return out

    def _alimtalk(self, message: AlimtalkMessage, envelope: Envelope) -> dict[str, Any]:
        options: dict[str, Any] = {
            "pfId": self.sender.kakao_sender_key, "templateId": message.template,
            "variables": {f"#{{{k}}}": v for k, v in message.values().items()},
            "disableSms": not message.fallback}
        out: dict[str, Any] = {"type": "ATA", "kakaoOptions": options}
        if message.fallback:
            out["from"] = self._from(message.sender_number)
        return out

    async def _brand(self, message: BrandMessage) -> dict[str, Any]:
        bubble = {BrandFormat.TEXT: "TEXT", BrandFormat.IMAGE: "IMAGE", BrandFormat.WIDE: "WIDE"}[message.format]
        bms: dict[str, Any] = {"targeting": message.targeting.value, "chatBubbleType": bubble}
        if message.image is not None:
            bms["imageId"] = await self._upload(message.image, "BMS_WIDE" if bubble == "WIDE" else "BMS")
            if message.image_link:
                bms["imageLink"] = message.image_link
        if message.buttons:
            bms["buttons"] = [_brand_button(b) for b in message.buttons]
        return {"type": "BMS_FREE", "text": message.text.strip(),
                "kakaoOptions": {"pfId": self.sender.kakao_sender_key, "disableSms": True, "bms": bms}}

    async def _upload(self, path: Path, kind: str) -> str:
        """The fileId of an uploaded image, uploading each file once per provider."""
        known = self._uploaded.get((path, kind))
        if known is not None:
            return known
        body = {"file": base64.b64encode(read_image(path)).decode(), "type": kind, "name": path.name}
        try:
            response = await self.client.post("/storage/v1/files", content=orjson.dumps(body), headers=self._headers())
        except httpx.TransportError as exc:
            raise Refused(Outcome(Verdict.RETRYABLE, "upload", f"solapi image upload: {exc!r}")) from None
        if response.status_code != 200:
            refused = self._refused(response)
            verdict = Verdict.RETRYABLE if refused.verdict == Verdict.UNCERTAIN else refused.verdict
            raise Refused(Outcome(verdict, refused.code, f"image upload: {refused.detail}"))
        try:
            file_id = str(response.json().get("fileId") or "")
        except (ValueError, AttributeError):
            file_id = ""
        if not file_id:
            raise Refused(Outcome(Verdict.RETRYABLE, "upload", "solapi's upload answer has no fileId"))
        self._uploaded[(path, kind)] = file_id
        return file_id

    async def _get(self, path: str, params: Any = None) -> Any:
        try:
            response = await self.client.get(path, params=params, headers=self._headers())
        except httpx.TransportError as exc:
            raise SolapiError(f"solapi is unreachable: {exc!r}") from None
        if response.status_code != 200:
            raise SolapiError(self._refused(response).detail)
        try:
            return response.json()
        except ValueError:
            raise SolapiError(f"solapi answered {path} with {response.text[:200]!r}") from None

    async def templates(self) -> list[Template]:
        """Every AlimTalk template of the workspace's Kakao channel, page by page."""
        found: list[Template] = []
        start: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if self.sender.kakao_sender_key:
                params["channelId"] = self.sender.kakao_sender_key
            if start:
                params["startKey"] = start
            page = await self._get("/kakao/v2/templates", params)
            for entry in page.get("templateList") or []:
                if not entry.get("isDeleted"):
                    found.append(_template(entry))
            start = page.get("nextKey")
            if not start:
                return found

    async def receipts(self, sent: list[Sent]) -> dict[str, Receipt]:
        """What became of messages Solapi registered: `GET /messages/v4/list` by messageIds, page by page.

        :TRICKY: Solapi's own SMS fallback of an AlimTalk is not tied to the AlimTalk in its documented
        message list, so a Kakao failure is reported without saying whether that SMS arrived."""
        ours = {s.provider_message_id: s for s in sent}
        found: dict[str, Receipt] = {}
        ids = list(ours)
        for start in range(0, len(ids), RECEIPTS_PER_CALL):
            chunk = ids[start:start + RECEIPTS_PER_CALL]
            next_key: str | None = None
            keys: set[str | None] = set()
            while True:
                params: list[tuple[str, str | int]] = [("messageIds", i) for i in chunk]
                params.append(("limit", RECEIPTS_PER_CALL))
                if next_key:
                    params.append(("startKey", next_key))
                try:
                    page = await self._get("/messages/v4/list", params)
                    listed = page.get("messageList") or {}
                    entries = listed.values() if isinstance(listed, dict) else listed
                    for entry in entries:
                        message = ours.get(str(entry.get("messageId")))
                        if message is not None:
                            found[message.message_id] = _receipt(entry, message)
                    next_key = page.get("nextKey") or None
                    if next_key is not None and next_key in keys:
                        raise ReceiptsUnavailable(f"solapi repeated the page key {next_key!r}")
                    keys.add(next_key)
                except SolapiError as exc:
                    raise ReceiptsUnavailable(str(exc)) from None
                except (AttributeError, TypeError) as exc:
                    raise ReceiptsUnavailable(f"solapi's message list is malformed: {exc!r}") from None
                if not next_key:
                    break
        return found

    async def balance(self) -> dict[str, float]:
        """Cash and points (points are spent like cash), in KRW."""
        answer = await self._get("/cash/v1/balance")
        return {"balance": float(answer.get("balance") or 0), "point": float(answer.get("point") or 0)}

    async def aclose(self) -> None:
        await self.client.aclose()




def _receipt(entry: dict[str, Any], message: Sent) -> Receipt:
    """One message of Solapi's list as a receipt: 4000 received, another 1xxx–3xxx failed, 2000 / 3000 and
    anything unrecognised still pending. An AlimTalk Solapi was to replace with an SMS that failed on Kakao
    has a fallback whose fate the list does not tell (see `receipts`): it is neither refunded nor resent."""
    code = str(entry.get("statusCode") or "")
    detail = str(entry.get("reason") or entry.get("statusMessage") or "").strip()
    at = _date(entry.get("dateReceived") or entry.get("dateReported") or entry.get("dateUpdated"))
    if code == "4000":
        return Receipt(Delivery.DELIVERED, Outcome(Verdict.ACCEPTED, code, detail, entry.get("messageId")), at)
    if code in PENDING or not re.fullmatch(r"[123]\d{3}", code):
        return Receipt(Delivery.PENDING, Outcome(Verdict.ACCEPTED, code, detail), at)
    outcome = classify(code, detail, message.channel)
    replaced = message.channel == MessageChannel.ALIMTALK and message.fallback_requested and outcome.fallback
    return Receipt(Delivery.FAILED, outcome, at, Delivery.UNKNOWN if replaced else None)


def _date(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _template(entry: dict[str, Any]) -> Template:
    status = {v: k for k, v in STATUS.items()}.get(str(entry.get("status")), TemplateStatus.PENDING)
    comments = [c.get("content") for c in entry.get("comments") or [] if c.get("content")]
    buttons = tuple(KakaoButton(type=b["buttonType"], name=b.get("buttonName") or "", url_mobile=b.get("linkMo"),
                                url_pc=b.get("linkPc"), scheme_android=b.get("linkAnd"), scheme_ios=b.get("linkIos"))
                    for b in entry.get("buttons") or [] if b.get("buttonType") in KNOWN_BUTTONS)
    return Template(str(entry["templateId"]), str(entry.get("name") or entry["templateId"]),
                    str(entry.get("content") or ""), status, buttons,
                    comments[-1] if comments and status == TemplateStatus.REJECTED else None, "solapi")

