"""`lifecycle run` through a workspace: stored stages and transitions (SQLite and PostgreSQL), the rollup,
at-once resurrection, and the CLI."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.lifecycle.run import classify_everyone
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import LifecycleStage, LifecycleTransition
from nudgekit.workspace import Workspace

from . import reference
from .conftest import AS_OF, ZONE, at
from .reference import Ev, to_messages
from .test_stages import random_events

NOW = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # 14:00 in Seoul on AS_OF


def store(ws: Workspace, events: list[Ev]) -> None:
    result = ws.ingest(to_messages(events))
    assert not result.rejects, result.rejects[:3]
    ws.events.append(result.rows)


def stored(ws: Workspace) -> dict[str, tuple[str, bool]]:
    with ws.sessions() as s:
        return {r.profile_id: (r.stage, r.lapsing) for r in s.query(LifecycleStage)}


@pytest.fixture
def today(clock):  # type: ignore[no-untyped-def]
    clock.now = NOW
    return clock


def test_run_stores_the_reference_stages_and_a_second_run_changes_nothing(ws, today):
    events, _ = random_events(random.Random(3), 80, days=90)
    events = [e for e in events if e.at <= NOW]
    store(ws, events)
    first = ws.run_lifecycle()
    assert first.rollup == "rebuilt"
    expected = reference.stages(events, AS_OF, ws.settings.lifecycle, ZONE)
    assert stored(ws) == expected
    assert first.changed == len(expected) and set(first.transitions) == {f"none -> {s}" for s, _ in expected.values()}
    again = ws.run_lifecycle()
    assert again.changed == 0 and again.transitions == {}
    with ws.sessions() as s:
        assert s.query(LifecycleTransition).count() == len(expected)


def test_a_day_later_the_churned_are_recorded_as_transitions(ws, today):
    store(ws, [Ev("a", "track", "app_opened", at(29)), Ev("a", "track", "app_opened", at(40))])
    ws.run_lifecycle()
    assert stored(ws) == {"a": ("current", False)}
    today.advance(days=1)
    result = ws.run_lifecycle()
    assert result.transitions == {"current -> churn": 1}
    found = ws.lifecycle_of("a")
    assert found["stage"] == "churn"
    assert found["since"] == "2026-11-24T15:00:00+00:00"  # 30 days after the last active day, local midnight
    assert [t["to"] for t in found["transitions"]] == ["churn", "current"]


def test_rollup_with_uncompacted_pieces_equals_the_raw_events(sqlite_ws, today):
    ws = sqlite_ws
    events, _ = random_events(random.Random(8), 60, days=60)
    events = [e for e in events if e.at <= NOW]
    ws.run_lifecycle()  # builds the (empty) rollup so later inserts add pieces to it
    for chunk in (events[0::3], events[1::3], events[2::3]):
        store(ws, chunk)
    with ws.events.reader() as con:
        pieces = con.execute("SELECT count(*), count(DISTINCT (actor, day)) FROM activity_days").fetchall()[0]
    assert pieces[0] > pieces[1]  # some person-days are in several pieces
    with ws.backend.open() as view:
        assert view.from_rollup
        via_rollup = classify_everyone(view, AS_OF, ws.settings.lifecycle, ZONE).sort_by("person_id")
    with ws.backend.open(use_rollup=False) as view:
        via_events = classify_everyone(view, AS_OF, ws.settings.lifecycle, ZONE).sort_by("person_id")
    assert via_rollup.to_pylist() == via_events.to_pylist()


def _classify(ws: Workspace, *, use_rollup: bool) -> list[dict]:
    with ws.backend.open(use_rollup=use_rollup) as view:
        assert view.from_rollup == use_rollup
        return classify_everyone(view, AS_OF, ws.settings.lifecycle, ZONE).sort_by("person_id").to_pylist()


def test_identity_links_that_arrive_later_rekey_the_rollup(sqlite_ws, today):
    """A visitor's rows are theirs until they sign up, then the user's: before the rollup is re-keyed (a
    reader corrects the rows of aliases linked since) and after (`prepare` re-keys them)."""
    ws = sqlite_ws
    ws.run_lifecycle()  # the rollup exists, so inserts add to it

    def msg(kind: str, days_ago: int, *, user: str | None = None, anon: str | None = None, **extra) -> dict:
        m = {"type": kind, "timestamp": at(days_ago).isoformat(), "messageId": f"{kind}-{user}-{anon}-{days_ago}"}
        m |= {"userId": user} if user else {}
        m |= {"anonymousId": anon} if anon else {}
        m |= {"event": "app_opened", "properties": {}} if kind == "track" else {}
        return m | extra

    def put(messages: list[dict]) -> None:
        result = ws.ingest(messages)
        assert not result.rejects, result.rejects
        ws.events.append(result.rows)

    put([msg("track", 60, anon="v1"), msg("track", 59, anon="v1"), msg("track", 50, user="old"),
         msg("track", 5, user="u1")])
    assert {r["person_id"] for r in _classify(ws, use_rollup=True)} == {"anon:v1", "old", "u1"}
    # the visitor signs up as u1, and u1 turns out to be the same person as the older account "old"
    put([msg("identify", 2, user="u1", anon="v1"), msg("alias", 1, user="u1", previousId="old")])
    with ws.events.reader() as con:
        assert con.execute("SELECT count(*) FROM link_changes").fetchall()[0][0] > 0
    pending = _classify(ws, use_rollup=True)
    assert pending == _classify(ws, use_rollup=False)
    assert [r["person_id"] for r in pending] == ["u1"]
    assert pending[0]["first_age"] == 60 and pending[0]["stage"] == "resurrected"  # alone, u1 would be new
    assert ws.backend.prepare(ws.clock()).startswith("compacted")
    with ws.events.reader() as con:
        assert con.execute("SELECT count(*) FROM link_changes").fetchall()[0][0] == 0
        assert con.execute("SELECT DISTINCT person_id FROM activity_days").fetchall() == [("u1",)]
    assert _classify(ws, use_rollup=True) == pending
    # u1 in turn is merged into u2: the links of v1 and "old" move along the chain to u2
    put([msg("track", 3, user="u2"), msg("alias", 0, user="u2", previousId="u1")])
    moved = _classify(ws, use_rollup=True)
    assert moved == _classify(ws, use_rollup=False) and [r["person_id"] for r in moved] == ["u2"]
    ws.backend.prepare(ws.clock())
    with ws.events.reader() as con:
        assert con.execute("SELECT DISTINCT person_id FROM activity_days").fetchall() == [("u2",)]


def test_an_event_from_a_churned_user_resurrects_them_at_once(ws, today):
    store(ws, [Ev("c", "track", "app_opened", at(45)), Ev("u", "track", "app_opened", at(10)),
               Ev("u", "track", "app_uninstalled", at(9)), Ev("k", "track", "app_opened", at(1))])
    ws.run_lifecycle()
    assert stored(ws) == {"c": ("churn", True), "u": ("uninstall", False), "k": ("new", False)}
    # late history (older than what we knew) changes nothing; a message receipt is not activity
    store(ws, [Ev("c", "track", "app_opened", at(50)), Ev("u", "track", "message_opened", at(0, 9))])
    assert stored(ws)["c"][0] == "churn" and stored(ws)["u"][0] == "uninstall"
    # through the spool, as the HTTP server stores events
    rows = ws.ingest(to_messages([Ev("c", "track", "app_opened", at(0, 13)),
                                  Ev("u", "screen", "home", at(0, 13, 30))])).rows
    ws.events.spool(rows)
    ws.events.drain()
    assert stored(ws)["c"] == ("resurrected", False) and stored(ws)["u"] == ("resurrected", False)
    moves = ws.lifecycle_of("c")["transitions"]
    assert moves[0] == {"from": "churn", "to": "resurrected", "at": at(0, 13).isoformat(),
                        "detected_at": NOW.isoformat(), "source": "event"}
    assert ws.run_lifecycle().changed == 0  # the run agrees


def test_as_of_in_the_future_is_refused(sqlite_ws, today):
    with pytest.raises(FieldError, match="future"):
        sqlite_ws.run_lifecycle(AS_OF + timedelta(days=1))


def test_changing_what_counts_as_activity_rebuilds_the_rollup(tmp_path, today):
    ws, _ = Workspace.init(tmp_path / "w", clock=today)
    store(ws, [Ev("a", "track", "app_opened", at(1)), Ev("a", "track", "order_completed", at(40))])
    assert ws.run_lifecycle().rollup == "rebuilt"
    ws.close()
    config = tmp_path / "w" / "nudge.toml"
    config.write_text(config.read_text().replace("[lifecycle]", '[lifecycle]\nactivity_events = ["order_completed"]'))
    ws = Workspace.open(tmp_path / "w", clock=today)
    result = ws.run_lifecycle()
    assert result.rollup == "rebuilt" and result.transitions == {"resurrected -> churn": 1}
    assert stored(ws)["a"][0] == "churn"
    ws.close()


def test_cli_lifecycle_run_suggest_report(tmp_path, today, monkeypatch):
    home = tmp_path / "cli"
    ws, _ = Workspace.init(home, clock=today)
    events = [Ev(f"p{i}", "track", "app_opened", at(d)) for i in range(30) for d in range(0, 60, 1 + i % 9)]
    store(ws, events)
    ws.close()
    runner = CliRunner(env={"NUDGE_HOME": str(home)})
    run = runner.invoke(app, ["lifecycle", "run", "--json", "--as-of", "2026-11-20"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert out["as_of"] == "2026-11-20" and out["users"] == 30 and sum(out["by_stage"].values()) == 30
    shown = runner.invoke(app, ["users", "show", "p1", "--json"])
    assert json.loads(shown.stdout)["lifecycle"]["stage"] in {"power", "current"}
    suggest = json.loads(runner.invoke(app, ["lifecycle", "suggest", "--json"]).stdout)
    assert suggest["returns"] > 0 and 1 <= suggest["usage_cycle_days"] <= suggest["churn_days"] <= 9
    assert abs(sum(r["share"] for r in suggest["distribution"]) - 1) < 1e-9
    chart = tmp_path / "lc.html"
    report = runner.invoke(app, ["lifecycle", "report", "--weeks", "3", "--as-of", "2026-11-24", "--json",
                                 "--html", str(chart)])
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    assert len(data["weeks"]) == 3 and data["weeks"][-1] == "2026-11-24"
    assert sum(sum(row.values()) for row in data["transitions"]["matrix"].values()) == 30
    page = chart.read_text()
    assert "<script src=" not in page and "plotly" in page.lower()
    # the CLI runs on the real clock: "the future" is a week after the real today in the workspace's zone
    later = (datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=7)).isoformat()
    for command in ("run", "report"):
        text = runner.invoke(app, ["lifecycle", command, "--as-of", later])
        assert text.exit_code == 2 and "future" in text.output, text.output


def test_a_damaged_or_old_snapshot_is_ignored(sqlite_ws, today):
    ws = sqlite_ws
    store(ws, [Ev("a", "track", "app_opened", at(3)), Ev("b", "track", "app_opened", at(40))])
    ws.run_lifecycle()
    [snapshot] = list(ws.lifecycle_snapshot.glob("run-*.parquet"))
    snapshot.write_bytes(b"not parquet")
    assert ws.run_lifecycle().changed == 0
    [snapshot] = list(ws.lifecycle_snapshot.glob("run-*.parquet"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"person_id": ["a"], "stage": ["churn"], "lapsing": [True]}), snapshot)  # older layout
    assert ws.run_lifecycle().changed == 0
    assert stored(ws) == {"a": ("new", False), "b": ("churn", True)}


def test_after_several_runs_the_snapshot_still_agrees_with_the_state_db(sqlite_ws, today):
    from nudgekit.lifecycle import stored as stored_stages

    ws = sqlite_ws
    store(ws, [Ev("a", "track", "app_opened", at(3)), Ev("b", "track", "app_opened", at(29)),
               Ev("c", "track", "app_opened", at(45))])
    for _ in range(3):
        ws.run_lifecycle()
        today.advance(days=1)
    store(ws, [Ev("c", "track", "app_opened", at(-2, 9))])  # at-once resurrection after the last run
    fast = stored_stages.read(ws.engine, ws.lifecycle_snapshot).sort_by("person_id").to_pylist()
    slow = stored_stages.read_all(ws.engine).sort_by("person_id").to_pylist()
    assert fast == slow and [r["stage"] for r in fast] == ["new", "churn", "resurrected"]


def test_the_rollup_stays_sorted_by_person_as_days_are_added(sqlite_ws, today):
    """Built in person order; rows appended by inserts (and rewritten by compaction) go to the end, and once
    they are more than a tenth of the rollup the next `prepare` sorts it again. Stages never change."""
    ws = sqlite_ws

    def rows() -> list[tuple[str, str]]:  # in the table's own order (DuckDB keeps insertion order)
        with ws.events.reader() as con:
            con.execute("SET threads = 1")
            return [(p, str(d)) for p, d in con.execute("SELECT person_id, day FROM activity_days").fetchall()]

    store(ws, [Ev(f"p{i:02d}", "track", "app_opened", at(d)) for i in range(40) for d in (20, 30, 40)])
    assert ws.run_lifecycle().rollup == "rebuilt"
    assert rows() == sorted(rows()) and len(rows()) == 120
    store(ws, [Ev(f"p{i:02d}", "track", "app_opened", at(5)) for i in range(0, 40, 4)])  # 10 rows: not yet
    assert ws.backend.prepare(ws.clock()) == "compacted 10"
    assert rows() != sorted(rows())
    store(ws, [Ev(f"p{i:02d}", "track", "app_opened", at(3)) for i in range(1, 40, 4)])  # 20 of 140 rows
    assert ws.backend.prepare(ws.clock()) == "compacted 10, sorted"
    assert rows() == sorted(rows()) and len(rows()) == 140
    with ws.events.writer() as con:
        assert con.execute("SELECT appended FROM rollup_order").fetchall() == [(0,)]
    assert _classify(ws, use_rollup=True) == _classify(ws, use_rollup=False)
    with ws.events.writer() as con:  # a store made before rollups were sorted has no count: sort it once
        con.execute("DROP TABLE rollup_order")
    store(ws, [Ev("p00", "track", "app_opened", at(1))])
    assert ws.backend.prepare(ws.clock()) == "compacted 1, sorted"
    assert rows() == sorted(rows()) and ws.backend.prepare(ws.clock()) == "compacted 0"
