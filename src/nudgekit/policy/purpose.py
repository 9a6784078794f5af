"""Rule 1, purpose: every message is informational or advertising. AlimTalk may never carry advertising
(Kakao's rule), and copy marked informational that reads like a promotion is flagged: under the law one
coupon or discount makes the whole message advertising (CHANNEL_RULES A12)."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel

from nudgekit.channels.check import Checked
from nudgekit.policy.copy import shown
from nudgekit.policy.decision import Candidate, Decision, Person, State, purpose_of, send, skip
from nudgekit.vocabulary import MessageChannel, MessagePurpose

RULE = "purpose"

PROMOTIONAL = re.compile(
    r"할인|쿠폰|이벤트|특가|세일|적립|증정|사은품|무료\s*배송|최대\s*\d+\s*%|\d+\s*%\s*(?:off|할인)|혜택|프로모션|"
    r"기획전|타임\s*딜|한정\s*수량|선착순|\bsale\b|\bdiscount|\bcoupon|\bpromo(?:tion)?\b|\bdeal\b|\bfree shipping\b",
    re.IGNORECASE)
"""Words that make copy read as a promotion (KISA: coupons, discounts, events, re-purchase nudges)."""


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    if candidate.advertising:
        if candidate.channel == MessageChannel.ALIMTALK:
            return skip(RULE, "ad_on_alimtalk",
                        "AlimTalk carries informational messages only; send advertising as a Brand Message.",
                        "알림톡으로는 광고를 보낼 수 없습니다. 브랜드 메시지로 보내 주세요.")
        return send(RULE, "advertising", "Advertising: the law's rules for advertising apply.",
                    "광고성 정보: 광고 규정이 적용됩니다.")
    words = promotional_words(candidate.message, candidate.checked)
    if words:
        en, ko = _reads_as_advertising(words)
        return send(RULE, "reads_as_advertising", en, ko, warning=True)
    return send(RULE, "informational", "Informational: no advertising consent needed.",
                "정보성 메시지: 광고 수신동의가 필요 없습니다.")


def promotional_words(message: BaseModel, checked: Checked | None = None) -> list[str]:
    """The promotional words in the copy a person reads, sorted."""
    return sorted({m.group(0).strip() for text in shown(message, checked).values() for m in PROMOTIONAL.finditer(text)})


def _reads_as_advertising(words: list[str]) -> tuple[str, str]:
    listed = ", ".join(f'"{w}"' for w in words[:5])
    return (f"Marked informational, but the copy reads like a promotion ({listed}). If it promotes anything, mark "
            "it advertising: consent, the (광고) label and the night rule then apply.",
            f"정보성으로 표시했지만 광고처럼 읽힙니다({listed}). 무언가를 홍보한다면 광고로 표시해 주세요.")


def preflight(channel: MessageChannel, message: BaseModel, checked: Checked) -> Checked:
    """The check of a message before anyone is chosen (`nudge message check`, a campaign's preflight): copy
    marked informational that reads like a promotion gets the `reads_as_advertising` warning."""
    advertising = purpose_of(channel, message) == MessagePurpose.ADVERTISING
    words = [] if advertising else promotional_words(message, checked)
    if words:
        en, ko = _reads_as_advertising(words)
        checked.warn("ad", "reads_as_advertising", en, ko)
    return checked
