"""An email: its model, every reason it would be refused or land badly, and the MIME message providers send.

Advertising email follows 정보통신망법 제50조 (CHANNEL_RULES A5–A7): the subject starts with "(광고)", the
sender's name is stated, and an unsubscribe link is both in the body and in the `List-Unsubscribe` header
with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), which Gmail and Yahoo require of bulk
senders. Email has no night-time ban (A4).
"""

from __future__ import annotations

import html as html_lib
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage as MimeMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

import nh3
from pydantic import BaseModel, ConfigDict

from nudgekit.channels.check import Checked, Size
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.profiles.contacts import FieldError, normalize_email
from nudgekit.vocabulary import MessageChannel

AD_LABEL = "(광고)"
GMAIL_CLIP_BYTES = 102_000
"""Gmail hides everything after the first ~102 KB of HTML behind "[Message clipped]" — including, usually,
the unsubscribe link at the bottom."""
ONE_CLICK = "List-Unsubscribe=One-Click"


class EmailMessage(BaseModel):
    """An email as a marketer writes it; the sender defaults come from `[sender]` in nudge.toml."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    text: str | None = None
    """The plain-text part; made from the HTML when only HTML is given."""
    html: str | None = None
    from_email: str | None = None
    """Default: [sender] email_from."""
    from_name: str | None = None
    """Default: [sender] name."""
    reply_to: str | None = None
    """Default: [sender] email_reply_to."""
    ad: bool = False
    """Advertising (광고성 정보): label, sender name and unsubscribe link required."""
    unsubscribe_url: str | None = None
    """The one-click unsubscribe link (https) put in the List-Unsubscribe header; must appear in the body too."""
    unsubscribe_mailto: str | None = None
    """An optional mailto: address offered beside the link."""


def check(message: EmailMessage, sender: SenderSettings, prices: PriceSettings) -> Checked:
    """Every reason the email would be refused, bounce or break the law, its sizes and price."""
    out = Checked(MessageChannel.EMAIL, None, prices.email)
    subject = message.subject.strip()
    if not subject:
        out.problem("subject", "empty", "The email has no subject.", "메일 제목이 비어 있습니다.")
    if "\n" in message.subject or "\r" in message.subject:
        out.problem("subject", "line_break_in_subject", "A subject cannot contain line breaks.",
                    "메일 제목에는 줄바꿈을 넣을 수 없습니다.")
    body = (message.text or "") + (message.html or "")
    if not body.strip():
        out.problem("text", "empty", "The email has no body: give a text part, an HTML part or both.",
                    "메일 본문이 비어 있습니다. 텍스트나 HTML 본문을 넣어 주세요.")
    if message.html is not None:
        size = len(message.html.encode("utf-8"))
        out.sizes["html"] = Size(size, GMAIL_CLIP_BYTES, "bytes")
        if size > GMAIL_CLIP_BYTES:
            out.warn("html", "gmail_clips",
                     f"Gmail cuts HTML over {GMAIL_CLIP_BYTES:,} bytes and hides the rest (often the unsubscribe "
                     "link) behind \"[Message clipped]\".",
                     f"HTML이 {GMAIL_CLIP_BYTES:,}바이트를 넘으면 Gmail이 나머지(대개 수신거부 링크 포함)를 "
                     "\"[메시지 잘림]\" 뒤로 숨깁니다.")
    _check_address(out, "from_email", message.from_email or sender.email_from, required=True)
    _check_address(out, "reply_to", message.reply_to or sender.email_reply_to, required=False)
    if message.unsubscribe_url is not None:
        _check_unsubscribe_url(out, message.unsubscribe_url)
    if message.unsubscribe_mailto is not None:
        _check_address(out, "unsubscribe_mailto", message.unsubscribe_mailto.removeprefix("mailto:"), required=True)
    if message.ad:
        _check_ad(out, message, subject, body, sender)
    return out


def _check_address(out: Checked, where: str, value: str | None, *, required: bool) -> None:
    if value is None:
        if required:
            out.problem(where, "no_from_address",
                        "No sender address: set [sender] email_from in nudge.toml (`nudge sender set --email-from`).",
                        "보내는 사람 주소가 없습니다. nudge.toml의 [sender] email_from"
                        "(`nudge sender set --email-from`)을 설정해 주세요.")
        return
    try:
        normalize_email(value)
    except FieldError as exc:
        out.problem(where, "bad_address", exc.reason[0].upper() + exc.reason[1:] + ".",
                    f"{value}은(는) 쓸 수 없는 메일 주소입니다.")


def _check_unsubscribe_url(out: Checked, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        out.problem("unsubscribe_url", "bad_unsubscribe_url", f"{url} is not a web link (https://...).",
                    f"{url}은(는) 웹 링크(https://...)가 아닙니다.")
    elif parts.scheme == "http":
        out.warn("unsubscribe_url", "one_click_needs_https",
                 "One-click unsubscribe needs an https:// link; Gmail and Yahoo ignore an http:// one.",
                 "원클릭 수신거부 링크는 https://여야 합니다. Gmail과 Yahoo는 http:// 링크를 무시합니다.")


def _check_ad(out: Checked, message: EmailMessage, subject: str, body: str, sender: SenderSettings) -> None:
    if not subject.startswith(AD_LABEL):
        out.problem("subject", "ad_label_missing",
                    f'An advertising email must start its subject with "{AD_LABEL}" exactly.',
                    f'광고 메일은 제목이 "{AD_LABEL}"로 정확히 시작해야 합니다.')
    if not (message.from_name or sender.name):
        out.problem("sender", "no_sender_name",
                    "Advertising must name its sender: set [sender] name in nudge.toml (`nudge sender set --name`).",
                    "광고에는 전송자 명칭이 있어야 합니다. nudge.toml의 [sender] name(`nudge sender set --name`)을 "
                    "설정해 주세요.")
    if message.unsubscribe_url is None:
        out.problem("unsubscribe_url", "no_unsubscribe_link",
                    "Advertising email needs an unsubscribe link (unsubscribe_url): it goes in the body and in the "
                    "one-click List-Unsubscribe header.",
                    "광고 메일에는 수신거부 링크(unsubscribe_url)가 있어야 합니다. 본문과 원클릭 수신거부 헤더에 "
                    "들어갑니다.")
    elif message.unsubscribe_url not in body and html_lib.escape(message.unsubscribe_url) not in body:
        out.problem("text", "unsubscribe_link_not_in_body",
                    "The unsubscribe link must also appear in the body, where every reader can find it.",
                    "수신거부 링크가 본문에도 있어야 합니다.")


_BLOCK_END = re.compile(r"(?i)<br\s*/?>|</(?:p|div|h[1-6]|li|tr|table|blockquote)\s*>")

MESSAGE_ID_HEADER = "X-Nudge-Message-Id"
"""Our message id, on every email, so a bounce report that returns the original headers names the message."""


def plain_text_of(html: str) -> str:
    """A readable text part from HTML: block ends become line breaks, tags and scripts go, entities decode."""
    marked = _BLOCK_END.sub(lambda m: m.group(0) + "\n", html)
    stripped = nh3.clean(marked, tags=set(), clean_content_tags={"script", "style", "head", "title"})
    lines = (" ".join(line.split()) for line in html_lib.unescape(stripped).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def to_mime(message: EmailMessage, to: str, sender: SenderSettings, *, message_id: str,
            now: datetime) -> MimeMessage:
    """The MIME message as it goes over SMTP (text and HTML as alternatives; unsubscribe headers)."""
    from_email = normalize_email(message.from_email or sender.email_from or "")
    mime = MimeMessage()
    mime["From"] = Address(message.from_name or sender.name or "", addr_spec=from_email)
    mime["To"] = to
    mime["Subject"] = message.subject.strip()
    mime["Date"] = format_datetime(now)
    mime["Message-ID"] = make_msgid(idstring=re.sub(r"[^A-Za-z0-9.\-]", "-", message_id)[:64],
                                    domain=from_email.rpartition("@")[2])
    mime[MESSAGE_ID_HEADER] = message_id
    reply_to = message.reply_to or sender.email_reply_to
    if reply_to:
        mime["Reply-To"] = reply_to
    links = []
    if message.unsubscribe_url:
        links.append(f"<{message.unsubscribe_url}>")
    if message.unsubscribe_mailto:
        links.append(f"<mailto:{message.unsubscribe_mailto.removeprefix('mailto:')}>")
    if links:
        mime["List-Unsubscribe"] = ", ".join(links)
    if message.unsubscribe_url and message.unsubscribe_url.startswith("https://"):
        mime["List-Unsubscribe-Post"] = ONE_CLICK
    text = message.text if message.text is not None else plain_text_of(message.html or "")
    mime.set_content(text)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html")
    return mime
