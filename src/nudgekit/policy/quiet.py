"""Rule 7, quiet hours and send windows, on top of the legal night rule: the workspace's quiet hours keep
advertising pushes, text and Kakao messages out of hours it chooses ([policy] quiet_hours, the recipient's
local time), and a campaign's send window holds any of its messages until the window opens."""

from __future__ import annotations

from datetime import datetime

from nudgekit.policy.decision import Candidate, Decision, Person, State, defer, send
from nudgekit.policy.hours import next_local, parse_window
from nudgekit.vocabulary import MessageChannel

RULE = "quiet_hours"
INTERRUPTING = frozenset({MessageChannel.PUSH, MessageChannel.SMS, MessageChannel.ALIMTALK,
                          MessageChannel.BRAND_MESSAGE})


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    local = now.astimezone(person.zone)
    quiet = state.settings.policy.quiet_hours
    waits: list[tuple[datetime, str, str, str]] = []
    if quiet and candidate.advertising and candidate.channel in INTERRUPTING:
        window = parse_window(quiet)
        if window.holds(now, person.zone):
            waits.append((window.closes_after(now, person.zone), "quiet_hours",
                          f"Quiet hours {window} (it is {local:%H:%M} for them).",
                          f"방해금지 시간 {window}입니다(수신자 현지 {local:%H:%M})."))
    if candidate.window is not None and not candidate.window.holds(now, person.zone):
        opens = next_local(now, person.zone, candidate.window.start)
        waits.append((opens, "send_window", f"Outside the campaign's send window {candidate.window} (it is "
                      f"{local:%H:%M} for them).", f"캠페인 발송 시간 {candidate.window} 밖입니다(현지 {local:%H:%M})."))
    if not waits:
        return send(RULE, "open", "Outside quiet hours, inside the send window.", "방해금지 시간이 아닙니다.")
    until, reason, en, ko = max(waits)
    return defer(RULE, reason, until, f"{en} Waits until {until.astimezone(person.zone):%Y-%m-%d %H:%M} local.",
                 f"{ko} 현지 시각 {until.astimezone(person.zone):%Y-%m-%d %H:%M}까지 기다립니다.")
