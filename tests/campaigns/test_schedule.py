"""Scheduled, recurring and local-time campaigns: apply stores them, the scheduler's tick launches each run once
when it is due, and what plan showed for the run is what the run queues on unchanged data."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.helpers import NOON_KST, campaign, open_shop, outbox_count, shoppers, write
from nudgekit.store.state import OutboxMessage
from nudgekit.workspace import Workspace


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST  # Tuesday 2026-11-24, 12:00 in Seoul
    ws = open_shop(tmp_path / "ws", state_url, clock)
    shoppers(ws, 10)
    yield ws
    ws.close()


def test_a_campaign_at_a_time_waits_for_it_and_queues_what_plan_showed(shop: Workspace, tmp_path: Path,
                                                                        clock: Any) -> None:
    write(tmp_path / "c", "later", campaign("later", schedule={"at": "2026-11-25T10:00:00"}))
    planned = shop.plan_campaigns(tmp_path / "c")["campaigns"][0]
    assert planned["schedule"]["next_runs"][0]["launch"] == "2026-11-25T01:00:00+00:00"
    applied = shop.apply_campaigns(tmp_path / "c")["campaigns"][0]["applied"]
    assert applied == {"version": 1, "state": "scheduled", "runs": []}
    assert outbox_count(shop, "later") == 0
    clock.now = datetime(2026, 11, 25, 0, 59, tzinfo=UTC)
    assert shop.tick_campaigns() == []
    clock.now = datetime(2026, 11, 25, 1, 0, 30, tzinfo=UTC)
    launched = shop.tick_campaigns()
    assert [r["campaign"] for r in launched] == ["later"]
    run = {k: v for k, v in launched[0]["run"].items() if k not in ("first_send", "last_send")}
    assert run == {k: v for k, v in planned["run"].items() if k not in ("first_send", "last_send")}
    assert outbox_count(shop, "later") == 10
    assert shop.tick_campaigns() == []
    assert shop.campaign("later")["state"] == "finished"


def test_a_recurring_campaign_runs_once_per_occurrence(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    write(tmp_path / "c", "weekly", campaign("weekly", purpose="informational",
                                             schedule={"cron": "0 10 * * MON"}))
    applied = shop.apply_campaigns(tmp_path / "c")["campaigns"][0]
    assert [r["launch"] for r in applied["schedule"]["next_runs"]] == [
        "2026-11-30T01:00:00+00:00", "2026-12-07T01:00:00+00:00", "2026-12-14T01:00:00+00:00"]
    clock.now = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    first = shop.tick_campaigns()
    assert [(r["occurrence"], r["run"]["queued"]) for r in first] == [("2026-11-30T10:00", 10)]
    assert shop.tick_campaigns() == []
    assert shop.campaign("weekly")["next_run_at"] == "2026-12-07T01:00:00+00:00"
    clock.now = datetime(2026, 12, 7, 1, 5, tzinfo=UTC)
    second = shop.tick_campaigns()
    assert [(r["occurrence"], r["run"]["queued"]) for r in second] == [("2026-12-07T10:00", 10)]
    assert outbox_count(shop, "weekly") == 20


def test_runs_missed_while_nothing_ticked_launch_the_latest_only(shop: Workspace, tmp_path: Path,
                                                                  clock: Any) -> None:
    write(tmp_path / "c", "daily", campaign("daily", purpose="informational", schedule={"cron": "0 10 * * *"}))
    shop.apply_campaigns(tmp_path / "c")
    clock.now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # the server was down from the 25th to the 1st, noon
    (run,) = shop.tick_campaigns()
    assert (run["occurrence"], run["run"]["queued"]) == ("2026-12-01T10:00", 10)
    assert shop.tick_campaigns() == []  # not the 25th, 26th ... one tick after another
    assert shop.campaign("daily")["next_run_at"] == "2026-12-02T01:00:00+00:00"
    assert outbox_count(shop, "daily") == 10


def test_a_recurring_campaign_ends_at_until(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    write(tmp_path / "c", "weekly", campaign("weekly", purpose="informational",
                                             schedule={"cron": "0 10 * * MON", "until": "2026-12-01T00:00:00"}))
    shop.apply_campaigns(tmp_path / "c")
    clock.now = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    assert len(shop.tick_campaigns()) == 1
    assert shop.campaign("weekly")["state"] == "finished"


def test_local_time_sends_at_ten_where_each_person_is(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    shop.identify("u001", {"timezone": "America/New_York"})
    shop.flush()
    write(tmp_path / "c", "local", campaign("local", schedule={"at": "2026-11-25T10:00:00", "local_time": True}))
    applied = shop.apply_campaigns(tmp_path / "c")["campaigns"][0]
    assert applied["schedule"]["next_runs"][0]["launch"] == "2026-11-24T20:00:00+00:00"  # 10:00 at UTC+14
    clock.now = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
    run = shop.tick_campaigns()[0]["run"]
    assert run["first_send"] == "2026-11-25T01:00:00+00:00" and run["last_send"] == "2026-11-25T15:00:00+00:00"
    with shop.sessions() as session:
        due = {r.profile_id: r.due_at for r in session.scalars(select(OutboxMessage))}
    assert due[shop.resolve("u001")] == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York
    assert due[shop.resolve("u002")] == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 10:00 in Seoul
    assert run["queued"] == 10 and run["deferred"] == {}


def test_two_schedulers_ticking_at_once_launch_a_run_once(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    write(tmp_path / "c", "later", campaign("later", schedule={"at": "2026-11-25T10:00:00"}))
    shop.apply_campaigns(tmp_path / "c")
    clock.now = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    other = Workspace.open(shop.settings.home, clock=clock)
    launched: list[list[dict[str, Any]]] = []
    threads = [threading.Thread(target=lambda w=w: launched.append(w.tick_campaigns())) for w in (shop, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sorted(len(x) for x in launched) == [0, 1]
    assert outbox_count(shop, "later") == 10


def test_a_run_a_dead_process_left_launching_is_finished_later(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    from nudgekit.campaigns import live

    write(tmp_path / "c", "later", campaign("later", schedule={"at": "2026-11-25T10:00:00"}))
    shop.apply_campaigns(tmp_path / "c")
    clock.now = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert len(live.due_runs(shop)) == 1  # claimed, then the process "dies" before queueing
    assert shop.tick_campaigns() == []
    clock.advance(minutes=11)
    again = shop.tick_campaigns()
    assert [r["run"]["queued"] for r in again] == [10]
    assert shop.campaign("later")["runs"][0]["state"] == "queued"
    clock.advance(minutes=30)
    assert shop.tick_campaigns() == []
