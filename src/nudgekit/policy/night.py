"""Rule 6, the night: advertising between 21:00 and 08:00 in the recipient's own time zone needs a separate
night-time consent (정보통신망법 제50조 ③; email is exempt, CHANNEL_RULES A4). Without it the message waits
until 08:00 local — or is dropped when the campaign (or [policy] night) says so — and is never sent.

The sender's own country's rule applies to every recipient, and the recipient's country's rule on top where
it is known and differs: in the US no telephone solicitation (text messages included) before 08:00 or after
21:00 local, and no consent lifts it (TCPA, 47 CFR 64.1200(c)(1)) — applied to advertising push as well, which
the TCPA does not name, because state laws and app stores expect the same restraint. Kakao's own hours for advertising
(Brand Message 08:00-20:50, Korean time) apply on top of both, whatever the consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from nudgekit.policy.decision import Candidate, Decision, Person, State, defer, send, skip
from nudgekit.policy.hours import Window
from nudgekit.vocabulary import CONSENT_CHANNEL, MessageChannel, Purpose

RULE = "night"
SEOUL = ZoneInfo("Asia/Seoul")


@dataclass(frozen=True)
class NightRule:
    country: str
    window: Window
    """When advertising may not go (local time)."""
    channels: frozenset[MessageChannel]
    consent_lifts: bool
    """Whether a night-time consent allows it."""
    law: str


NIGHT_RULES = {
    "KR": NightRule("KR", Window(time(21), time(8)), frozenset({
        MessageChannel.SMS, MessageChannel.PUSH, MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE}),
        True, "정보통신망법 제50조 ③"),
    "US": NightRule("US", Window(time(21), time(8)), frozenset({MessageChannel.SMS, MessageChannel.PUSH}), False,
                    "TCPA 47 CFR 64.1200(c)(1)"),
}
"""The countries whose night rules we know; a recipient elsewhere gets the sender's country's rule."""

KAKAO_AD_HOURS = Window(time(20, 50), time(8))
"""When Kakao refuses advertising (Brand Message), in Korean time."""


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    if not candidate.advertising:
        return send(RULE, "informational", "Informational: sent at any hour.", "정보성: 시간 제한이 없습니다.")
    drop = (candidate.night or state.settings.policy.night) == "drop"
    waits: list[tuple[datetime, str, str, str]] = []
    lifted: list[str] = []
    for rule in _rules(state.settings.policy.jurisdiction, person.jurisdiction):
        if candidate.channel not in rule.channels or not rule.window.holds(now, person.zone):
            continue
        channel = CONSENT_CHANNEL[candidate.channel]
        night = person.consented(channel, Purpose.NIGHT) if channel else None
        if rule.consent_lifts and night is not None and night.granted:
            lifted.append(rule.law)
            continue
        local = now.astimezone(person.zone)
        why = "without night-time consent" if rule.consent_lifts else "(no consent lifts this rule)"
        waits.append((rule.window.closes_after(now, person.zone), "night",
                      f"It is {local:%H:%M} for them ({person.zone.key}): advertising {rule.window} {why}, "
                      f"{rule.law}.",
                      f"수신자 현지 시각 {local:%H:%M}({person.zone.key}): {rule.window} 광고는 야간 수신동의가 "
                      f"필요합니다({rule.law})."))
    if candidate.channel == MessageChannel.BRAND_MESSAGE and KAKAO_AD_HOURS.holds(now, SEOUL):
        waits.append((KAKAO_AD_HOURS.closes_after(now, SEOUL), "kakao_ad_hours",
                      f"Kakao takes advertising only 08:00-20:50 Korean time (it is {now.astimezone(SEOUL):%H:%M}).",
                      f"카카오는 광고를 한국 시각 08:00-20:50에만 받습니다(지금 {now.astimezone(SEOUL):%H:%M})."))
    if not waits:
        if lifted:
            return send(RULE, "night_consent", f"Night-time, with night-time consent ({', '.join(lifted)}).",
                        "야간이지만 야간 수신동의가 있습니다.")
        return send(RULE, "daytime", "Within the hours advertising may be sent.", "광고 발송 가능 시간입니다.")
    until, reason, en, ko = max(waits)
    if drop:
        return skip(RULE, f"{reason}_dropped", f"{en} The campaign drops rather than waits.",
                    f"{ko} 이 캠페인은 기다리지 않고 보내지 않습니다.")
    return defer(RULE, reason, until, f"{en} Waits until {until.astimezone(person.zone):%Y-%m-%d %H:%M} local.",
                 f"{ko} 현지 시각 {until.astimezone(person.zone):%Y-%m-%d %H:%M}까지 기다립니다.")


def _rules(home: str, theirs: str) -> list[NightRule]:
    """The sender's country's rule and the recipient's, where we know them."""
    return [rule for rule in dict.fromkeys((NIGHT_RULES.get(home), NIGHT_RULES.get(theirs))) if rule is not None]
