"""Links in a message once rendered: each link to the workspace's own web domains (`[links] domains`) gets
UTM parameters, so the shop's analytics credits the campaign; every link field must still be a link.

Tagged: web addresses in texts (`text`, and `href`s in `html`) and in link fields (push, in-app and card
`link`, buttons' `url`, Brand Message buttons' `url_mobile` / `url_pc`). Left alone: an AlimTalk (its text
and buttons must match the approved template), a webhook's `url`, images, unsubscribe links, links to other
domains, and parameters a link already has (a link written with its own utm_campaign keeps it).

:TRICKY: tagging makes a text longer, so it happens before the policy chain measures it: an SMS may become
an LMS, and preview shows that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from nudgekit.vocabulary import MessageChannel

IN_TEXT = re.compile(r"https?://[^\s<>\"'{}|\\^`]+", re.IGNORECASE)
HREF = re.compile(r"""(href\s*=\s*["'])(https?://[^"']+)""", re.IGNORECASE)
TRAILING = ".,!?;:)]}」』>"
"""Punctuation after a link in a sentence ("https://shop.example/sale." ) is not part of it."""
LINK_FIELDS = ("link", "url_mobile", "url_pc")
UNTAGGED_CHANNELS = (MessageChannel.ALIMTALK, MessageChannel.WEBHOOK)


class BadLink(ValueError):
    """A link field that is not a link once rendered (FieldError words: the field and why)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def medium(channel: MessageChannel) -> str:
    return {MessageChannel.BRAND_MESSAGE: "kakao", MessageChannel.CARD: "content_card"}.get(channel, channel.value)


def check(fields: Mapping[str, Any]) -> None:
    """BadLink for a link field that is not a link: no scheme, a web address without a host, or a space
    (a value rendered into it unencoded: write `{{ value|urlencode }}`)."""
    for path, value in _link_values(fields):
        if not isinstance(value, str) or not value:
            continue
        parts = urlsplit(value)
        if not parts.scheme:
            raise BadLink(path, f"{value!r} is not a link: it needs a scheme (https://, myapp://)")
        if parts.scheme in ("http", "https") and not parts.netloc:
            raise BadLink(path, f"{value!r} is not a web address: it has no host")
        if any(c.isspace() for c in value):
            raise BadLink(path, f"{value!r} has a space in it: encode values put in links (|urlencode)")


def tag(channel: MessageChannel, fields: dict[str, Any], domains: list[str], utm: Mapping[str, str]) -> dict[str, Any]:
    """The fields with UTM parameters on every link to `domains` (and their subdomains)."""
    if not domains or channel in UNTAGGED_CHANNELS:
        return fields
    wanted = {k: v for k, v in utm.items() if v}

    def one(url: str) -> str:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not any(host == d or host.endswith("." + d) for d in domains):
            return url
        query = parse_qsl(parts.query, keep_blank_values=True)
        have = {k for k, _ in query}
        query += [(k, v) for k, v in wanted.items() if k not in have]
        return urlunsplit(parts._replace(query=urlencode(query)))

    return rewrite(fields, one)


def rewrite(fields: dict[str, Any], one: Callable[[str], str], *, buttons: bool = True) -> dict[str, Any]:
    """The fields with every web address in their texts, `html` hrefs and link fields (and, with `buttons`,
    buttons' links) replaced by what `one` makes of it, in the order they appear."""

    def in_text(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            url = match.group(0)
            stripped = url.rstrip(TRAILING)
            return one(stripped) + url[len(stripped):]
        return IN_TEXT.sub(replace, text)

    out = dict(fields)
    for name in ("text", "fallback_text"):
        if isinstance(out.get(name), str):
            out[name] = in_text(out[name])
    if isinstance(out.get("html"), str):
        out["html"] = HREF.sub(lambda m: m.group(1) + one(m.group(2)), out["html"])
    for name in LINK_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = one(out[name])
    if buttons and isinstance(out.get("buttons"), list):
        out["buttons"] = [_button(b, one) for b in out["buttons"]]
    return out


def _button(button: Any, one: Any) -> Any:
    if not isinstance(button, dict):
        return button
    changed = dict(button)
    for name in ("url", *LINK_FIELDS):
        if isinstance(changed.get(name), str) and changed[name].lower().startswith(("http://", "https://")):
            changed[name] = one(changed[name])
    return changed


def _link_values(fields: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(field path, value) of every link field, buttons' included."""
    found = [(name, fields[name]) for name in LINK_FIELDS if name in fields]
    for i, button in enumerate(fields.get("buttons") or []):
        if isinstance(button, dict):
            found += [(f"buttons.{i}.{name}", button[name]) for name in ("url", *LINK_FIELDS) if name in button]
    return found
