"""Settings: NUDGE_* environment variables first, then `nudge.toml` in the workspace, then defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from nudgekit.channels.numbers import optout_number, sender_number
from nudgekit.profiles.contacts import FieldError, normalize_email

CONFIG_FILE = "nudge.toml"
DEFAULT_HOME = Path(".nudge")


def home_from_env() -> Path:
    """The workspace every command works on: NUDGE_HOME, or ./.nudge."""
    return Path(os.environ.get("NUDGE_HOME") or DEFAULT_HOME)


class IngestSettings(BaseModel):
    max_message_bytes: int = 32 * 1024
    """Segment's limit for one message."""
    max_batch_bytes: int = 500 * 1024
    """Segment's limit for one batch request."""
    future_tolerance_hours: float = 24.0
    """Timestamps further than this in the future are rejected."""
    flush_interval_seconds: float = 1.0
    """How often the server moves spooled events into the event store."""


class LifecycleSettings(BaseModel):
    """Thresholds of the six stages (docs/lifecycle.md). Days are calendar days in the workspace time zone."""

    new_days: int = Field(7, ge=1, le=365)
    """New: first seen within the last N days (today counts as one)."""
    usage_cycle_days: int = Field(30, ge=1, le=365)
    """Current users are active within this cycle; past it (but before the churn window) they are `lapsing`."""
    churn_days: int = Field(30, ge=1, le=730)
    """Churn: no activity for at least this many days."""
    power_active_days: int = Field(12, ge=1, le=30)
    """Power: active on at least this many of the last `power_window_days` days ..."""
    power_window_days: int = Field(28, ge=1, le=30)
    power_revenue_top_percent: float = Field(10.0, ge=0, le=100)
    """... or in the top P% of buyers by revenue over the last `power_revenue_days` (0 turns it off)."""
    power_revenue_days: int = Field(90, ge=1, le=730)
    resurrected_days: int = Field(14, ge=1, le=365)
    """Resurrected: stays so for this many days after the return."""
    activity_events: list[str] = Field(default_factory=list)
    """Event names that count as activity; empty means every track/page/screen event not ignored below."""
    ignore_events: list[str] = Field(default_factory=lambda: ["message_*", "app_uninstalled"])
    """Events that never count as activity (message receipts, the uninstall itself). `*` matches any text."""
    uninstall_events: list[str] = Field(default_factory=lambda: ["app_uninstalled"])
    revenue_event: str = "order_completed"
    revenue_property: str = "revenue"

    @model_validator(mode="after")
    def _coherent(self) -> LifecycleSettings:
        if self.usage_cycle_days > self.churn_days:
            raise ValueError(
                f"usage_cycle_days ({self.usage_cycle_days}) is longer than churn_days ({self.churn_days}): a user "
                "cannot still be within the usage cycle after churning; make usage_cycle_days <= churn_days")
        if self.resurrected_days > self.churn_days:
            raise ValueError(
                f"resurrected_days ({self.resurrected_days}) is longer than churn_days ({self.churn_days}): a user "
                "who comes back could churn and come back again while still Resurrected; make it <= churn_days")
        if self.power_active_days > self.power_window_days:
            raise ValueError(f"power_active_days ({self.power_active_days}) cannot exceed power_window_days "
                             f"({self.power_window_days})")
        for name in (*self.activity_events, *self.ignore_events, *self.uninstall_events, self.revenue_event):
            if not name or len(name) > 200:
                raise ValueError(f'"{name}" is not an event name')
        return self


