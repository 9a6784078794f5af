"""`nudge plan`, `nudge apply` and `nudge campaign` from the command line: tables for people, --json for
scripts, exit 1 when a campaign cannot go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from policy.helpers import SENDER
from typer.testing import CliRunner

from campaigns.helpers import NOON_KST, campaign, open_shop, shoppers, write
from nudgekit.cli import app
from nudgekit.config import write_section


def test_plan_and_apply_from_the_command_line(tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", clock)
    shoppers(ws, 6)
    ws.close()
    for section, values in (("sender", SENDER), ("links", {"domains": ["shop.example"]}),
                            ("policy", {"control_group_percent": 0.0})):
        write_section(tmp_path / "ws", section, values)
    folder = tmp_path / "c"
    write(folder, "good", campaign("good", purpose="informational"))
    runner = CliRunner(env={"NUDGE_HOME": str(tmp_path / "ws"), "NUDGE_USER": "lee"})
    shown = runner.invoke(app, ["plan", str(folder)])
    assert shown.exit_code == 0, shown.output
    assert "good — new" in shown.output and "audience 6" in shown.output
    planned = orjson.loads(runner.invoke(app, ["plan", str(folder), "--json"]).stdout)
    assert planned["campaigns"][0]["run"]["audience"] == 6
    write(folder, "nogoal", {**campaign("nogoal"), "goal": None})
    applied = runner.invoke(app, ["apply", str(folder), "--json"])
    assert applied.exit_code == 1
    result = orjson.loads(applied.stdout)
    assert result["blocked"] == ["nogoal"]
    listed = orjson.loads(runner.invoke(app, ["campaign", "list", "--json"]).stdout)
    assert [c["name"] for c in listed] == ["good"]
    shown = orjson.loads(runner.invoke(app, ["campaign", "show", "good", "--json"]).stdout)
    assert shown["versions"][0]["applied_by"] == "lee" and shown["runs"][0]["result"]["audience"] == 6
    assert runner.invoke(app, ["campaign", "tick"]).output.strip() == "no campaign run is due"
    missing = runner.invoke(app, ["campaign", "show", "nope", "--json"])
    assert missing.exit_code == 2 and "no campaign called" in orjson.loads(missing.stdout)["error"]
