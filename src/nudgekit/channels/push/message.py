"""An app push: its model, the checks FCM and APNs would make (payload size, data keys) and the law's (an
advertising push starts with "(광고)" and says how to turn it off, CHANNEL_RULES A5/A7/A11), and the payloads
each platform receives.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nudgekit.channels.check import Checked, Size
from nudgekit.config import PriceSettings
from nudgekit.vocabulary import MessageChannel

AD_LABEL = "(광고)"
PAYLOAD_BYTES = 4096
"""FCM's limit on a message and APNs' on a payload (CHANNEL_RULES E)."""
TTL_MAX_SECONDS = 28 * 24 * 3600
"""FCM keeps a message at most four weeks."""
RESERVED_DATA = re.compile(r"^(from|notification|message_type|google.*|gcm.*|aps)$", re.IGNORECASE)
"""Data keys FCM refuses (INVALID_ARGUMENT)."""
OPTOUT_PATH = re.compile(r"수신\s*거부|알림\s*(끄기|해제|설정)|opt[\s-]*out|unsubscribe", re.IGNORECASE)
"""An advertising push tells the user how to stop them (A7: e.g. "수신거부: 마이 > 설정 > 알림")."""


class PushMessage(BaseModel):
    """A push notification as a marketer writes it."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    text: str | None = None
    """The body line."""
    image: str | None = None
    """An https:// image URL (Android big picture, iOS via a notification service extension)."""
    link: str | None = None
    """A deep link opened on tap (myapp://cart, https://...)."""
    data: dict[str, str] = Field(default_factory=dict)
    """Extra key/values for the app; FCM accepts strings only."""
    badge: int | None = Field(None, ge=0)
    android_channel: str | None = None
    ios_category: str | None = None
    ttl_seconds: int | None = Field(None, ge=0, le=TTL_MAX_SECONDS)
    """How long the platform may hold the push for a phone that is off (0: now or never); default: the
    platform's own (FCM 4 weeks, APNs stores it until delivered)."""
    collapse_key: str | None = Field(None, min_length=1)
    """Pushes with the same key replace each other while undelivered (a price alert only needs the latest)."""
    ad: bool = False
    silent: bool = False
    """A background push with nothing shown: used to learn which tokens are dead (uninstall tracking)."""

    @field_validator("collapse_key")
    @classmethod
    def _collapse_bytes(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) > 64:
            raise ValueError(f"a collapse key is at most 64 bytes (APNs' apns-collapse-id), not {len(value.encode())}")
        return value


def apns_expiration(ttl_seconds: int, now: float) -> str:
    """The apns-expiration header: the epoch second APNs stops trying; 0 means now or never."""
    return str(int(now) + ttl_seconds if ttl_seconds else 0)


def fcm_message(message: PushMessage, token: str, now: float = 0.0) -> dict[str, Any]:
    """The `message` object of FCM HTTP v1's messages:send (`now`, epoch seconds, dates the iOS expiry: FCM
    passes `android.ttl` to Android only, so iOS gets apns-expiration)."""
    body: dict[str, Any] = {"token": token}
    data = dict(message.data)
    if message.link:
        data["link"] = message.link
    if data:
        body["data"] = data
    android: dict[str, Any] = {"priority": "high"}
    apns: dict[str, Any] = {}
    apns_headers: dict[str, str] = {}
    if message.ttl_seconds is not None:
        android["ttl"] = f"{message.ttl_seconds}s"
        apns_headers["apns-expiration"] = apns_expiration(message.ttl_seconds, now)
    if message.collapse_key:
        android["collapse_key"] = message.collapse_key
        apns_headers["apns-collapse-id"] = message.collapse_key
    if message.silent:
        android["priority"] = "normal"
        apns_headers.update({"apns-push-type": "background", "apns-priority": "5"})
        apns = {"payload": {"aps": {"content-available": 1}}}
    else:
        notification = {k: v for k, v in (("title", message.title), ("body", message.text),
                                          ("image", message.image)) if v}
        body["notification"] = notification
        if message.android_channel:
            android["notification"] = {"channel_id": message.android_channel}
        aps = _aps_extras(message)
        if aps:
            apns = {"payload": {"aps": aps}}
    body["android"] = android
    if apns_headers:
        apns["headers"] = apns_headers
    if apns:
        body["apns"] = apns
    return body