class CommerceSettings(BaseModel):
    """Which events say what a person looked at, put in a cart and bought: what templates' `computed` values
    and recommendations are made from (docs/templates.md#computed-values). Each product is the event's
    properties (an order's are in `properties.products`, as in Segment's e-commerce spec)."""

    view_events: list[str] = Field(default_factory=lambda: ["product_viewed", "Product Viewed"])
    cart_add_events: list[str] = Field(default_factory=lambda: ["added_to_cart", "Product Added"])
    cart_remove_events: list[str] = Field(default_factory=lambda: ["removed_from_cart", "Product Removed"])
    order_events: list[str] = Field(default_factory=lambda: ["order_completed", "Order Completed"])
    product_keys: list[str] = Field(default_factory=lambda: ["product_id", "sku", "id"], min_length=1)
    """The property naming a product: the first of these present."""

    @field_validator("product_keys")
    @classmethod
    def _plain_keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", key):
                raise ValueError(f"{key!r}: a product property is letters, digits, '_' or '-'")
        return value
    popular_days: int = Field(30, ge=1, le=365)
    """`computed.popular`: the most bought products over this many days."""
    popular_by: str = Field("stage", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    """`computed.popular_in_segment` groups people by this: `stage` (their lifecycle stage) or a trait's name
    (`city`, `age_group`)."""
    popular_min_buyers: int = Field(20, ge=1)
    """A group with fewer buyers than this over popular_days takes the workspace-wide list instead (a list
    from a handful of people says more about them than about the group)."""
    recommend: int = Field(5, ge=1, le=50)
    """How many products a recommendation list holds."""


class ApprovalRule(BaseModel):
    """A kind of campaign that only goes live once a second person approves it (docs/campaigns.md#approval):
    every condition given must hold, e.g. purpose = "advertising", audience_over = 50000."""

    model_config = {"extra": "forbid"}

    purpose: Literal["advertising", "informational"] | None = None
    audience_over: int | None = Field(None, ge=0)
    """More people than this in a run's audience (a journey: in its audience segment, or everyone when it
    has none — who could ever enter it)."""
    channels: list[str] = Field(default_factory=list)
    """Any of these channels among its messages."""

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        from nudgekit.vocabulary import MessageChannel

        known = [c.value for c in MessageChannel]
        for channel in value:
            if channel not in known:
                raise ValueError(f"unknown channel {channel!r}; use one of {', '.join(known)}")
        return value

    def said(self) -> str:
        what = f"{self.purpose} campaigns" if self.purpose else "campaigns"
        if self.channels:
            what += f" on {' or '.join(self.channels)}"
        if self.audience_over is not None:
            what += f" to more than {self.audience_over:,} people"
        return what


class CampaignSettings(BaseModel):
    """Campaigns as code (docs/campaigns.md): what preflight holds them to and how often the scheduler looks."""

    max_audience_percent: float = Field(50.0, gt=0, le=100)
    """Preflight refuses an audience larger than this share of everyone in the workspace (a mistake such as a
    condition left out); a campaign meant for nearly everyone says so with its own `audience.max_percent`."""
    link_domains: list[str] = Field(default_factory=list)
    """Web domains besides `[links] domains` that messages may link to (a partner's site); a link elsewhere
    stops preflight."""
    sample: int = Field(50, ge=1, le=1000)
    """How many people preflight renders each message for."""
    tick_seconds: float = Field(10.0, gt=0)
    """How often `nudge serve` launches the runs that are due."""
    approvers: list[str] = Field(default_factory=list)
    """Who may approve a campaign that needs it (their login name, or NUDGE_USER / --as); never the person
    who applied that version."""
    approval: list[ApprovalRule] = Field(default_factory=list)
    """Campaigns that need approval besides those saying `requires_approval`, e.g. [[campaigns.approval]]
    purpose = "advertising", audience_over = 50000."""


class LinkSettings(BaseModel):
    """Links in messages (docs/templates.md#links): which web domains are the workspace's own, whose links get
    UTM parameters (none listed: links are left as written)."""

    domains: list[str] = Field(default_factory=list)
    """e.g. ["shop.example"]: links to it and its subdomains are tagged."""
    utm_source: str = "nudgekit"
    app_scheme: str | None = None
    """The app's URL scheme (`myshop` or `myshop://`): `app_link` writes it in pushes."""
    web_url: str | None = None
    """The web site `app_link` falls back to outside pushes (`https://shop.example`)."""
    track_clicks: bool = True
    """With public_url set: web links in messages go through `/c/{token}`, which records the click
    (docs/tracking.md)."""
    track_opens: bool = True
    """With public_url set: HTML email carries a 1-pixel image from `/o/{token}` that records the open."""

    @field_validator("app_scheme")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = value.strip().removesuffix("://").removesuffix(":")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme) or scheme.lower() in ("http", "https"):
            raise ValueError(f"{value!r} is not an app's scheme (write myshop)")
        return f"{scheme}://"

    @field_validator("web_url")
    @classmethod
    def _site(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d+)?(/\S*)?", value.strip()):
            raise ValueError(f"{value!r} is not a web address (write https://shop.example)")
        return value.strip().rstrip("/")

    @field_validator("domains")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        hosts = [d.strip().lower().removeprefix("https://").removeprefix("http://").strip("/") for d in value]
        for host in hosts:
            if not re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", host):
                raise ValueError(f"{host!r} is not a domain (write shop.example)")
        return hosts


