"""The words nudgekit uses for its ideas: one StrEnum per idea, the same in code, CLI, API and docs."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """A way to reach a user. Consent is kept per channel."""

    PUSH = "push"
    """App push (FCM, APNs)."""
    SMS = "sms"
    """SMS, LMS and MMS: one channel, three types."""
    KAKAO = "kakao"
    """Kakao AlimTalk and Brand Message."""
    EMAIL = "email"
    """Email."""
    INAPP = "inapp"
    """In-app / in-browser messages and content cards."""


class Purpose(StrEnum):
    """What a consent is for."""

    ADVERTISING = "advertising"
    """영리목적 광고성 정보: needs prior opt-in per channel."""
    NIGHT = "night"
    """야간 수신동의: advertising between 21:00 and 08:00 local time, consented to separately."""


class ConsentChange(StrEnum):
    """The two things a consent record can say."""

    GRANTED = "granted"
    """수신동의."""
    WITHDRAWN = "withdrawn"
    """수신거부 / 철회."""


class ConsentSource(StrEnum):
    """How a consent change reached us: the law asks us to prove how, not just when."""

    SIGNUP_FORM = "signup_form"
    SETTINGS_SCREEN = "settings_screen"
    OPTOUT_080_CALL = "optout_080_call"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    IMPORT = "import"
    IN_APP = "in_app"
    SMS_REPLY = "sms_reply"
    API = "api"
    """An admin API call or an identify call that did not name its source."""
    ADMIN = "admin"
    """An operator using `nudge consent set` without naming another source."""
    MERGE = "merge"
    """Copied from an anonymous profile when it was linked to a known user."""


class KeyScope(StrEnum):
    """What an API key may do."""

    WRITE = "write"
    """Send events and profiles (the Segment write key)."""
    ADMIN = "admin"
    """Read profiles and change consents through /api/v1."""


class Platform(StrEnum):
    """Device platform of a push token."""

    IOS = "ios"
    ANDROID = "android"
    WEB = "web"


class TokenStatus(StrEnum):
    """Whether a push token can still receive pushes."""

    VALID = "valid"
    INVALID = "invalid"


class MessageType(StrEnum):
    """Segment message types we accept."""

    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    ALIAS = "alias"
    GROUP = "group"


class EventSource(StrEnum):
    """Which door an event came through."""

    HTTP = "http"
    IMPORT = "import"
    PYTHON = "python"
    DEMO = "demo"


class EventName(StrEnum):
    """Event names the rest of nudgekit relies on. Any other (custom) event name is accepted too."""

    SIGNED_UP = "signed_up"
    APP_OPENED = "app_opened"
    APP_INSTALLED = "app_installed"
    APP_UNINSTALLED = "app_uninstalled"
    PRODUCT_VIEWED = "product_viewed"
    ADDED_TO_CART = "added_to_cart"
    CHECKOUT_STARTED = "checkout_started"
    ORDER_COMPLETED = "order_completed"
    PUSH_PERMISSION_CHANGED = "push_permission_changed"
    """properties.enabled: bool — the OS notification permission, not advertising consent."""
    MESSAGE_SENT = "message_sent"
    MESSAGE_DELIVERED = "message_delivered"
    MESSAGE_FAILED = "message_failed"
    MESSAGE_OPENED = "message_opened"
    MESSAGE_CLICKED = "message_clicked"
    MESSAGE_COMPLAINED = "message_complained"
    """The person reported the message as spam (an email complaint)."""


class Stage(StrEnum):
    """A user's lifecycle stage. Precedence when several apply: the order below (docs/lifecycle.md)."""

    UNINSTALL = "uninstall"
    """삭제: an uninstall signal after the last activity, and no activity since."""
    CHURN = "churn"
    """이탈: no activity for at least the churn window."""
    NEW = "new"
    """신규: first seen within the last `new_days` days."""
    RESURRECTED = "resurrected"
    """복귀: came back after a gap of at least the churn window (or after uninstalling), recently."""
    POWER = "power"
    """파워: active on many recent days, or among the top buyers by revenue."""
    CURRENT = "current"
    """기존: everyone else who has been seen."""


class TransitionSource(StrEnum):
    """What noticed a stage change."""

    RUN = "run"
    """`nudge lifecycle run` (or the scheduled run)."""
    EVENT = "event"
    """An incoming event from a Churn or Uninstall user: Resurrected at once."""