def _aps_extras(message: PushMessage) -> dict[str, Any]:
    """The `aps` keys a shown push carries on iOS whichever way it goes (badge, category, image extension)."""
    aps: dict[str, Any] = {}
    if message.badge is not None:
        aps["badge"] = message.badge
    if message.ios_category:
        aps["category"] = message.ios_category
    if message.image:
        aps["mutable-content"] = 1
    return aps


def apns_payload(message: PushMessage) -> dict[str, Any]:
    """The JSON body APNs receives (custom keys beside `aps`)."""
    if message.silent:
        aps: dict[str, Any] = {"content-available": 1}
    else:
        alert = {k: v for k, v in (("title", message.title), ("body", message.text)) if v}
        aps = {"alert": alert, "sound": "default", **_aps_extras(message)}
    payload: dict[str, Any] = {"aps": aps, **message.data}
    if message.link:
        payload["link"] = message.link
    if message.image:
        payload["image"] = message.image
    return payload


def check(message: PushMessage, prices: PriceSettings) -> Checked:
    out = Checked(MessageChannel.PUSH, "silent" if message.silent else None, prices.push)
    shown = f"{message.title or ''}{message.text or ''}"
    if message.silent:
        if shown or message.image:
            out.problem("text", "silent_with_content", "A silent push shows nothing: leave out title, text and image.",
                        "무음 푸시는 화면에 아무것도 보이지 않으니 제목, 내용, 이미지를 빼 주세요.")
        if message.ad:
            out.problem("ad", "silent_ad", "A silent push cannot advertise.", "무음 푸시로는 광고를 보낼 수 없습니다.")
    elif not shown.strip():
        out.problem("text", "empty", "The push has no title and no text.", "푸시에 제목도 내용도 없습니다.")
    for key in message.data:
        if RESERVED_DATA.match(key):
            out.problem(f"data.{key}", "reserved_data_key",
                        f'"{key}" is reserved by FCM and cannot be a data key.',
                        f'"{key}"는 FCM이 쓰는 이름이라 data 키로 쓸 수 없습니다.')
    image = urlsplit(message.image) if message.image is not None else None
    if image is not None and (image.scheme != "https" or not image.netloc):
        out.problem("image", "bad_url", f"{message.image} is not an https:// address.",
                    f"{message.image}은(는) https:// 주소가 아닙니다.")
    if message.link is not None and not urlsplit(message.link).scheme:
        out.problem("link", "bad_url", f"{message.link} is not a link with a scheme (myapp://..., https://...).",
                    f"{message.link}은(는) 올바른 링크가 아닙니다(myapp://..., https://...).")
    size = max(len(orjson.dumps({"message": fcm_message(message, "")})), len(orjson.dumps(apns_payload(message))))
    out.sizes["payload"] = Size(size, PAYLOAD_BYTES, "bytes")
    if size > PAYLOAD_BYTES:
        out.problem("payload", "too_long",
                    f"The push is {size:,} bytes as FCM or APNs receives it; the limit is {PAYLOAD_BYTES:,}. Shorten "
                    "the text or the data.",
                    f"푸시가 {size:,}바이트입니다. FCM과 APNs는 {PAYLOAD_BYTES:,}바이트까지 받으니 "
                    "내용이나 data를 줄여 주세요.")
    if message.ad and not message.silent:
        start = (message.title or message.text or "").lstrip()
        if not start.startswith(AD_LABEL):
            out.problem("title", "ad_label_missing",
                        f'An advertising push must start with "{AD_LABEL}" (the title, or the text when there is '
                        "no title).",
                        f'광고 푸시는 "{AD_LABEL}"로 시작해야 합니다(제목, 제목이 없으면 내용).')
        if not OPTOUT_PATH.search(shown):
            out.problem("text", "optout_path_missing",
                        'An advertising push must say how to stop them, e.g. "수신거부: 마이 > 설정 > 알림".',
                        '광고 푸시에는 수신거부 방법이 있어야 합니다(예: "수신거부: 마이 > 설정 > 알림").')
    return out