class WarehouseSettings(BaseModel):
    """Warehouse mode: read an existing events table in place through Ibis (docs/lifecycle.md#warehouse-mode)."""

    table: str = "events"
    """The events table (or view) in the backend `NUDGE_EVENTS_URL` points at; `db.table` for another schema."""
    user_id: str = "user_id"
    event: str = "event"
    timestamp: str = "timestamp"
    properties: str | None = "properties"
    """A column of JSON text; None when the table has none."""
    type: str | None = None
    """Segment's message type column (track/page/screen/identify) when the table mixes them; None = all are track."""


def _cp949(ch: str) -> bool:
    try:
        ch.encode("cp949")
    except UnicodeEncodeError:
        return False
    return True


def _email_address(value: str | None) -> str | None:
    """An email address setting, normalised; empty means unset."""
    if not value:
        return None
    try:
        return normalize_email(value)
    except FieldError as exc:
        raise ValueError(exc.reason) from None


class SenderSettings(BaseModel):
    """Who the workspace sends as (docs/channels.md#sender-settings): numbers are registered with the carriers
    and providers first; here they are only declared, and every text message is checked against them."""

    name: str | None = None
    """전송자 명칭: the company or service name advertising must carry."""
    sms_numbers: list[str] = Field(default_factory=list)
    """Registered sender numbers (발신번호); the first is the default."""
    optout_080: str | None = None
    """The provider-issued free opt-out number advertising text messages end with."""
    kakao_sender_key: str | None = None
    """Kakao channel sender key (NHN Cloud) or profile id (Solapi pfId)."""
    kakao_channel: str | None = None
    """The Kakao channel's search id, e.g. @brand."""
    kakao_targeting: list[Literal["I", "M", "N"]] = Field(default_factory=lambda: ["I"])
    """Brand Message targeting modes Kakao allows the channel: I (friends) always; M and N (consented
    non-friends) only once Kakao has qualified the channel."""
    email_from: str | None = None
    email_reply_to: str | None = None
    push_optout: str | None = None
    """How to stop advertising pushes in the app, added to the end of advertising pushes that do not say it,
    e.g. "수신거부: 마이 > 설정 > 알림"."""

    @field_validator("name")
    @classmethod
    def _carried(cls, value: str | None) -> str | None:
        """The name goes into every advertising text message, so it must be one carriers can carry."""
        if not value or not value.strip():
            return None
        value = value.strip()
        outside = [ch for ch in dict.fromkeys(value) if not _cp949(ch)]
        if outside:
            raise ValueError(f"the sender name has characters text messages cannot carry: {' '.join(outside)} "
                             "(emoji and rare symbols); advertising text messages carry the name")
        if len(value) > 40:
            raise ValueError("the sender name is at most 40 characters (it opens every advertising message)")
        return value

    @field_validator("sms_numbers")
    @classmethod
    def _registrable(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(sender_number(n) for n in value))

    @field_validator("optout_080")
    @classmethod
    def _free(cls, value: str | None) -> str | None:
        return optout_number(value) if value else None

    @field_validator("email_from", "email_reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return _email_address(value)


class PriceSettings(BaseModel):
    """What one message costs, in KRW without VAT (docs/channels.md#prices). The defaults are a published
    2026-01 list price (CHANNEL_RULES C); set your contract's prices here."""

    sms: float = Field(12.0, ge=0)
    lms: float = Field(39.0, ge=0)
    mms: float = Field(90.0, ge=0)
    alimtalk: float = Field(10.0, ge=0)
    brand_message_friend: float = Field(25.0, ge=0)
    """A Brand Message to a friend of the Kakao channel."""
    brand_message_nonfriend: float = Field(35.0, ge=0)
    push: float = Field(0.0, ge=0)
    inapp: float = Field(0.0, ge=0)
    card: float = Field(0.0, ge=0)
    email: float = Field(0.0, ge=0)
    webhook: float = Field(0.0, ge=0)


PROVIDER_NAMES = ("sandbox", "inbox", "smtp", "webhook", "fcm", "apns", "solapi", "nhncloud")
"""Providers that exist (docs/channels.md#providers); a name outside this list fails when settings load."""


class ProviderRoutes(BaseModel):
    """Which provider sends each channel. The sandbox — the default — records messages locally instead of
    sending them (`nudge outbox show`)."""

    push: str = "sandbox"
    inapp: str = "inbox"
    """In-app messages and content cards are delivered by nudgekit itself: into each person's inbox, which
    the app reads from `GET /v1/inapp` and `GET /v1/cards`."""
    card: str = "inbox"
    alimtalk: str = "sandbox"
    brand_message: str = "sandbox"
    sms: str = "sandbox"
    email: str = "sandbox"
    webhook: str = "sandbox"
    push_apns: str | None = None
    """Where raw APNs device tokens (hex, from an iOS app registering with Apple directly rather than through
    the Firebase SDK) go instead of `push`: usually "apns"."""

    @field_validator("*")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {value!r} (known: {', '.join(PROVIDER_NAMES)})")
        return value


class SmtpSettings(BaseModel):
    """The SMTP relay email goes through (your ESP's or your own). Put the password in NUDGE_SMTP__PASSWORD
    rather than in nudge.toml."""

    host: str = "127.0.0.1"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    """starttls: upgrade a plain connection (port 587); tls: TLS from the start (port 465); none: local relays."""
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    messages_per_connection: int = Field(100, ge=1)
    return_path: str | None = None
    """The envelope sender (MAIL FROM), where relays mail their bounce reports; default the From address.
    Point it at a mailbox you read with `nudge email bounces`."""

    @field_validator("return_path")
    @classmethod
    def _return_path(cls, value: str | None) -> str | None:
        return _email_address(value)


class FcmSettings(BaseModel):
    """Firebase Cloud Messaging (HTTP v1) for app push."""

    service_account_file: Path | None = None
    """The service account key (JSON) from Firebase console > Project settings > Service accounts."""
    project_id: str | None = None
    """Default: the key's project_id."""
    base_url: str = "https://fcm.googleapis.com"
    timeout_seconds: float = Field(10.0, gt=0)


class ApnsSettings(BaseModel):
    """Apple Push Notification service, token-based (a .p8 key from Apple developer account > Keys)."""

    key_file: Path | None = None
    """The AuthKey_XXXXXXXXXX.p8 file (relative paths are read from the workspace)."""
    key_id: str | None = Field(None, pattern=r"^[A-Z0-9]{10}$")
    team_id: str | None = Field(None, pattern=r"^[A-Z0-9]{10}$")
    bundle_id: str | None = None
    """The app's bundle id (the apns-topic)."""
    environment: Literal["production", "sandbox"] = "production"
    """sandbox for tokens of development builds (Xcode), production for TestFlight and App Store builds."""
    base_url: str | None = None
    """Default: Apple's host for the environment."""
    ca_file: Path | None = None
    """A certificate authority to trust besides the system's (a TLS-inspecting proxy, a test server)."""
    timeout_seconds: float = Field(10.0, gt=0)


class SolapiSettings(BaseModel):
    """Solapi (solapi.com) for SMS / LMS / MMS, AlimTalk and Brand Message. Put the secret in
    NUDGE_SOLAPI__API_SECRET rather than in nudge.toml."""

    api_key: str | None = None
    api_secret: str | None = None
    base_url: str = "https://api.solapi.com"
    timeout_seconds: float = Field(15.0, gt=0)


class NhnCloudSettings(BaseModel):
    """NHN Cloud Notification: the SMS service and the KakaoTalk Bizmessage service each have their own app
    key and secret key (console > Notification > URL & Appkey). Put the secrets in NUDGE_NHNCLOUD__SMS_SECRET_KEY
    and NUDGE_NHNCLOUD__KAKAO_SECRET_KEY rather than in nudge.toml."""

    sms_app_key: str | None = None
    sms_secret_key: str | None = None
    kakao_app_key: str | None = None
    kakao_secret_key: str | None = None
    sms_base_url: str = "https://api-sms.cloud.toast.com"
    kakao_base_url: str = "https://api-alimtalk.cloud.toast.com"
    timeout_seconds: float = Field(15.0, gt=0)


class CapSettings(BaseModel):
    """One frequency cap: at most `limit` messages to a person within any `hours` (a rolling window)."""

    model_config = {"extra": "forbid"}

    channel: str = "*"
    """A message channel (push, sms, alimtalk, brand_message, email, inapp, card, webhook), kakao for both
    Kakao channels, or * for every channel together."""
    purpose: Literal["advertising", "informational", "*"] = "advertising"
    limit: int = Field(ge=1)
    hours: float = Field(24.0, gt=0, le=24 * 366)

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        from nudgekit.vocabulary import MessageChannel

        known = [c.value for c in MessageChannel] + ["kakao", "*"]
        if value not in known:
            raise ValueError(f"unknown channel {value!r}; use one of {', '.join(known)}")
        return value


class PolicySettings(BaseModel):
    """The workspace's compliance and fatigue policy (docs/policy.md): the law's rules are always on; these
    are the choices the law leaves to the sender."""

    model_config = {"extra": "forbid"}

    jurisdiction: str = Field("KR", pattern=r"^[A-Z]{2}$")
    """The sender's own country: its night rule applies to every recipient (the recipient's too)."""
    purchase_exception: bool = False
    """정보통신망법 제50조 ①1: advertise without opt-in to a customer who bought from us within
    `purchase_exception_days`, for the same kind of goods. Off until the workspace decides it applies."""
    purchase_exception_days: int = Field(183, ge=1, le=183)
    """The law says six months after the transaction ended; never more."""
    control_group_percent: float = Field(5.0, ge=0, le=50)
    """The global control group: this share of people never receives advertising, so lift can be measured."""
    control_group_seed: str = Field("nudgekit", min_length=1)
    """Changing it reshuffles who is in the control group."""
    test_list: str = "test_users"
    """The manual list (`nudge list add`) of internal test users: never held out, kept out of metrics."""
    quiet_hours: str | None = None
    """Hours (recipient's local time, HH:MM-HH:MM) without advertising push, text or Kakao messages, on top
    of the legal night rule; e.g. 20:00-09:00."""
    night: Literal["defer", "drop"] = "defer"
    """What happens to advertising that meets the night rule without night consent: held until 08:00 local,
    or dropped. A campaign may say otherwise."""
    inapp_ads_need_consent: bool = False
    """In-app messages and cards are shown inside the app the person opened, like a banner, and are not
    "sent" in the law's sense (CHANNEL_RULES A12); set true to require advertising consent for them too."""
    caps: list[CapSettings] = Field(default_factory=list)
    """Frequency caps across all campaigns, e.g. [[policy.caps]] channel = "push", limit = 1, hours = 24."""

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        from nudgekit.policy.hours import parse_window

        if value is None or not value.strip():
            return None
        return str(parse_window(value))


class InboxSettings(BaseModel):
    """In-app messages and content cards served to the app (docs/channels.md#serving-them-to-the-app)."""

    user_token_secret: str | None = None
    """When set, every inbox request must carry `Nudge-User-Token`: HMAC-SHA256 of the user id with this
    secret, hex, made by your backend — so a write key alone (it ships in the app) cannot read someone
    else's inbox or report for them. A consent button records consent over HTTP only with such a token.
    Prefer NUDGE_INBOX__USER_TOKEN_SECRET."""


class WebhookSettings(BaseModel):
    """Signed JSON POSTs to your own endpoints (docs/channels.md#webhook)."""

    secret: str | None = None
    """The HMAC-SHA256 signing secret receivers verify; required to send. Prefer NUDGE_WEBHOOK__SECRET."""
    timeout_seconds: float = Field(10.0, gt=0)
    allow_local: bool = False
    """Allow http:// URLs and local or private addresses (127.0.0.1, 10.x, localhost) — for testing only;
    otherwise only https:// to public hosts is accepted, so a campaign cannot reach your internal network."""


class DeliverySettings(BaseModel):
    """How workers send the outbox (docs/delivery.md)."""

    batch_size: int = Field(500, ge=1, le=10_000)
    """Messages a worker claims at once."""
    lease_seconds: float = Field(300.0, ge=10)
    """How long a claimed message stays a worker's: a worker that died is noticed after this."""
    max_attempts: int = Field(10, ge=1, le=100)
    """Passing faults (5xx, timeout, connection refused) a message may meet before it fails; a 429 asking
    to slow down does not count."""
    give_up_hours: float = Field(24.0, gt=0, le=24 * 30)
    """A message still not sent this long after it was first due fails as `expired`."""
    retry_base_seconds: float = Field(2.0, gt=0)
    """The first retry waits about this long; each next one twice as long (with jitter)."""
    retry_max_seconds: float = Field(600.0, gt=0)
    rate_per_second: dict[str, float] = Field(default_factory=dict)
    """Messages per second allowed per provider, shared by all workers (e.g. {fcm = 5000}); a provider not
    named uses its documented ceiling, if it has one."""
    circuit_failures: int = Field(5, ge=1)
    """Failed calls in a row that pause a provider."""
    circuit_seconds: float = Field(30.0, gt=0)
    """The first pause; each further one in a row doubles, up to circuit_max_seconds."""
    circuit_max_seconds: float = Field(600.0, gt=0)
    poll_seconds: float = Field(1.0, gt=0, le=60)
    """How often an idle worker looks for due messages."""
    receipts_seconds: float = Field(60.0, gt=0)
    """How often a worker asks the vendors that report later for delivery receipts."""

    @field_validator("rate_per_second")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if name not in PROVIDER_NAMES:
                raise ValueError(f"unknown provider {name!r} (known: {', '.join(PROVIDER_NAMES)})")
            if not rate > 0:
                raise ValueError(f"{name}: a rate is a number of calls per second above 0")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NUDGE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=home_from_env)
    database_url: str | None = None
    """State DB. Default: SQLite file `state.db` in the workspace."""
    events_path: Path | None = None
    """Event store. Default: DuckDB file `events.duckdb` in the workspace."""
    timezone: str = "Asia/Seoul"
    """Workspace time zone; a user's `timezone` trait overrides it for that user."""
    phone_region: str = "KR"
    """Region assumed for phone numbers written without a country code."""
    brand: str = "nudgekit"
    language: str = Field("ko", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    """The language messages are written in when a template says none, and the one a person gets when their
    own language has no variant."""
    host: str = "127.0.0.1"
    public_url: str | None = None
    """The address people's browsers and mail providers reach this server at, e.g. https://nudge.example.com:
    unsubscribe links point there (`nudge serve` answers them). Without it, advertising email needs its own
    unsubscribe_url."""
    port: int = 8000
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    traits: dict[str, str] = Field(default_factory=dict)
    """Declared custom trait types, e.g. {"plan": "string", "points": "number"}."""
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    events_memory_limit: str = Field("1.2GB", pattern=r"^(|\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB))$")
    """How much memory the event store's DuckDB may use before it spills to disk (e.g. "1GB", "512MB"; empty
    for DuckDB's own default of 80% of the machine). On 2M users a full lifecycle recomputation then peaks at
    1.4 GB instead of 2.5 GB in the same time; at 1GB the daily run was 13% slower (docs/performance.md)."""
    events_url: str | None = None
    """An Ibis backend URL (e.g. `pyspark://`, `duckdb:///lake.duckdb`) to read events from instead of the
    workspace's DuckDB file: warehouse mode, read in place with the `[warehouse]` column mapping."""
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    commerce: CommerceSettings = Field(default_factory=CommerceSettings)
    links: LinkSettings = Field(default_factory=LinkSettings)
    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    prices: PriceSettings = Field(default_factory=PriceSettings)
    providers: ProviderRoutes = Field(default_factory=ProviderRoutes)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    fcm: FcmSettings = Field(default_factory=FcmSettings)
    apns: ApnsSettings = Field(default_factory=ApnsSettings)
    solapi: SolapiSettings = Field(default_factory=SolapiSettings)
    nhncloud: NhnCloudSettings = Field(default_factory=NhnCloudSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like Asia/Seoul)") from exc
        return value

    @field_validator("traits")
    @classmethod
    def _known_trait_types(cls, value: dict[str, str]) -> dict[str, str]:
        known = ("string", "number", "boolean", "datetime", "list", "object")
        for name, kind in value.items():
            if kind not in known:
                raise ValueError(f'trait "{name}": unknown type "{kind}"; use one of {", ".join(known)}')
        return value

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"{value!r} is not a web address like https://nudge.example.com")
        return value

    @property
    def state_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'state.db').resolve()}"

    @property
    def events_file(self) -> Path:
        return self.events_path or self.home / "events.duckdb"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        home = _init_home(init_settings) or home_from_env()
        toml = TomlConfigSettingsSource(settings_cls, toml_file=home / CONFIG_FILE)
        return init_settings, env_settings, toml


