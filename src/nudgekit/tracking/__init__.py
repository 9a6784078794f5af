"""Click and open tracking (docs/tracking.md): web links in a message go through `/c/{token}` on `nudge serve`,
which records the click and redirects to the link as written; HTML email carries a 1-pixel image from
`/o/{token}` that records the open. Each becomes a `message_clicked` / `message_opened` event of the person
the message went to, naming the message, its campaign and variant.

A token is 14 letters and digits: the first 10 bytes of an HMAC of the message id and the link's place in
the message, under the workspace's secret — so nobody can make one up or change one into another, and the
same message planned again gets the same tokens. The link it stands for is stored in the state DB with the
outbox row, in the same transaction; a token that is not there (made up, mistyped, from another workspace)
gets a 404 and is never redirected anywhere.

Left as written: links in AlimTalk (their text must match the approved template) and webhooks, Kakao
buttons, app deep links (only http and https go through us), and links to `public_url` itself (unsubscribe
pages). Without `public_url` nothing is tracked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any

from nudgekit.config import Settings
from nudgekit.templates.links import rewrite
from nudgekit.vocabulary import MessageChannel

TOKEN_BYTES = 10
TOKEN_LENGTH = 14
"""62 ** 14 > 256 ** 10: every token is written with 14 characters."""
DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN = re.compile(rf"[0-9A-Za-z]{{{TOKEN_LENGTH}}}")
OPEN = 0
"""The place of an email's open pixel; links are numbered from 1 in the order they appear."""
UNTRACKED = (MessageChannel.ALIMTALK, MessageChannel.WEBHOOK)
NO_BUTTONS = (MessageChannel.BRAND_MESSAGE,)
PIXEL = ('<img src="{url}" width="1" height="1" alt="" '
         'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">')
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
"""A transparent 1×1 GIF."""


def secret(link_key: bytes) -> bytes:
    """The tracking key, derived from the workspace's link secret (unsubscribe links use it as it is)."""
    return hmac.new(link_key, b"nudgekit tracking", hashlib.sha256).digest()


def token(key: bytes, message_id: str, position: int) -> str:
    number = int.from_bytes(hmac.new(key, f"{message_id}:{position}".encode(), hashlib.sha256).digest()[:TOKEN_BYTES])
    out = []
    for _ in range(TOKEN_LENGTH):
        number, digit = divmod(number, 62)
        out.append(DIGITS[digit])
    return "".join(reversed(out))


def genuine(key: bytes, value: str, message_id: str, position: int) -> bool:
    """Whether `value` is the token of this message's link (a stored row changed by hand is not)."""
    return hmac.compare_digest(value, token(key, message_id, position))


@dataclass
class Tracked:
    fields: dict[str, Any]
    links: list[tuple[str, int, str | None]] = field(default_factory=list)
    """(token, position, link) of each tracked link, and (token, OPEN, None) for an email's pixel."""


def track(channel: MessageChannel, fields: dict[str, Any], message_id: str, key: bytes, settings: Settings) -> Tracked:
    """The fields with their web links going through `/c/` and, for HTML email, the open pixel."""
    base = settings.public_url
    if not base or channel in UNTRACKED:
        return Tracked(fields)
    done = Tracked(fields)
    if settings.links.track_clicks:
        own = base.lower() + "/"

        def one(url: str) -> str:
            if not url.lower().startswith(("http://", "https://")) or url.lower().startswith(own):
                return url
            position = len(done.links) + 1
            value = token(key, message_id, position)
            done.links.append((value, position, url))
            return f"{base}/c/{value}"

        done.fields = rewrite(fields, one, buttons=channel not in NO_BUTTONS)
    html = done.fields.get("html")
    if channel == MessageChannel.EMAIL and settings.links.track_opens and isinstance(html, str):
        value = token(key, message_id, OPEN)
        done.links.append((value, OPEN, None))
        pixel = PIXEL.format(url=f"{base}/o/{value}")
        at = html.lower().rfind("</body>")
        done.fields = {**done.fields, "html": html[:at] + pixel + html[at:] if at >= 0 else html + pixel}
    return done


def find(session: Any, key: bytes, value: str) -> tuple[Any, Any] | None:
    """(the outbox row, the tracked link) a token stands for; None for one made up, mistyped or altered."""
    from nudgekit.store.state import OutboxMessage, TrackedLink

    if not TOKEN.fullmatch(value):
        return None
    link = session.get(TrackedLink, value)
    if link is None or not genuine(key, value, link.message_id, link.position):
        return None
    row = session.get(OutboxMessage, link.message_id)
    return (row, link) if row is not None else None


def safe(url: str | None) -> bool:
    """Only web addresses are redirected to (a stored row changed to javascript: or data: is not)."""
    return bool(url) and re.match(r"https?://[^\s/?#]+", url or "", re.IGNORECASE) is not None
