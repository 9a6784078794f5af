"""The demo shop: generated users and behaviour, and the ready playbooks `nudge demo` applies to them."""

from pathlib import Path

PLAYBOOKS = Path(__file__).parent / "playbooks"
"""The ready campaign and journey files (examples/playbooks links here)."""
