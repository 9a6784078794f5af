"""`nudge lifecycle run`: classify everyone as of a day, store stage and since, record every transition.

The classification runs on the events backend (DuckDB or Spark, `lifecycle/classify.py`); the result, one
small row per person, comes back as Arrow and is compared with the stored stages in an in-memory DuckDB.
Only what changed is written to the state DB, so a daily run writes the day's transitions, not every user.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nudgekit.config import LifecycleSettings
from nudgekit.lifecycle import classify, stored
from nudgekit.store.activity import day_end, day_start
from nudgekit.store.backend import EventsView
from nudgekit.store.state import (
    LifecycleRun,
    LifecycleStage,
    LifecycleTransition,
    PushToken,
    in_batches,
    insert_arrow,
)
from nudgekit.vocabulary import Stage, TokenStatus, TransitionSource

Step = Callable[[str], None]
WRITE_BATCH = 5000


@dataclass
class RunResult:
    as_of: date
    engine: str
    users: int
    by_stage: dict[str, int]
    changed: int
    transitions: dict[str, int]
    """"from -> to" pairs (from "none" on a first classification) and how many made each."""
    removed: int
    rollup: str | None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "engine": self.engine, "users": self.users,
                "by_stage": self.by_stage, "changed": self.changed, "transitions": self.transitions,
                "removed": self.removed, "rollup": self.rollup, "seconds": self.seconds}


def token_signals(engine: Engine, until: datetime) -> pa.Table | None:
    """People whose every push token was reported invalid (by FCM/APNs), and since when."""
    with engine.connect() as conn:
        valid = (PushToken.status == TokenStatus.VALID.value)
        rows = conn.execute(
            select(PushToken.profile_id, PushToken.updated_at)
            .where(PushToken.profile_id.notin_(select(PushToken.profile_id).where(valid)))
        ).all()
    latest: dict[str, datetime] = {}
    for profile_id, at in rows:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if at <= until and (profile_id not in latest or at > latest[profile_id]):
            latest[profile_id] = at
    if not latest:
        return None
    return pa.table({"person_id": pa.array(list(latest), pa.string()),
                     "tokens_invalid_at": pa.array(list(latest.values()), pa.timestamp("us", tz="UTC"))})


def classify_everyone(view: EventsView, as_of: date, cfg: LifecycleSettings, zone: str,
                      signals: pa.Table | None = None) -> pa.Table:
    """Stage (and the facts `since` is derived from) for every person seen up to the as-of day."""
    if view.person_keyed:
        facts = classify.cents(classify.person_facts(view.person_days, as_of, cfg, zone, engine=view.engine))
    else:
        by_actor = classify.person_facts(view.actor_days, as_of, cfg, zone, keys=("actor", "is_anon"),
                                         engine=view.engine)
        facts = classify.merge_facts(view.resolve(by_actor))
    signal_table = view.table(signals) if signals is not None else None
    expr = classify.stages(facts, as_of, cfg, zone, view.engine, token_signals=signal_table,
                           window_start=day_start(as_of - timedelta(days=cfg.resurrected_days - 1), zone))
    return aware(view.con.to_pyarrow(expr), zone)


def aware(table: pa.Table, zone: str) -> pa.Table:
    """Timestamps as UTC instants. :TRICKY: Spark hands back naive wall-clock times in its session zone."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            local = pc.assume_timezone(table.column(i), zone, ambiguous="earliest", nonexistent="earliest")
            table = table.set_column(i, f.name, local.cast(pa.timestamp("us", tz="UTC")))
    return table


