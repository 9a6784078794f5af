"""The words a person will read in a message, field by field, for the rules that read copy (purpose, label)."""

from __future__ import annotations

from pydantic import BaseModel

from nudgekit.channels.check import Checked

SHOWN_FIELDS = ("subject", "title", "text", "fallback_subject", "fallback_text")


def shown(message: BaseModel, checked: Checked | None = None) -> dict[str, str]:
    """field -> text for every field a person reads (the filled AlimTalk template as `text`; HTML as text)."""
    out = {name: value for name in SHOWN_FIELDS if isinstance(value := getattr(message, name, None), str) and value}
    html = getattr(message, "html", None)
    if isinstance(html, str) and html:
        from nudgekit.channels.email.message import plain_text_of

        out["html"] = plain_text_of(html)
    if checked is not None and isinstance(checked.rendered.get("text"), str):
        out["text"] = checked.rendered["text"]
    return out