def _init_home(source: PydanticBaseSettingsSource) -> Path | None:
    values: dict[str, Any] = source()
    home = values.get("home")
    return Path(home) if home else None


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def write_section(home: Path, section: str | None, values: dict[str, Any]) -> None:
    """Set keys of one [section] of the workspace's nudge.toml (None: the top-level keys; a value None
    removes a key), keeping its comments and everything else; written to a temporary file and renamed, so a
    crash leaves the old file or the new."""
    import tomlkit

    path = home / CONFIG_FILE
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    table = document if section is None else document.get(section)
    if table is None:
        table = tomlkit.table()
        document[section] = table
    for key, value in values.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    temporary = path.with_suffix(".toml.tmp")
    temporary.write_text(tomlkit.dumps(document), encoding="utf-8")
    temporary.replace(path)


def load_settings(home: Path | str | None = None, **overrides: Any) -> Settings:
    if home is not None:
        overrides["home"] = Path(home)
    return Settings(**overrides)


DEFAULT_TOML = """\
# nudgekit workspace settings. NUDGE_* environment variables override these.
timezone = "Asia/Seoul"     # workspace time zone; a user's `timezone` trait overrides it
phone_region = "KR"         # region for phone numbers written without +country code
brand = "{brand}"
# public_url = "https://nudge.example.com"   # where `nudge serve` is reachable: unsubscribe links point there
{database_line}

[lifecycle]                 # stage thresholds in calendar days (docs/lifecycle.md)
new_days = 7
usage_cycle_days = 30
churn_days = 30
power_active_days = 12      # active on at least 12 of the last 28 days ...
power_revenue_top_percent = 10   # ... or in the top 10% of buyers by revenue over 90 days
resurrected_days = 14
# activity_events = []      # empty: every track/page/screen event except ignore_events
ignore_events = ["message_*", "app_uninstalled"]

# [prices]                  # KRW per message without VAT; defaults in docs/channels.md#prices
# sms = 12
# lms = 39
# mms = 90
# alimtalk = 10

[sender]                    # who messages come from (docs/channels.md#sender-settings)
# name = "브랜드"             # 전송자 명칭, required on advertising
# sms_numbers = ["0212345678"]   # registered sender numbers (발신번호); the first is the default
# optout_080 = "0801234567"      # free opt-out number for advertising text messages
# kakao_sender_key = ""          # Kakao channel sender key / profile id
# email_from = "news@example.com"

[providers]                 # who sends each channel: "sandbox" records messages instead (docs/channels.md#providers)
# push = "fcm"
# sms = "solapi"
# alimtalk = "solapi"
# brand_message = "solapi"
# email = "smtp"
# webhook = "webhook"

# [smtp]                    # password: set NUDGE_SMTP__PASSWORD rather than writing it here
# host = "smtp.example.com"
# port = 587
# security = "starttls"     # starttls | tls | none
# username = "apikey"
# return_path = "bounces@mail.example.com"   # where bounce reports go; read them with `nudge email bounces`

# [solapi]                  # SMS, AlimTalk and Brand Message; secret: set NUDGE_SOLAPI__API_SECRET
# api_key = "NCS..."

# [nhncloud]                # or NHN Cloud; secrets: NUDGE_NHNCLOUD__SMS_SECRET_KEY, NUDGE_NHNCLOUD__KAKAO_SECRET_KEY
# sms_app_key = ""
# kakao_app_key = ""

# [fcm]                     # app push through Firebase Cloud Messaging
# service_account_file = "firebase-key.json"

# [webhook]                 # signing secret: set NUDGE_WEBHOOK__SECRET rather than writing it here
# timeout_seconds = 10

[ingest]
max_message_bytes = 32768
max_batch_bytes = 512000
future_tolerance_hours = 24
"""
