"""Settings: NUDGE_* variables over nudge.toml over defaults, and nothing else from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from nudgekit.config import load_settings
from nudgekit.workspace import Workspace


def test_only_nudge_variables_reach_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    Workspace.init(home)[0].close()
    config = home / "nudge.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("churn_days = 30\n", ""), encoding="utf-8")
    # names a section's fields share with common environment variables must not leak in without NUDGE_
    for name, value in {"CHURN_DAYS": "45", "TABLE": "oops", "TYPE": "x", "NAME": "someone", "SMS": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NUDGE_LIFECYCLE__NEW_DAYS", "3")
    monkeypatch.setenv("NUDGE_WAREHOUSE__TABLE", "lake.events")
    settings = load_settings(home)
    assert settings.lifecycle.churn_days == 30 and settings.lifecycle.new_days == 3
    assert settings.warehouse.table == "lake.events" and settings.warehouse.type is None
    assert settings.sender.name is None and settings.prices.sms == 12
