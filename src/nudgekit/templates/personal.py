"""One prepared message rendered for one person: the variant for their language, their traits and stage,
the event that triggered it, the values computed for them and the workspace's own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nudgekit.profiles.contacts import FieldError
from nudgekit.templates import links
from nudgekit.templates.people import Reader
from nudgekit.templates.render import Context, Rendered, Unrendered, choose, render
from nudgekit.templates.store import HTML_FIELDS, Prepared


class NotRendered(FieldError):
    """A message for one person that could not be rendered (a one-person send raises it; a campaign's
    send skips the person with the reason instead)."""

    def __init__(self, unrendered: Unrendered) -> None:
        super().__init__(unrendered.field or "message", f"{unrendered.reason}: {unrendered.detail}")
        self.unrendered = unrendered


@dataclass(frozen=True)
class Personal:
    language: str
    """The variant chosen (the person's language, else the fallback)."""
    result: Rendered | Unrendered
    coupons: Mapping[str, str] = field(default_factory=dict)
    """The codes the message was given from coupon pools (templates/coupons.py), by pool."""


def locale_of(language: str) -> str:
    """The form `won` and `date` write: English for an English variant, else Korean."""
    return "en" if language.lower().startswith("en") else "ko"


def personalise(prepared: Prepared, reader: Reader, *, workspace: Mapping[str, Any],
                event: Mapping[str, Any] | None = None, computed: Mapping[str, Any] | None = None,
                coupons: Mapping[str, str] | None = None) -> Personal:
    language, fields = choose(prepared.variants, reader.language, prepared.fallback)
    coupons = coupons or {}
    context = Context(reader.user, event, computed or {}, workspace, locale_of(language), reader.zone,
                      prepared.channel.value, coupons)
    result = render(fields, context, html=HTML_FIELDS, library=prepared.library)
    if isinstance(result, Rendered):
        try:
            links.check(result.fields)
        except links.BadLink as exc:
            return Personal(language, Unrendered("template_error", exc.reason, exc.field), coupons)
    return Personal(language, result, coupons)
