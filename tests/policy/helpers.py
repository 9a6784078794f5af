"""A shop's workspace for policy tests: sender set up, no control group unless a test asks for one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudgekit.workspace import Workspace

SENDER = {"name": "넛지샵", "optout_080": "0801234567", "sms_numbers": ["0212345678"],
          "push_optout": "수신거부: 마이 > 설정 > 알림", "email_from": "news@shop.example",
          "kakao_sender_key": "a" * 40, "kakao_channel": "@nudgeshop"}
NOON_KST = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def open_shop(path: Path, state_url: str, clock: Any, **policy: Any) -> Workspace:
    settings = {"control_group_percent": 0.0, **policy}
    ws, _ = Workspace.init(path, database_url=state_url, clock=clock, sender=SENDER, policy=settings)
    return ws


def person(ws: Workspace, user: str, *, phone: str | None = "010-1234-5678", email: str | None = None,
           timezone: str | None = None, consent: tuple[str, ...] = (), night: tuple[str, ...] = (),
           **traits: Any) -> None:
    values = {k: v for k, v in {"phone": phone, "email": email, "timezone": timezone, **traits}.items() if v}
    ws.identify(user, values)
    ws.flush()
    for channel in consent:
        ws.set_consent(user, channel=channel, purpose="advertising", granted=True, source="signup_form",
                       at=datetime(2026, 1, 5, tzinfo=UTC))
    for channel in night:
        ws.set_consent(user, channel=channel, purpose="night", granted=True, source="signup_form",
                       at=datetime(2026, 1, 5, tzinfo=UTC))


def reasons(ruling: Any) -> dict[str, str]:
    return {d.rule: d.reason for d in ruling.decisions}
