"""The channel's own check, after the label rule has added what advertising needs: a message the provider
would refuse as it now stands (too long, an unapproved template, an unregistered sender number) goes no
further."""

from __future__ import annotations

from datetime import datetime

from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip

RULE = "channel"


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    checked = candidate.checked
    if checked.problems:
        first = checked.problems[0]
        more = f" (and {len(checked.problems) - 1} more)" if len(checked.problems) > 1 else ""
        return skip(RULE, "message_refused", f"{first.field}: {first.en}{more}", f"{first.field}: {first.ko}")
    kind = f" as {checked.type}" if checked.type else ""
    return send(RULE, "message_ok", f"The {candidate.channel.value} message can be sent{kind}, "
                f"{checked.cost_krw:g} KRW.", f"보낼 수 있는 메시지입니다{kind}, {checked.cost_krw:g}원.")
