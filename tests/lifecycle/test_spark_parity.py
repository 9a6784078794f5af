"""The same lifecycle definition on DuckDB and on Apache Spark (local mode) gives identical stages."""

from __future__ import annotations

import random
from pathlib import Path

import ibis
import pyarrow.parquet as pq
import pytest

from nudgekit.config import LifecycleSettings
from nudgekit.workspace import Workspace

from .conftest import AS_OF, run_engine
from .reference import to_messages
from .test_stages import random_events


def _spark_engine(spark, tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    con = ibis.pyspark.connect(spark)

    class SparkTables:
        """Makes run_engine's `create_table` read a Parquet file through Spark instead."""

        name = "pyspark"

        def create_table(self, table_name, table, overwrite=True):  # type: ignore[no-untyped-def]
            path = tmp_path / f"{name}.parquet"
            pq.write_table(table, path)
            return con.read_parquet(str(path))

        def __getattr__(self, attr):  # type: ignore[no-untyped-def]
            return getattr(con, attr)

    return SparkTables()


@pytest.mark.parametrize("seed", [11, 12])
def test_stages_are_identical_on_duckdb_and_spark(spark, tmp_path, seed):
    rng = random.Random(seed)
    events, signals = random_events(rng, 200)
    cfg = LifecycleSettings(churn_days=rng.choice([14, 30]), resurrected_days=7, usage_cycle_days=7,
                            power_active_days=4)
    duck = ibis.duckdb.connect()
    on_duckdb = run_engine(duck, events, cfg, signals=signals)
    on_spark = run_engine(_spark_engine(spark, tmp_path, f"ev{seed}"), events, cfg, signals=signals)
    assert on_spark == on_duckdb
    assert len({s for s, _ in on_duckdb.values()}) >= 5  # the data exercises most stages


def test_warehouse_mode_runs_lifecycle_on_spark_in_place(spark, tmp_path, clock):
    """A workspace pointed at a Spark table stores the same stages as one that ingested the same events."""
    events, _ = random_events(random.Random(5), 120)
    clock.now = clock.now.replace(year=AS_OF.year, month=AS_OF.month, day=AS_OF.day, hour=14)
    local, _ = Workspace.init(tmp_path / "local", clock=clock)
    local.events.append(local.ingest(to_messages(events)).rows)
    local.run_lifecycle()

    lake = tmp_path / "lake.parquet"
    with local.events.reader() as con:
        pq.write_table(con.sql("SELECT user_id AS uid, type AS kind, event AS name, timestamp AS ts, "
                               "properties AS props FROM events").to_arrow_table(), lake)
    spark.read.parquet(str(lake)).createOrReplaceTempView("lake_events")
    warehouse, _ = Workspace.init(tmp_path / "warehouse", clock=clock, events_connection=ibis.pyspark.connect(spark))
    warehouse.settings.warehouse.table = "lake_events"
    warehouse.settings.warehouse.user_id = "uid"
    warehouse.settings.warehouse.type = "kind"
    warehouse.settings.warehouse.event = "name"
    warehouse.settings.warehouse.timestamp = "ts"
    warehouse.settings.warehouse.properties = "props"
    result = warehouse.run_lifecycle()
    assert result.engine == "pyspark"

    def stored(ws: Workspace) -> dict[str, tuple[str, bool]]:
        from nudgekit.store.state import LifecycleStage

        with ws.sessions() as s:
            return {r.profile_id: (r.stage, r.lapsing) for r in s.query(LifecycleStage)}

    assert stored(warehouse) == stored(local)
    local.close()
    warehouse.close()
