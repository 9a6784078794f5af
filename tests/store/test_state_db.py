from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from nudgekit.store import migrate
from nudgekit.workspace import Workspace


def test_init_migrates_to_head_and_is_repeatable(ws: Workspace) -> None:
    assert migrate.is_current(ws.engine)
    migrate.upgrade(ws.engine)  # a second run changes nothing and does not fail
    tables = set(sa.inspect(ws.engine).get_table_names())
    assert {"profiles", "consent_records", "push_tokens", "api_keys", "trait_definitions", "alembic_version"} <= tables


@pytest.mark.parametrize("statement", [
    "UPDATE consent_records SET change = 'granted'",
    "DELETE FROM consent_records",
])
def test_consent_history_cannot_be_rewritten(ws: Workspace, statement: str) -> None:
    ws.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="optout_080_call",
                   at=datetime(2026, 11, 1, tzinfo=UTC))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with ws.engine.begin() as conn:
            conn.execute(sa.text(statement))
    with ws.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT change FROM consent_records")).scalars().all() == ["withdrawn"]


def test_reopening_a_workspace_keeps_its_data(ws: Workspace, tmp_path) -> None:
    ws.identify("u1", {"name": "김민지"})
    ws.close()
    again = Workspace.open(ws.settings.home, database_url=ws.settings.database_url)
    assert again.profile("u1")["profile"]["traits"] == {"name": "김민지"}
    again.close()


def test_open_without_init_says_how_to_fix(tmp_path) -> None:
    from nudgekit.workspace import WorkspaceNotFound

    with pytest.raises(WorkspaceNotFound, match="nudge init"):
        Workspace.open(tmp_path / "nowhere")


def test_init_remembers_the_database_and_refuses_to_switch_silently(tmp_path, state_url: str) -> None:
    home = tmp_path / "ws"
    ws, _ = Workspace.init(home, database_url=state_url)
    ws.close()
    assert Workspace.open(home).settings.state_url == state_url  # read back from nudge.toml
    with pytest.raises(ValueError, match="edit nudge.toml"):
        Workspace.init(home, database_url="sqlite:///elsewhere.db")


def test_event_store_memory_limit_is_applied_and_checked(tmp_path, monkeypatch) -> None:
    """`events_memory_limit` caps DuckDB (it spills beyond it); a value DuckDB would not understand is refused."""
    from pydantic import ValidationError

    from nudgekit.config import Settings

    monkeypatch.setenv("NUDGE_EVENTS_MEMORY_LIMIT", "256MB")
    ws, _ = Workspace.init(tmp_path / "ws")
    with ws.events.reader() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "244.1 MiB"  # 256e6 bytes
    with pytest.raises(ValidationError, match="events_memory_limit"):
        Settings(home=tmp_path, events_memory_limit="lots")


def test_rows_inserted_through_the_driver_read_back_as_the_orm_would_store_them(ws: Workspace) -> None:
    """`insert_arrow` (COPY / plain executemany) and the ORM's own insert leave identical rows."""
    from datetime import date

    import pyarrow as pa

    from nudgekit.store.state import LifecycleStage, insert_arrow

    moments = [datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=UTC), datetime(2000, 1, 1, tzinfo=UTC), None]
    rows = pa.table({
        "profile_id": ["a", "b", "c"], "stage": ["new", "churn", "power"],
        "since": pa.array([datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC")),
        "lapsing": [True, False, True], "first_seen_at": pa.array(moments, pa.timestamp("us", tz="UTC")),
        "last_active_at": pa.array(moments[::-1], pa.timestamp("us", tz="Asia/Seoul")),
        "as_of": pa.array([date(2026, 11, 24)] * 3, pa.date32()), "run_id": [1, None, 3],
        "updated_at": pa.array([datetime(2026, 11, 24, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC")),
    })
    with ws.engine.begin() as conn:
        insert_arrow(conn, LifecycleStage, rows, batch=2)
        conn.execute(sa.insert(LifecycleStage), [{**r, "profile_id": "orm-" + r["profile_id"]} for r in rows.to_pylist()])
    with ws.sessions() as session:
        stored = {s.profile_id: (s.stage, s.since, s.lapsing, s.first_seen_at, s.last_active_at, s.as_of, s.run_id)
                  for s in session.scalars(sa.select(LifecycleStage))}
    assert {k: v for k, v in stored.items() if not k.startswith("orm-")} == {
        k.removeprefix("orm-"): v for k, v in stored.items() if k.startswith("orm-")}
    assert stored["a"][3] == moments[0] and stored["c"][4] == moments[0]
    with pytest.raises(ValueError, match="no column nope"):
        with ws.engine.begin() as conn:
            insert_arrow(conn, LifecycleStage, pa.table({"nope": [1]}))
    with pytest.raises(ValueError, match="naive timestamps .* since"):
        with ws.engine.begin() as conn:
            insert_arrow(conn, LifecycleStage, rows.set_column(2, "since", rows.column("since").cast(pa.timestamp("us"))))