def _changes(new: pa.Table, old: pa.Table, as_of: date, cfg: LifecycleSettings, zone: str,
             remove_missing: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with `moved` (new or changed stage, with since), `lapsed` (same stage, lapsing
    changed) and `gone` (stored, but no longer a person of their own: folded into another)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("new", new)
    con.register("old", old)
    midnight = f"timezone('{zone}', (DATE '{as_of.isoformat()}' - CAST({{}} AS INTEGER))::TIMESTAMP)"
    inactive = "coalesce(n.last_active_age, n.first_age)"
    # :TRICKY: one join of the new stages with the stored ones, and everything else read from it: each
    # further join of two million people cost about 0.15 s
    con.execute(f"""
        CREATE TABLE joined AS
        SELECT n.person_id, n.stage, o.stage AS old_stage, n.lapsing, o.lapsing AS old_lapsing, n.first_ts,
          n.last_active_ts, o.since AS old_since, o.stage IS DISTINCT FROM n.stage AS moved,
          CASE WHEN o.stage IS NOT DISTINCT FROM n.stage THEN NULL
               WHEN n.stage = 'uninstall' THEN n.uninstall_ts
               WHEN n.stage = 'churn' THEN {midnight.format(f"({inactive} - {cfg.churn_days})")}
               WHEN n.stage = 'new' THEN n.first_ts
               WHEN n.stage = 'resurrected' AND n.gap_return THEN {midnight.format("n.window_first_age")}
               WHEN n.stage = 'resurrected' THEN coalesce(n.return_signal_ts, {midnight.format("n.window_first_age")})
               ELSE {midnight.format("0")} END AS since
        FROM new n LEFT JOIN old o USING (person_id)
    """)
    con.execute("CREATE VIEW moved AS SELECT person_id, stage, old_stage, lapsing, first_ts, last_active_ts, since "
                "FROM joined WHERE moved")
    con.execute("CREATE VIEW lapsed AS SELECT person_id, lapsing FROM joined "
                "WHERE NOT moved AND old_lapsing IS DISTINCT FROM lapsing")
    con.execute("CREATE TABLE gone AS SELECT person_id FROM old ANTI JOIN new USING (person_id)")
    kept = "" if remove_missing else (
        " UNION ALL SELECT person_id, stage, since, lapsing FROM old SEMI JOIN gone USING (person_id)")
    con.execute("CREATE VIEW state AS SELECT person_id, stage, CASE WHEN moved THEN coalesce(since, old_since) "
                "ELSE old_since END AS since, "
                "lapsing FROM joined" + kept)
    return con


def _upsert(engine: Engine):  # type: ignore[no-untyped-def]
    module = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = module.insert(LifecycleStage)
    keep = ("stage", "since", "lapsing", "first_seen_at", "last_active_at", "as_of", "updated_at", "run_id")
    return stmt.on_conflict_do_update(index_elements=["profile_id"], set_={k: stmt.excluded[k] for k in keep})


def _write_moved(conn: Connection, engine: Engine, moved: pa.Table, *, first: bool, as_of: date, now: datetime,
                 run_id: int) -> None:
    """The new stages and their transitions. A first classification inserts everyone straight through the
    driver (`insert_arrow`); later ones update the few that moved in place."""
    n = moved.num_rows

    def constant(value: Any, kind: pa.DataType) -> pa.Array:
        return pa.array([value] * n, kind)

    transitions = pa.table({
        "profile_id": moved.column("person_id"), "from_stage": moved.column("old_stage"),
        "to_stage": moved.column("stage"), "at": moved.column("since"),
        "detected_at": constant(now, pa.timestamp("us", tz="UTC")),
        "source": constant(TransitionSource.RUN.value, pa.string()),
    })
    if first:
        insert_arrow(conn, LifecycleStage, pa.table({
            "profile_id": moved.column("person_id"), "stage": moved.column("stage"), "since": moved.column("since"),
            "lapsing": moved.column("lapsing"), "first_seen_at": moved.column("first_ts"),
            "last_active_at": moved.column("last_active_ts"), "as_of": constant(as_of, pa.date32()),
            "updated_at": constant(now, pa.timestamp("us", tz="UTC")), "run_id": constant(run_id, pa.int64()),
        }))
    else:
        rows = moved.to_pylist()
        for start in range(0, n, WRITE_BATCH):
            conn.execute(_upsert(engine), [
                {"profile_id": r["person_id"], "stage": r["stage"], "since": r["since"], "lapsing": r["lapsing"],
                 "first_seen_at": r["first_ts"], "last_active_at": r["last_active_ts"], "as_of": as_of,
                 "updated_at": now, "run_id": run_id} for r in rows[start:start + WRITE_BATCH]])
    insert_arrow(conn, LifecycleTransition, transitions)


def run(engine: Engine, view: EventsView, as_of: date, cfg: LifecycleSettings, zone: str, *,
        now: datetime, rollup: str | None = None, step: Step | None = None, remove_missing: bool = True,
        snapshot: Path | None = None) -> RunResult:
    """Classify, compare with what is stored, write changes and transitions. Returns what happened."""
    step = step or (lambda _label: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    step("classifying")
    new = classify_everyone(view, as_of, cfg, zone, token_signals(engine, day_end(as_of, zone)))
    seconds["classify"] = time.perf_counter() - started
    mark = time.perf_counter()
    step("comparing with the stored stages")
    old = stored.read(engine, snapshot)
    diff = _changes(new, old, as_of, cfg, zone, remove_missing)
    moved = diff.sql("SELECT * FROM moved ORDER BY person_id").to_arrow_table()  # in key order: SQLite writes it 30% faster
    pairs = dict(sorted((f"{old_stage or 'none'} -> {stage}", n) for old_stage, stage, n in diff.execute(
        "SELECT old_stage, stage, count(*) FROM moved GROUP BY ALL").fetchall()))
    lapsed = diff.sql("SELECT * FROM lapsed").to_arrow_table().to_pylist()
    gone = [r[0] for r in diff.execute("SELECT person_id FROM gone").fetchall()] if remove_missing else []
    by_stage = dict(diff.execute("SELECT stage, count(*) FROM new GROUP BY 1 ORDER BY 1").fetchall())
    state = diff.sql("SELECT * FROM state").to_arrow_table()
    diff.close()
    seconds["compare"] = time.perf_counter() - mark
    mark = time.perf_counter()
    step(f"storing {moved.num_rows:,} changes")
    users = sum(by_stage.values())
    with engine.begin() as conn:
        run_id = conn.execute(insert(LifecycleRun).values(
            as_of=as_of, started_at=now, finished_at=now, engine=view.engine, users=users, changed=moved.num_rows,
            by_stage=by_stage)).inserted_primary_key[0]
        _write_moved(conn, engine, moved, first=old.num_rows == 0, as_of=as_of, now=now, run_id=run_id)
        for flag in (True, False):
            ids = [r["person_id"] for r in lapsed if r["lapsing"] is flag]
            for batch in in_batches(ids):
                conn.execute(update(LifecycleStage).where(LifecycleStage.profile_id.in_(batch))
                             .values(lapsing=flag, as_of=as_of, updated_at=now, run_id=run_id))
        for batch in in_batches(gone):
            conn.execute(delete(LifecycleStage).where(LifecycleStage.profile_id.in_(batch)))
        conn.execute(update(LifecycleRun).where(LifecycleRun.id == run_id).values(
            finished_at=now + timedelta(seconds=time.perf_counter() - started)))
    stored.save(snapshot, run_id, state)
    seconds["store"] = time.perf_counter() - mark
    ordered = {s.value: by_stage.get(s.value, 0) for s in Stage}
    return RunResult(as_of, view.engine, users, ordered, moved.num_rows, pairs,
                     len(gone), rollup, seconds)
