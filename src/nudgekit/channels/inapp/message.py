"""In-app / in-browser messages and content cards: their models and checks. Neither goes through a vendor:
nudgekit keeps them in the recipient's inbox and serves them to the app (`GET /v1/inapp`, `GET /v1/cards`),
so the checks are ours — what fits a phone screen, links that open, HTML that cannot run code — and they
hold what the app is given.

A button does one of four things: open a link, close the message, record a consent ("혜택 알림 받기":
advertising consent on the channels it names, source `in_app`, the law's proof of how the user opted in),
or ask the app to show the store's review prompt.

Custom HTML is sanitised with nh3 (no scripts, event handlers, frames, forms or javascript: links; inline
styles keep a list of layout and typography properties). What the sanitiser removed is listed as a warning;
the app only ever receives the sanitised HTML.
"""

from __future__ import annotations

import html.parser
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import nh3
from pydantic import BaseModel, ConfigDict, Field

from nudgekit.channels.check import Checked, Size
from nudgekit.config import PriceSettings
from nudgekit.vocabulary import Channel, MessageChannel

MAX_TTL = timedelta(days=30)
"""How long a message or card may wait in the inbox (Braze's content-card ceiling, CHANNEL_RULES E)."""
DEFAULT_TTL = MAX_TTL
HTML_BYTES = 100 * 1024
LIMITS = {"title": 100, "text": 1000, "banner_text": 200, "card_text": 500}
"""Characters: what still reads on a phone screen (our limits; no vendor imposes them)."""
BLOCKED_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob", "intent", "content", "about",
                             "chrome", "android-app"})
"""Schemes that run code or reach into the phone; an app's own deep-link scheme (myapp://) is fine."""

HTML_TAGS = nh3.ALLOWED_TAGS | {"button", "section", "main", "picture", "source"}
HTML_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
HTML_ATTRIBUTES["*"] = {"class", "style", "dir", "lang", "title", "data-nudge-action", "data-nudge-url",
                        "data-nudge-channels"}
"""No `id`: it could overwrite the renderer's own names (DOM clobbering)."""
HTML_ATTRIBUTES["source"] = {"srcset", "media", "type"}
HTML_ATTRIBUTES["img"] = HTML_ATTRIBUTES["img"] | {"srcset", "loading"}
STYLE_PROPERTIES = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "line-height", "letter-spacing", "text-align", "text-decoration", "text-transform", "white-space",
    "margin", "margin-top", "margin-right", "margin-bottom", "margin-left", "padding", "padding-top",
    "padding-right", "padding-bottom", "padding-left", "border", "border-color", "border-style", "border-width",
    "border-radius", "border-top", "border-bottom", "width", "height", "max-width", "max-height", "min-width",
    "min-height", "display", "flex", "flex-direction", "justify-content", "align-items", "gap",
    "vertical-align", "box-sizing", "object-fit", "overflow"})
"""Inline styles a design needs; nothing that positions over the app, turns invisible or loads from elsewhere
(and a value with `url(` is dropped whole)."""
URL_SCHEMES = frozenset({"https", "http", "mailto", "tel", "sms"})


ACTIONS = ("link", "dismiss", "consent", "review")


class InappButton(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=30)
    action: Literal["link", "dismiss", "consent", "review"] = "link"
    url: str | None = None
    """For `link`: a deep link (myapp://...) or a web address."""
    consent_channels: list[Channel] = Field(default_factory=lambda: [Channel.PUSH])
    """For `consent`: where the user agrees to receive advertising (push by default)."""


class InappMessage(BaseModel):
    """A message shown inside the app or web page the next time the user is there."""

    model_config = ConfigDict(extra="forbid")

    layout: Literal["modal", "banner", "fullscreen", "html"] = "modal"
    title: str | None = None
    text: str | None = None
    image: str | None = None
    """An https:// image."""
    link: str | None = None
    """Opened when the message itself is tapped (a banner has no buttons)."""
    buttons: list[InappButton] = Field(default_factory=list)
    html: str | None = None
    """The whole message for the `html` layout; sanitised before the app gets it."""
    ttl_seconds: int | None = Field(None, ge=60)
    """How long it waits to be shown; default and ceiling 30 days."""
    ad: bool = False


