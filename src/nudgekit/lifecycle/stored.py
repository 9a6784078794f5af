"""The stored stages as one Arrow table (person_id, stage, since, lapsing), fast.

:TRICKY: reading two million rows back from the state DB costs more than classifying them (about six
seconds from SQLite, most of it Python building rows). So each `lifecycle run` leaves what it stored in
`<workspace>/lifecycle/run-<id>.parquet`; while that run is still the latest, the file plus the rows
written since by anything else (at-once resurrections) *is* the stored state. Otherwise — another
machine ran, or no file — everything is read from the state DB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from nudgekit.store.state import LifecycleRun, LifecycleStage, in_batches

SCHEMA = pa.schema([("person_id", pa.string()), ("stage", pa.string()), ("since", pa.timestamp("us", tz="UTC")),
                    ("lapsing", pa.bool_())])


def read(engine: Engine, snapshot: Path | None) -> pa.Table:
    with engine.connect() as conn:
        last = conn.execute(select(LifecycleRun.id, LifecycleRun.started_at)
                            .order_by(LifecycleRun.id.desc()).limit(1)).first()
        base = _snapshot(snapshot, last[0]) if last is not None else None
        if base is not None and last is not None:
            fresh = conn.execute(
                select(LifecycleStage.profile_id, LifecycleStage.stage, LifecycleStage.since, LifecycleStage.lapsing)
                .where(LifecycleStage.updated_at >= last[1], LifecycleStage.run_id.is_(None))).all()
            if not fresh:
                return base
            patch = _table(fresh)
            kept = base.filter(pc.invert(pc.is_in(base.column("person_id"), value_set=patch.column("person_id"))))
            return pa.concat_tables([kept, patch])
    return read_all(engine)


def _snapshot(snapshot: Path | None, run_id: int) -> pa.Table | None:
    """The run's file, if it is there and whole (anything else — older layout, damage — is ignored)."""
    if snapshot is None or not (path := snapshot / f"run-{run_id}.parquet").exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):
        return None
    return table.cast(SCHEMA) if table.schema.names == SCHEMA.names else None


def read_all(engine: Engine, only: list[str] | None = None) -> pa.Table:
    """Straight from the state DB, through the driver's cursor (ORM rows would be slower still)."""
    sql = "SELECT profile_id, stage, since, lapsing FROM lifecycle_stages"
    mark = "%s" if engine.dialect.name == "postgresql" else "?"
    batches: list[list[str]] = [[]] if only is None else in_batches(only)
    rows: list[Any] = []
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for batch in batches:
            where = f" WHERE profile_id IN ({', '.join([mark] * len(batch))})" if only is not None else ""
            cursor.execute(sql + where, tuple(batch))
            rows += cursor.fetchall()
        cursor.close()
    return _table(rows)


def _table(rows: Any) -> pa.Table:
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], [], []]
    since = columns[2]
    if since and isinstance(since[0], str):  # SQLite keeps UTC datetimes as text
        moments = pa.array(since, pa.string()).cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    else:
        moments = pa.array(since, pa.timestamp("us", tz="UTC"))
    return pa.table([pa.array(columns[0], pa.string()), pa.array(columns[1], pa.string()), moments,
                     pa.array([bool(v) for v in columns[3]], pa.bool_())], schema=SCHEMA)


def save(snapshot: Path | None, run_id: int | None, state: pa.Table | None) -> None:
    """Keep this run's stored state (and only it)."""
    if snapshot is None:
        return
    snapshot.mkdir(parents=True, exist_ok=True)
    for old in snapshot.glob("run-*.parquet"):
        old.unlink(missing_ok=True)
    if state is None or run_id is None:
        return
    tmp = snapshot / f".run-{run_id}.parquet.tmp"
    pq.write_table(state.cast(SCHEMA), tmp)
    os.replace(tmp, snapshot / f"run-{run_id}.parquet")
