"""Run in worker processes by the concurrency tests: each opens the same workspace and claims slots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudgekit.workspace import Workspace

from .helpers import SENDER


def claim(home: str, url: str, policy: dict[str, Any], worker: int, users: list[str], rounds: int,
          stage: str) -> list[tuple[str, str, str]]:
    ws = Workspace.open(Path(home), database_url=url, sender=SENDER, policy=policy)
    out = []
    try:
        for i in range(rounds):
            user = users[(i + worker) % len(users)]
            ruling = ws.gate("sms", user, stage=stage, campaign=f"c{worker % 3}", priority=worker % 3,
                             message_id=f"w{worker}-{i}", text="주문하신 상품이 출발했습니다.",
                             budget_krw=12 * 7)
            out.append((user, ruling.action.value, ruling.reason))
    finally:
        ws.close()
    return out
