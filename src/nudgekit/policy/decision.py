"""What the policy chain works on and what it says: the message wanted (`Candidate`), the person it is for
(`Person`), what rules may read (`State`), one rule's `Decision` and the chain's `Ruling`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.orm import Session

from nudgekit.channels.check import Checked
from nudgekit.config import Settings
from nudgekit.consent.history import ConsentState
from nudgekit.policy.hours import Window
from nudgekit.vocabulary import Action, Channel, MessageChannel, MessagePurpose, PolicyStage, Purpose

if TYPE_CHECKING:
    from nudgekit.policy.ledger import Ledger


@dataclass(frozen=True)
class Candidate:
    """One message one campaign (or one caller) wants to send to one person, already checked."""

    message_id: str
    """Fixed before anything else: frequency-cap slots and budget are held under it."""
    channel: MessageChannel
    message: BaseModel
    checked: Checked
    campaign: str | None = None
    priority: int = 0
    """When campaigns compete for the same person within a cap, the higher priority wins a held slot."""
    night: Literal["defer", "drop"] | None = None
    """What the night rule does to it: None follows [policy] night."""
    window: Window | None = None
    """The campaign's send window (local time); outside it the message waits."""
    once_per_hours: float | None = None
    """The campaign's own cap: at most one of its messages to a person within this many hours."""
    budget_krw: float | None = None
    """The campaign's budget: a message that would take its spend past it is skipped."""
    goods: tuple[str, ...] = ()
    """The kinds of goods the message advertises (for the law's purchase exception)."""
    to: str | None = None
    """A fixed address on the channel; None: the person's own."""

    @property
    def purpose(self) -> MessagePurpose:
        return purpose_of(self.channel, self.message)

    @property
    def advertising(self) -> bool:
        return self.purpose == MessagePurpose.ADVERTISING


def purpose_of(channel: MessageChannel, message: BaseModel) -> MessagePurpose:
    return purpose_for(channel, getattr(message, "ad", False) is True)


def purpose_for(channel: MessageChannel, ad: bool) -> MessagePurpose:
    """A Brand Message is advertising by nature; any other message is what its `ad` flag says."""
    advertising = channel == MessageChannel.BRAND_MESSAGE or ad
    return MessagePurpose.ADVERTISING if advertising else MessagePurpose.INFORMATIONAL


OPTIONS = ("message_id", "campaign", "priority", "night", "window", "once_per_hours", "budget_krw", "goods")
"""The Candidate fields a caller sets besides the message itself."""


@dataclass(frozen=True)
class Person:
    """What the rules know of the recipient, read once per gate."""

    profile_id: str
    zone: ZoneInfo
    """Their own time zone (the profile's, else the one their phone number implies, else the workspace's)."""
    jurisdiction: str
    """The country whose rules apply to them (profile trait country, else their phone number's)."""
    consent: Mapping[tuple[Channel, Purpose], ConsentState]
    test: bool = False
    phone: str | None = None
    email: str | None = None
    tokens: tuple[str, ...] = ()
    """Their push tokens that can still receive, newest first."""
    user_id: str | None = None
    language: str | None = None
    kakao_reachable: bool | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    """What templates read of them besides the above (templates/people.py)."""

    def consented(self, channel: Channel, purpose: Purpose) -> ConsentState | None:
        return self.consent.get((channel, purpose))


@dataclass(frozen=True)
class Purchase:
    at: datetime
    kinds: frozenset[str]
    """The order's product categories, lower-cased."""


@dataclass
class State:
    """What rules may read (and, at the QUEUE and HANDOVER stages, claim) besides the message and person."""

    session: Session
    settings: Settings
    stage: PolicyStage
    check: Callable[[MessageChannel, BaseModel], Checked]
    """Check a message the label rule rewrote, as the channel would."""
    purchases: Callable[[str, datetime], list[Purchase]] = lambda profile_id, since: []
    charges: Callable[[MessageChannel], bool] = lambda channel: True
    """Whether the provider of the channel costs money (the sandbox does not)."""
    unsubscribe_link: Callable[[str], str | None] = lambda profile_id: None
    """The person's own signed unsubscribe link for email, when the workspace has a public_url."""
    ledger: Ledger | None = None
    """What the rules read and claim besides the person (policy.ledger): set by the chain for a batch."""
    memo: dict[Any, Any] = field(default_factory=dict)
    """Answers worth keeping across the messages of a batch (a message's check, its labelled form)."""

    def book(self) -> Ledger:
        """The ledger the rules use: the batch's, else one that reads as it goes (a dry run)."""
        if self.ledger is None:
            from nudgekit.policy.ledger import Ledger

            self.ledger = Ledger(self.session, claims=self.claims)
        return self.ledger

    @property
    def claims(self) -> bool:
        return self.stage != PolicyStage.CHECK


@dataclass(frozen=True)
class Decision:
    """One rule's answer, with a reason code for scripts and words for people (English and Korean)."""

    rule: str
    action: Action
    reason: str
    en: str
    ko: str = ""
    until: datetime | None = None
    """For DEFER: the earliest moment it may go."""
    warning: bool = False
    """SEND, but someone should look (copy marked informational that reads like an advertisement)."""
    message: BaseModel | None = None
    """The message as this rule rewrote it (the label rule adds "(광고)" and the opt-out line)."""
    checked: Checked | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "action": self.action.value, "reason": self.reason,
                               "en": self.en, "ko": self.ko}
        if self.until is not None:
            out["until"] = self.until.astimezone(UTC).isoformat()
        if self.warning:
            out["warning"] = True
        return out


def send(rule: str, reason: str, en: str, ko: str = "", **extra: Any) -> Decision:
    return Decision(rule, Action.SEND, reason, en, ko, **extra)


def skip(rule: str, reason: str, en: str, ko: str = "") -> Decision:
    return Decision(rule, Action.SKIP, reason, en, ko)


def defer(rule: str, reason: str, until: datetime, en: str, ko: str = "") -> Decision:
    return Decision(rule, Action.DEFER, reason, en, ko, until=until)


@dataclass(frozen=True)
class Ruling:
    """The chain's answer: the first rule that did not say SEND decides (SEND when none)."""

    action: Action
    reason: str
    decisions: tuple[Decision, ...]
    candidate: Candidate
    """With the message as the rules left it (label and opt-out line added)."""
    stage: PolicyStage
    at: datetime
    evaluation_id: int | None = None
    until: datetime | None = None
    test_user: bool = False

    @property
    def sends(self) -> bool:
        return self.action == Action.SEND

    @property
    def warnings(self) -> list[Decision]:
        return [d for d in self.decisions if d.warning]

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "reason": self.reason, "stage": self.stage.value,
                "at": self.at.astimezone(UTC).isoformat(),
                "until": self.until.astimezone(UTC).isoformat() if self.until else None,
                "message_id": self.candidate.message_id, "campaign": self.candidate.campaign,
                "channel": self.candidate.channel.value, "purpose": self.candidate.purpose.value,
                "evaluation_id": self.evaluation_id, "test_user": self.test_user,
                "decisions": [d.as_dict() for d in self.decisions]}
