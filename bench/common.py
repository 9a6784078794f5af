"""What the benchmarks share: a workspace that sends text messages through the fake Solapi, a free port, and
waiting for a `nudge serve` they started."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx

from nudgekit.config import write_section
from nudgekit.testing.solapi import FakeSolapi
from nudgekit.workspace import Workspace

SENDER = {"name": "넛지샵", "optout_080": "0801234567", "sms_numbers": ["0212345678"]}


def solapi_workspace(home: Path, solapi: FakeSolapi, **sections: dict[str, Any]) -> None:
    """A new workspace at `home` whose text messages go to `solapi`, no control group, and `sections` written
    to its nudge.toml."""
    ws, _ = Workspace.init(home)
    ws.close()
    write_section(home, "sender", SENDER)
    write_section(home, "policy", {"control_group_percent": 0.0})
    write_section(home, "providers", {"sms": "solapi"})
    write_section(home, "solapi", {"api_key": solapi.api_key, "api_secret": solapi.api_secret,
                                   "base_url": solapi.url})
    for name, values in sections.items():
        write_section(home, name, values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("nudge serve did not start")
        time.sleep(0.1)