class CardMessage(BaseModel):
    """A content card: kept in the user's feed (an inbox, a coupon wall) until dismissed or expired."""

    model_config = ConfigDict(extra="forbid")

    title: str
    text: str | None = None
    image: str | None = None
    link: str | None = None
    pinned: bool = False
    """Pinned cards come first in the feed."""
    ttl_seconds: int | None = Field(None, ge=60)
    ad: bool = False


def _scheme_problem(out: Checked, where: str, value: str, *, https_only: bool = False) -> None:
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if https_only and (scheme != "https" or not parts.netloc):
        out.problem(where, "bad_url", f"{value} is not an https:// address.", f"{value}은(는) https:// 주소가 아닙니다.")
    elif not scheme or scheme in BLOCKED_SCHEMES or (scheme in ("http", "https") and not parts.netloc):
        out.problem(where, "bad_url", f"{value} is not a link that opens (myapp://..., https://...).",
                    f"{value}은(는) 열 수 있는 링크가 아닙니다(myapp://..., https://...).")


def _length(out: Checked, where: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    out.sizes[where] = Size(len(value), limit, "characters")
    if len(value) > limit:
        out.problem(where, "too_long", f"The {where} is {len(value):,} characters; at most {limit:,} fit on a phone "
                    "screen.", f"{where}이(가) {len(value):,}자입니다. 휴대폰 화면에는 {limit:,}자까지 들어갑니다.")


def _ttl(out: Checked, ttl_seconds: int | None) -> None:
    if ttl_seconds is not None and ttl_seconds > MAX_TTL.total_seconds():
        out.problem("ttl_seconds", "too_long", "A message waits in the inbox at most 30 days.",
                    "인박스에는 최대 30일까지 보관됩니다.")


def check_inapp(message: InappMessage, prices: PriceSettings) -> Checked:
    out = Checked(MessageChannel.INAPP, message.layout, prices.inapp)
    if message.layout == "html":
        if not (message.html or "").strip():
            out.problem("html", "empty", "The html layout needs its HTML.", "html 레이아웃에는 HTML이 필요합니다.")
        for name in ("title", "text", "image", "link"):
            if getattr(message, name) is not None:
                out.problem(name, "not_in_html_layout", f"The html layout is all HTML: put the {name} in it.",
                            f"html 레이아웃은 HTML이 전부입니다. {name}은(는) HTML 안에 넣어 주세요.")
        if message.buttons:
            out.problem("buttons", "not_in_html_layout",
                        'The html layout is all HTML: make buttons with data-nudge-action="dismiss|consent|review|link".',
                        'html 레이아웃은 HTML이 전부입니다. 버튼은 data-nudge-action 속성으로 만들어 주세요.')
        if message.html:
            _check_html(out, message.html)
    else:
        if message.html is not None:
            out.problem("html", "html_needs_layout", 'HTML is shown only with layout "html".',
                        'HTML은 "html" 레이아웃에서만 보입니다.')
        if not f"{message.title or ''}{message.text or ''}".strip():
            out.problem("text", "empty", "The message has no title and no text.", "메시지에 제목도 내용도 없습니다.")
        _length(out, "title", message.title, LIMITS["title"])
        _length(out, "text", message.text, LIMITS["banner_text" if message.layout == "banner" else "text"])
        if message.layout == "banner" and message.buttons:
            out.problem("buttons", "banner_buttons", "A banner has no buttons: give it a link, opened on tap.",
                        "배너에는 버튼이 없습니다. 탭하면 열리는 링크를 넣어 주세요.")
        if len(message.buttons) > 2:
            out.problem("buttons", "too_many", f"{len(message.buttons)} buttons; a message has at most 2.",
                        f"버튼이 {len(message.buttons)}개입니다. 최대 2개까지 넣을 수 있습니다.")
    if message.image is not None:
        _scheme_problem(out, "image", message.image, https_only=True)
    if message.link is not None:
        _scheme_problem(out, "link", message.link)
    for i, button in enumerate(message.buttons, 1):
        where = f"buttons[{i}]"
        if button.action == "link":
            if button.url is None:
                out.problem(f"{where}.url", "missing", f'Button "{button.label}" opens a link but has none.',
                            f'"{button.label}" 버튼에 열 링크가 없습니다.')
            else:
                _scheme_problem(out, f"{where}.url", button.url)
        elif button.url is not None:
            out.problem(f"{where}.url", "not_a_link_button", f'Button "{button.label}" does {button.action}; a url is '
                        "only for link buttons.", f'"{button.label}" 버튼은 링크 버튼이 아니라 url을 쓰지 않습니다.')
        if button.action == "consent" and not button.consent_channels:
            out.problem(f"{where}.consent_channels", "missing", f'Button "{button.label}" records a consent: name '
                        "the channels.", f'"{button.label}" 버튼이 기록할 수신 동의 채널을 정해 주세요.')
    _ttl(out, message.ttl_seconds)
    return out


def check_card(message: CardMessage, prices: PriceSettings) -> Checked:
    out = Checked(MessageChannel.CARD, "pinned" if message.pinned else None, prices.card)
    if not message.title.strip():
        out.problem("title", "empty", "A card needs a title.", "카드에는 제목이 필요합니다.")
    _length(out, "title", message.title, LIMITS["title"])
    _length(out, "text", message.text, LIMITS["card_text"])
    if message.image is not None:
        _scheme_problem(out, "image", message.image, https_only=True)
    if message.link is not None:
        _scheme_problem(out, "link", message.link)
    _ttl(out, message.ttl_seconds)
    return out


def sanitise(markup: str) -> str:
    """The HTML the app receives."""
    return nh3.clean(markup, tags=set(HTML_TAGS), attributes=HTML_ATTRIBUTES, url_schemes=set(URL_SCHEMES),
                     filter_style_properties=set(STYLE_PROPERTIES), attribute_filter=_attribute_filter,
                     clean_content_tags={"script", "style"}, link_rel="noopener noreferrer")


def _attribute_filter(tag: str, name: str, value: str) -> str | None:
    """A deep link in data-nudge-url may use the app's own scheme, never one that runs code; images come from
    https:// only (no tracking over plain http); no style loads anything."""
    if name == "data-nudge-url" and urlsplit(value.strip()).scheme.lower() in BLOCKED_SCHEMES | {""}:
        return None
    if name == "data-nudge-action" and value not in ACTIONS:
        return None
    if name == "style" and "url(" in value.lower().replace(" ", ""):
        return None
    if name == "src" and urlsplit(value.strip()).scheme.lower() != "https":
        return None
    if name == "srcset" and any(urlsplit(c.strip().split(" ")[0]).scheme.lower() != "https"
                                for c in value.split(",") if c.strip()):
        return None
    return value


def _check_html(out: Checked, markup: str) -> None:
    size = len(markup.encode())
    out.sizes["html"] = Size(size, HTML_BYTES, "bytes")
    if size > HTML_BYTES:
        out.problem("html", "too_long", f"The HTML is {size:,} bytes; the limit is {HTML_BYTES:,}. Host large "
                    "images and link them.", f"HTML이 {size:,}바이트입니다. {HTML_BYTES:,}바이트까지 가능합니다.")
        return
    clean = sanitise(markup)
    out.rendered["html"] = clean
    for i, button in enumerate(html_buttons(clean), 1):
        where = f"html button {i} ({button['label'] or button['action']})"
        if button["action"] == "link" and not button.get("url"):
            out.problem("html", "missing", f'The {where} opens a link but has no data-nudge-url that opens.',
                        f'HTML 버튼 {i}에 열 수 있는 data-nudge-url이 없습니다.')
        unknown = button.get("unknown_channels", [])
        if unknown:
            out.problem("html", "unknown_channel", f"The {where} names channels that do not exist: "
                        f"{', '.join(unknown)} (known: {', '.join(c.value for c in Channel)}).",
                        f"HTML 버튼 {i}의 data-nudge-channels에 없는 채널이 있습니다: {', '.join(unknown)}.")
    removed = sorted(_parts(markup) - _parts(clean))
    if removed:
        shown = ", ".join(removed[:20]) + (" ..." if len(removed) > 20 else "")
        out.warn("html", "html_sanitised", f"Removed from the HTML (scripts, event handlers and outside content do "
                 f"not run in in-app messages): {shown}.",
                 f"HTML에서 제거했습니다(스크립트, 이벤트 핸들러, 외부 콘텐츠는 실행되지 않습니다): {shown}.")


class _Parts(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.add(f"<{tag}>")
        for name, value in attrs:
            if name == "style":
                self.found.update(f"{tag}[style:{p.split(':')[0].strip().lower()}]" for p in (value or "").split(";")
                                  if ":" in p)
            else:
                self.found.add(f"{tag}[{name}]" if name not in ("href", "src") else f"{tag}[{name}={_scheme(value)}]")


def _scheme(value: str | None) -> str:
    return urlsplit((value or "").strip()).scheme.lower() or "relative"


def _parts(markup: str) -> set[str]:
    parser = _Parts()
    parser.feed(markup)
    parser.close()
    return parser.found


VOID = frozenset({"area", "br", "col", "hr", "img", "source", "wbr"})


class _Actions(html.parser.HTMLParser):
    """The elements of custom HTML that act (data-nudge-action), in document order, with their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[dict[str, Any]] = []
        self._open: list[tuple[int, dict[str, Any]]] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        action = named.get("data-nudge-action")
        if action in ACTIONS:
            button: dict[str, Any] = {"label": "", "action": action}
            if action == "link" and named.get("data-nudge-url"):
                button["url"] = named["data-nudge-url"]
            if action == "consent":
                words = (named.get("data-nudge-channels") or "push").replace(",", " ").split()
                known = {c.value for c in Channel}
                button["consent_channels"] = [w for w in dict.fromkeys(words) if w in known]
                button["unknown_channels"] = [w for w in dict.fromkeys(words) if w not in known]
            self.found.append(button)
            if tag not in VOID:
                self._open.append((self._depth, button))
        if tag not in VOID:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        self._depth = max(0, self._depth - 1)
        while self._open and self._open[-1][0] >= self._depth:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, button in self._open:
            button["label"] = " ".join(f"{button['label']} {data}".split())[:60]


def html_buttons(clean: str) -> list[dict[str, Any]]:
    """The buttons of custom HTML as the app reports them: number N is the N-th element with a
    data-nudge-action, in document order."""
    parser = _Actions()
    parser.feed(clean)
    parser.close()
    return parser.found


def expiry(ttl_seconds: int | None, now: datetime) -> datetime:
    return now + (timedelta(seconds=ttl_seconds) if ttl_seconds is not None else DEFAULT_TTL)


def served(message: InappMessage | CardMessage) -> dict[str, Any]:
    """What the app receives: the message with sanitised HTML and nothing unset."""
    body = message.model_dump(mode="json", exclude_none=True, exclude={"ttl_seconds"})
    if isinstance(message, InappMessage) and message.html is not None:
        body["html"] = sanitise(message.html)
        body["buttons"] = [{k: v for k, v in b.items() if k != "unknown_channels"} for b in html_buttons(body["html"])]
    if isinstance(message, InappMessage):
        for button in body.get("buttons", []):
            if button["action"] != "consent":
                button.pop("consent_channels", None)
    return body
