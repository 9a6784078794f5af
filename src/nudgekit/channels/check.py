"""What checking a message says: every reason a provider would refuse it, in words a marketer reads (English
and Korean), the measured sizes against their limits, and the price — before anything is sent or charged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nudgekit.vocabulary import MessageChannel


@dataclass(frozen=True)
class Problem:
    """One reason the message cannot go out as it is."""

    field: str
    """Which part of the message: text, subject, images[1], sender_number, ..."""
    code: str
    """A stable reason code for scripts (`too_long`, `unsupported_characters`, ...)."""
    en: str
    ko: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "en": self.en, "ko": self.ko}


@dataclass(frozen=True)
class Size:
    """A measured length against its limit (bytes as the carrier counts them, or characters)."""

    value: int
    limit: int
    unit: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "limit": self.limit, "unit": self.unit}


@dataclass
class Checked:
    """The outcome of checking one message: sendable when `problems` is empty."""

    channel: MessageChannel
    type: str | None
    """The message type the channel picked (SMS / LMS / MMS for text messages)."""
    cost_krw: float
    sizes: dict[str, Size] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    """Things that will not stop the send but may look wrong on some phones."""
    rendered: dict[str, Any] = field(default_factory=dict)
    """What the recipient will read when it differs from what was written (an AlimTalk's filled template)."""
    fallback: Fallback | None = None
    """The text message sent instead when the recipient cannot be reached on this channel (Kakao -> SMS)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, code: str, en: str, ko: str) -> None:
        self.problems.append(Problem(where, code, en, ko))

    def warn(self, where: str, code: str, en: str, ko: str) -> None:
        self.warnings.append(Problem(where, code, en, ko))

    def attach(self, fallback: Fallback) -> None:
        """Keep the fallback; its problems become this message's, named fallback.<field>: a message whose
        fallback would be refused is refused before anything is sent."""
        self.fallback = fallback
        for kept, found in ((self.problems, fallback.checked.problems), (self.warnings, fallback.checked.warnings)):
            kept.extend(Problem(f"fallback.{p.field}", p.code, f"Fallback text message: {p.en}",
                                f"대체 문자: {p.ko}") for p in found)

    def as_dict(self) -> dict[str, Any]:
        out = {"channel": self.channel.value, "type": self.type, "ok": self.ok, "cost_krw": self.cost_krw,
               "sizes": {k: v.as_dict() for k, v in self.sizes.items()},
               "problems": [p.as_dict() for p in self.problems], "warnings": [w.as_dict() for w in self.warnings]}
        if self.rendered:
            out["rendered"] = self.rendered
        if self.fallback is not None:
            out["fallback"] = self.fallback.as_dict()
        return out


@dataclass(frozen=True)
class Fallback:
    """A checked text message standing in for a Kakao message (대체발송), billed at its own price."""

    message: Any
    """The SmsMessage."""
    checked: Checked

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.checked.type, "cost_krw": self.checked.cost_krw,
                "sizes": {k: v.as_dict() for k, v in self.checked.sizes.items()},
                "message": self.message.model_dump(mode="json", exclude_none=True, exclude_defaults=True)}