class MessageChannel(StrEnum):
    """Where a message goes: each has its own message model, limits, price and providers (docs/channels.md).

    Consent is kept per `Channel` (Kakao's two channels share one consent, in-app messages and content cards
    another): `CONSENT_CHANNEL` maps a message channel to the consent it needs for advertising."""

    PUSH = "push"
    """App push through FCM or APNs."""
    INAPP = "inapp"
    """In-app / in-browser message, shown by our SDK endpoint."""
    CARD = "card"
    """Content card, kept in the user's feed until it expires."""
    ALIMTALK = "alimtalk"
    """Kakao AlimTalk: informational only, an approved template."""
    BRAND_MESSAGE = "brand_message"
    """Kakao Brand Message: advertising, successor of FriendTalk."""
    SMS = "sms"
    """SMS, LMS or MMS, chosen from the length and images."""
    EMAIL = "email"
    """Email through SMTP."""
    WEBHOOK = "webhook"
    """A signed POST to the customer's URL, for anything else."""


CONSENT_CHANNEL: dict[MessageChannel, Channel | None] = {
    MessageChannel.PUSH: Channel.PUSH, MessageChannel.INAPP: Channel.INAPP, MessageChannel.CARD: Channel.INAPP,
    MessageChannel.ALIMTALK: Channel.KAKAO, MessageChannel.BRAND_MESSAGE: Channel.KAKAO,
    MessageChannel.SMS: Channel.SMS, MessageChannel.EMAIL: Channel.EMAIL, MessageChannel.WEBHOOK: None,
}


class SmsType(StrEnum):
    """The three kinds of text message on Korean carriers (CHANNEL_RULES C)."""

    SMS = "SMS"
    """Up to 90 bytes, no subject."""
    LMS = "LMS"
    """Up to 2,000 bytes, with an optional subject of up to 40 bytes."""
    MMS = "MMS"
    """An LMS with up to three JPEG images."""


class TemplateStatus(StrEnum):
    """Where a Kakao AlimTalk template stands in Kakao's review; only APPROVED templates can be sent."""

    PENDING = "pending"
    """Registered, review not started (NHN TSC01, Solapi PENDING)."""
    INSPECTING = "inspecting"
    """Kakao is reviewing it, usually within two business days (NHN TSC02, Solapi INSPECTING)."""
    APPROVED = "approved"
    """Approved: messages from it can be sent (NHN TSC03, Solapi APPROVED)."""
    REJECTED = "rejected"
    """Refused by the review; the comment says why (NHN TSC04, Solapi REJECTED)."""
    DORMANT = "dormant"
    """Unused for a year, or stopped by Kakao: cannot be sent until reactivated."""


class KakaoButtonType(StrEnum):
    """Kakao message buttons (AlimTalk and Brand Message use the same codes)."""

    WEB_LINK = "WL"
    """Opens a web page: `url_mobile` (and optionally `url_pc`)."""
    APP_LINK = "AL"
    """Opens the app: `scheme_android` / `scheme_ios`, with a mobile web page as a fallback."""
    DELIVERY = "DS"
    """Delivery tracking: Kakao finds the courier and tracking number in the text."""
    BOT_KEYWORD = "BK"
    """Sends the button's name to the channel's chatbot."""
    MESSAGE_DELIVERY = "MD"
    """Sends the message's text to the channel's chatbot."""
    CHANNEL_ADD = "AC"
    """Adds the Kakao channel as a friend."""
    CONSULT = "BC"
    """Switches to a consultation chat (상담톡)."""
    BOT = "BT"
    """Switches to the channel's chatbot."""
    BUSINESS_FORM = "BF"
    """Opens a Kakao business form."""


class BrandFormat(StrEnum):
    """What a Kakao Brand Message looks like (CHANNEL_RULES B)."""

    TEXT = "text"
    """Text only, up to 1,300 characters."""
    IMAGE = "image"
    """An image with up to 400 characters of text."""
    WIDE = "wide"
    """A wide image with up to 76 characters of text and at most two buttons."""


