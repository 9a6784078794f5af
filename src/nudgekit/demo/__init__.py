"""The demo shop: generated users and behaviour, and the ready playbooks `nudge demo` applies to them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

PLAYBOOKS = Path(__file__).parent / "playbooks"
"""The ready campaign and journey files (examples/playbooks links here)."""
SENDER = {"name": "건강한하루", "optout_080": "0801234567", "sms_numbers": ["0212345678"],
          "push_optout": "수신거부: 마이 > 설정 > 알림", "email_from": "news@healthyday.example",
          "kakao_sender_key": "d" * 40, "kakao_channel": "@healthyday"}
"""Made-up sender settings for a new demo workspace: the sandbox sends nothing, and preflight needs them."""
LINKS = {"domains": ["healthyday.example"], "app_scheme": "healthyday", "web_url": "https://healthyday.example"}
PUBLIC_URL = "http://127.0.0.1:8000"
"""Where `nudge serve` listens by default: the unsubscribe links of the demo's emails and notices."""
COUPON_POOLS = ("welcome", "winback")
"""The coupon pools the playbooks read."""
COUPONS = 2000


def settings() -> dict[str, Any]:
    """The settings a new demo workspace is made with."""
    return {"brand": SENDER["name"], "sender": SENDER, "links": LINKS, "public_url": PUBLIC_URL}


def remember(home: Path) -> None:
    """Write the demo's settings into the new workspace's nudge.toml, so `nudge serve` and every later
    command send as the demo shop does."""
    from nudgekit.config import write_section

    write_section(home, None, {"public_url": PUBLIC_URL})
    write_section(home, "sender", SENDER)
    write_section(home, "links", LINKS)


def apply_playbooks(ws: Workspace) -> list[dict[str, Any]]:
    """Apply the shipped playbooks to the demo shop (after loading the coupon pools they read); what each did."""
    for pool in COUPON_POOLS:
        ws.load_coupons(pool, [f"{pool.upper()}-{i:05d}" for i in range(COUPONS)])
    result = ws.apply_campaigns(PLAYBOOKS, applied_by="nudge demo")
    return [{"name": c["name"] or c["file"], "kind": c.get("kind"), "change": c["change"], "blocked": c["blocked"],
             "error": c["error"], "state": (c.get("applied") or {}).get("state"),
             "problems": [p["message"] for p in c["preflight"] if p["level"] == "error"]} for c in result["campaigns"]]
