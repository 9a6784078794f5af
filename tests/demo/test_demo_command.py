"""`nudge demo`: generate, ingest through the normal import, summarise — and a rerun stores nothing twice."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.demo import PUBLIC_URL, SENDER
from nudgekit.workspace import Workspace


def test_demo_ingests_the_shop_and_a_rerun_adds_nothing(tmp_path) -> None:
    runner = CliRunner()
    args = ["demo", "--users", "400", "--as-of", "2026-11-20", "--home", str(tmp_path / "ws"), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    users, events = report["imports"]["users"], report["imports"]["events"]
    assert (users["rows"], users["stored"], users["rejected"]) == (400, 400, 0)
    assert events["rejected"] == 0 and events["stored"] == events["rows"] > 400 * 10
    summary = report["summary"]
    assert summary["users"] == 400
    assert 0 < summary["active_users_7d"] <= summary["active_users_30d"] <= 400
    assert summary["buyers"] > 0 and summary["revenue_krw"] > 0
    assert {"signed_up", "product_viewed", "order_completed", "app_uninstalled"} <= set(summary["events_by_name"])
    assert 0 < summary["consent_granted"]["sms"]["night"] < summary["consent_granted"]["sms"]["advertising"]
    assert report["write_key"].startswith("nk_write_")
    books = {b["name"]: b for b in report["playbooks"]}
    assert {"welcome", "cart_abandoned", "repurchase_due", "signup_prompt", "back_in_stock"} <= set(books)
    campaign = books.pop("back_in_stock")  # a one-off advertisement sent at once: the real clock decides
    assert campaign["state"] in ("scheduled", "finished") or (
        len(campaign["problems"]) == 1 and "in the night window for advertising" in campaign["problems"][0]), campaign
    assert all(b["state"] == ("scheduled" if b["kind"] == "notice" else "live") and not b["blocked"]
               for b in books.values()), report["playbooks"]
    assert {"consent_reconfirmation", "consent_result"} <= {n for n, b in books.items() if b["kind"] == "notice"}
    opened = Workspace.open(tmp_path / "ws")  # the demo's settings are the workspace's from now on
    kept = opened.settings
    opened.close()
    assert (kept.sender.name, kept.sender.optout_080, kept.links.domains, kept.public_url) == (
        SENDER["name"], SENDER["optout_080"], ["healthyday.example"], PUBLIC_URL)

    again = json.loads(runner.invoke(app, args).stdout)
    assert again["imports"]["users"]["stored"] == 0  # the same rows: no second identify event
    assert again["imports"]["events"]["stored"] == 0
    assert again["imports"]["events"]["duplicates"] == events["rows"]
    assert again["summary"]["events_by_name"] == summary["events_by_name"]
    assert again["write_key"] is None
    assert {b["change"] for b in again["playbooks"] if b["name"] != "back_in_stock"} == {"unchanged"}