class Targeting(StrEnum):
    """Who a Brand Message may reach (CHANNEL_RULES B)."""

    I = "I"  # noqa: E741 - Kakao's own letter
    """Only friends of the Kakao channel among the recipients."""
    M = "M"
    """Users who gave the advertiser marketing consent, friends or not (needs a qualifying channel)."""
    N = "N"
    """Consented users who are not friends of the channel (needs a qualifying channel)."""


class MessagePurpose(StrEnum):
    """What a message is for: it decides which of the law's rules apply (CHANNEL_RULES A12)."""

    INFORMATIONAL = "informational"
    """정보성: order, payment, delivery, security notices; no consent needed, never promotional."""
    ADVERTISING = "advertising"
    """광고성: anything that promotes (a coupon or a discount makes the whole message advertising)."""


class Action(StrEnum):
    """What a policy rule (and the chain as a whole) decides for one message to one person."""

    SEND = "send"
    """Nothing stops it."""
    DEFER = "defer"
    """Not now: it may go at the time the decision names (night, quiet hours, Kakao's hours)."""
    SKIP = "skip"
    """It must not go; the reason code says why."""


class PolicyStage(StrEnum):
    """When the policy chain looked at a message."""

    CHECK = "check"
    """A dry run (`nudge message check --user`): nothing is claimed or recorded."""
    QUEUE = "queue"
    """Before the message enters the outbox: frequency-cap slots and budget are held."""
    HANDOVER = "handover"
    """The moment it is handed to a provider: consent and suppression are read again (a withdrawal since
    queueing wins), held slots are spent."""


class OutboxState(StrEnum):
    """Where one message in the outbox stands (delivery/outbox.py)."""

    QUEUED = "queued"
    """Waiting for a worker (from `due_at`: a retry waits out its backoff here)."""
    DEFERRED = "deferred"
    """The policy chain said not before `due_at` (night, quiet hours, the campaign's window)."""
    CLAIMED = "claimed"
    """A worker holds it (until `lease_until`) and has not called the provider yet."""
    HANDING = "handing"
    """Being handed to the provider: if its worker dies now, nobody knows whether it went out."""
    SENT = "sent"
    """The provider accepted it (delivery receipts come later)."""
    SKIPPED = "skipped"
    """The policy chain said it must not go; `reason` says why."""
    FAILED = "failed"
    """It cannot go: a permanent error, an invalid recipient, or retries used up; `reason` says which."""
    IN_DOUBT = "in_doubt"
    """It may or may not have gone out (a crash or timeout mid-send) and was not sent again."""
    CANCELLED = "cancelled"
    """Its campaign was cancelled before it went."""


class CampaignSendState(StrEnum):
    """Whether a campaign's messages are going out."""

    RUNNING = "running"
    PAUSED = "paused"
    """Workers leave its messages in the outbox until it is resumed."""
    CANCELLED = "cancelled"
    """Its messages still waiting were cancelled; nothing more of it goes."""


class CampaignState(StrEnum):
    """Where an applied campaign stands (campaigns/live.py)."""

    SCHEDULED = "scheduled"
    """Its next run waits for its time."""
    LIVE = "live"
    """A journey taking people in."""
    AWAITING_APPROVAL = "awaiting_approval"
    """Applied, and waits for a second person to approve this version: nothing of it launches and nobody
    enters (people already in a journey walk on, on the version they entered)."""
    FINISHED = "finished"
    """Every run it will have has launched."""
    PAUSED = "paused"
    """Nothing of it goes, and no run launches, until it is resumed (by a person, or a canary guardrail)."""
    CANCELLED = "cancelled"


class JourneyState(StrEnum):
    """Where one person's walk through a journey stands."""

    ACTIVE = "active"
    """On a step, or waiting for its time or an event."""
    FINISHED = "finished"
    """Walked to the end."""
    EXITED = "exited"
    """Taken out: an exit event, the goal, entering again (restart), the journey cancelled."""


class RunState(StrEnum):
    """Where one run (occurrence) of a campaign stands."""

    LAUNCHING = "launching"
    """Claimed by a scheduler that is queueing it (relaunched if left so: the process died)."""
    QUEUED = "queued"
    """Its messages are in the outbox."""
    CANARY = "canary"
    """The canary's messages are in the outbox; the rest waits for `release_at` and the guardrails."""
    RELEASING = "releasing"
    HALTED = "halted"
    """A guardrail tripped: the rest was not released and the campaign is paused."""
