"""Rule 2, consent: advertising needs the person's opt-in for that channel (for push an advertising consent,
not the OS notification permission), read from the consent history at the moment of the gate — so a
withdrawal recorded after a message was queued stops it at hand-over (CHANNEL_RULES A1, A3, A11).

The law's exception (A2): a customer who bought from us within six months may receive advertising for the
same kind of goods without opt-in. It applies only when the workspace turns it on ([policy]
purchase_exception) and the message names the kinds of goods it advertises; it never overrides a refusal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip
from nudgekit.vocabulary import CONSENT_CHANNEL, Channel, MessageChannel, Purpose

RULE = "consent"
IN_APP = (MessageChannel.INAPP, MessageChannel.CARD)
KAKAO = (MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE)


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    if not candidate.advertising:
        return send(RULE, "not_needed", "Informational: no consent needed.", "정보성: 수신동의가 필요 없습니다.")
    channel = CONSENT_CHANNEL[candidate.channel]
    if channel is None:
        return send(RULE, "not_a_person", "A webhook goes to your own system, not to a person.",
                    "웹훅은 사람이 아닌 시스템으로 갑니다.")
    if candidate.channel in IN_APP and not state.settings.policy.inapp_ads_need_consent:
        return send(RULE, "shown_in_app",
                    "Shown inside the app the person opened (not sent to them); [policy] inapp_ads_need_consent "
                    "is off.", "앱 안에서 보여 주는 메시지입니다(전송이 아님).")
    held = person.consented(channel, Purpose.ADVERTISING)
    if held is not None and held.granted:
        en = f"Opted in to advertising by {channel.value} on {_day(held.at, person)} ({held.source.value})."
        ko = f"{_day(held.at, person)}에 {channel.value} 광고 수신에 동의했습니다({held.source.value})."
        return _without_unconsented_fallback(candidate, person, state, en, ko)
    if held is not None:
        return skip(RULE, "consent_withdrawn",
                    f"Withdrew advertising consent for {channel.value} on {_day(held.at, person)} "
                    f"({held.source.value}).",
                    f"{_day(held.at, person)}에 {channel.value} 광고 수신을 거부했습니다({held.source.value}).")
    if state.settings.policy.purchase_exception:
        return _purchase_exception(candidate, person, now, state, channel.value)
    return skip(RULE, "no_consent", f"Has not opted in to advertising by {channel.value}.",
                f"{channel.value} 광고 수신에 동의하지 않았습니다.")


def _without_unconsented_fallback(candidate: Candidate, person: Person, state: State, en: str, ko: str) -> Decision:
    """An advertising Kakao message falls back as an advertising text message, which needs its own (SMS)
    consent: without it, the message goes without its fallback."""
    sms = person.consented(Channel.SMS, Purpose.ADVERTISING)
    if candidate.channel not in KAKAO or not getattr(candidate.message, "fallback", False) or (sms and sms.granted):
        return send(RULE, "consented", en, ko)
    message = candidate.message.model_copy(update={"fallback": False})
    return send(RULE, "consented_no_fallback",
                f"{en} No advertising consent for text messages, so no fallback text message.",
                f"{ko} 문자 광고 수신동의가 없어 대체 문자는 보내지 않습니다.",
                message=message, checked=state.check(candidate.channel, message))


def _purchase_exception(candidate: Candidate, person: Person, now: datetime, state: State, channel: str) -> Decision:
    days = state.settings.policy.purchase_exception_days
    if not candidate.goods:
        return skip(RULE, "no_consent",
                    f"Has not opted in to advertising by {channel}; the purchase exception needs the message to "
                    "name the kinds of goods it advertises (goods).",
                    f"{channel} 광고 수신에 동의하지 않았습니다. 구매 예외를 쓰려면 광고하는 상품 종류(goods)를 "
                    "지정해야 합니다.")
    wanted = {g.strip().lower() for g in candidate.goods}
    bought = state.purchases(person.profile_id, now - timedelta(days=days))
    matching = [p for p in bought if p.kinds & wanted]
    if matching:
        last = max(matching, key=lambda p: p.at)
        kinds = ", ".join(sorted(last.kinds & wanted))
        return send(RULE, "recent_purchase",
                    f"No opt-in, but bought {kinds} on {_day(last.at, person)}, within {days} days, and the message "
                    "advertises the same kind of goods (the law's purchase exception).",
                    f"수신동의는 없지만 {_day(last.at, person)}에 {kinds}을(를) 구매했고(최근 {days}일 이내) 같은 "
                    "종류의 상품 광고입니다(거래관계 예외).")
    why = "no purchase of those goods" if bought else "no purchase"
    return skip(RULE, "no_consent",
                f"Has not opted in to advertising by {channel}, and {why} in the last {days} days (the purchase "
                "exception does not apply).",
                f"{channel} 광고 수신에 동의하지 않았고 최근 {days}일 동안 같은 종류의 구매가 없습니다.")


def _day(moment: datetime, person: Person) -> str:
    return moment.astimezone(person.zone).date().isoformat()
