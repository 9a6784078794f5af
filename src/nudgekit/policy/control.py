"""Rule 4, the global control group: a stable share of people ([policy] control_group_percent, default 5%)
who never receive advertising, so that every campaign's true lift can be measured against them. Membership
is a hash of the person's id with the workspace's seed: the same on every run and every machine, and raising
the percentage only adds people. Internal test users are never held out."""

from __future__ import annotations

import hashlib
from datetime import datetime

from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip

RULE = "control_group"
BUCKETS = 10_000


def bucket(profile_id: str, seed: str) -> int:
    """0..9999, uniform over people."""
    digest = hashlib.sha256(f"{seed}\x00{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def held_out(profile_id: str, percent: float, seed: str) -> bool:
    return bucket(profile_id, seed) < round(percent * BUCKETS / 100)


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    policy = state.settings.policy
    if not candidate.advertising:
        return send(RULE, "informational", "Informational messages reach the control group too.",
                    "정보성 메시지는 대조군에도 보냅니다.")
    if person.test:
        return send(RULE, "test_user", "An internal test user: never held out, kept out of metrics.",
                    "내부 테스트 사용자: 대조군에서 제외되고 지표에서 빠집니다.")
    if held_out(person.profile_id, policy.control_group_percent, policy.control_group_seed):
        return skip(RULE, "control_group",
                    f"In the global control group ({policy.control_group_percent:g}% who never receive "
                    "advertising, to measure lift).",
                    f"전체 대조군에 속합니다(광고를 받지 않는 {policy.control_group_percent:g}%, 효과 측정용).")
    return send(RULE, "treatment", "Not in the global control group.", "전체 대조군이 아닙니다.")
