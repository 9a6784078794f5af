"""The text message a Kakao message falls back to (대체발송) when the recipient cannot be reached on Kakao.

:TRICKY: an advertising Kakao message falls back as an advertising text message, which the law and the
providers' ad endpoints treat on their own terms: "(광고)" first (and first in an LMS subject), the sender's
name, and the free 080 opt-out line last (CHANNEL_RULES A5-A7, B). They are added here when missing, so
the fallback a marketer did not write by hand is still lawful; a missing 080 number is reported, not invented.
"""

from __future__ import annotations

from nudgekit.channels.check import Fallback, Problem
from nudgekit.channels.kakao.buttons import KakaoButton
from nudgekit.channels.sms import message as sms
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.policy.label import text_message
from nudgekit.vocabulary import KakaoButtonType


def compose(text: str, *, subject: str | None, sender_number: str | None, ad: bool,
            buttons: list[KakaoButton] | tuple[KakaoButton, ...], sender: SenderSettings,
            prices: PriceSettings) -> Fallback:
    """The fallback text message, checked. `text` is what the Kakao message says (or the fallback text the
    marketer wrote); the first web-link button's address is added, since a text message has no buttons."""
    body = sms.normalised(text).strip()
    link = next((b.url_mobile for b in buttons if b.type == KakaoButtonType.WEB_LINK and b.url_mobile), None)
    if body and link and link not in body:
        optout = sms.OPTOUT_LINE.search(body)
        at = optout.start() if optout else len(body)
        body = f"{body[:at].rstrip()}\n{link}\n{body[at:]}".rstrip()
    written = subject
    if ad and body:
        body, subject = text_message(body, subject, sender)
    message = sms.SmsMessage(text=body, subject=subject, ad=ad, sender_number=sender_number)
    checked = sms.check(message, sender, prices)
    if subject != written:
        checked.problems = [_labelled(p) if p.code == "subject_too_long" else p for p in checked.problems]
    return Fallback(message, checked)


def _labelled(problem: Problem) -> Problem:
    """Say that the label we added is what made the subject too long."""
    return Problem(problem.field, problem.code,
                   f'{problem.en} "{sms.AD_LABEL}" was added in front, as advertising requires: leave room for it '
                   "(at most 17 Hangul characters of your own).",
                   f'{problem.ko} 광고 규정에 따라 앞에 "{sms.AD_LABEL}"를 붙였습니다. 그만큼 줄여 주세요'
                   "(직접 쓰는 부분은 한글 17자까지).")

