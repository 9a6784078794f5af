"""Rule 3, suppression and reachability: a person with no address on the channel, or whose address is
suppressed there (hard bounce, number that does not exist, blocked number, spam complaint) or whose push
tokens are all invalid, gets nothing on that channel — whatever the message's purpose."""

from __future__ import annotations

from datetime import datetime

from nudgekit.config import Settings
from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip
from nudgekit.policy.ledger import Ledger
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import MessageChannel

RULE = "suppression"

PHONE = (MessageChannel.SMS, MessageChannel.ALIMTALK, MessageChannel.BRAND_MESSAGE)


def addresses(candidate: Candidate, person: Person) -> list[str]:
    """Where the message goes: the fixed address, else the person's own on the channel (every live push
    token: a person with a phone and a tablet gets the push on both)."""
    if candidate.to is not None:
        return [candidate.to]
    if candidate.channel in PHONE:
        return [person.phone] if person.phone else []
    if candidate.channel == MessageChannel.EMAIL:
        return [person.email] if person.email else []
    if candidate.channel == MessageChannel.PUSH:
        return list(person.tokens)
    if candidate.channel in (MessageChannel.INAPP, MessageChannel.CARD):
        return [person.profile_id]
    url = getattr(candidate.message, "url", None)
    return [url] if candidate.channel == MessageChannel.WEBHOOK and url else []


def as_sent(candidate: Candidate, found: list[str], ledger: Ledger, settings: Settings) -> list[str]:
    """The addresses in the form suppressions are kept in: a phone channel's number as its provider takes it
    (FieldError when it cannot take it)."""
    if candidate.channel in PHONE and found:
        return [ledger.recipient(candidate.channel, found[0], settings)]
    return found


WHAT = {MessageChannel.PUSH: ("push token that can receive", "수신 가능한 푸시 토큰"),
        MessageChannel.EMAIL: ("email address", "이메일 주소"), MessageChannel.WEBHOOK: ("URL", "URL")}


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    found = addresses(candidate, person)
    if not found:
        en, ko = WHAT.get(candidate.channel, ("mobile number", "휴대폰 번호"))
        return skip(RULE, "no_address", f"Has no {en}.", f"{ko}가 없습니다.")
    ledger = state.book()
    try:
        found = as_sent(candidate, found, ledger, state.settings)
    except FieldError as exc:
        return skip(RULE, "no_address", f"Cannot be reached on {candidate.channel.value}: {exc.reason}.",
                    f"{candidate.channel.value}(으)로 보낼 수 없는 번호입니다.")
    dead = [why for address in found if (why := ledger.dead(candidate.channel, address))]
    if len(dead) == len(found):
        return skip(RULE, "suppressed", f"Suppressed: {dead[0]}.", f"수신 제외: {dead[0]}.")
    return send(RULE, "reachable", f"Reachable on {candidate.channel.value}.",
                f"{candidate.channel.value}(으)로 보낼 수 있습니다.")
