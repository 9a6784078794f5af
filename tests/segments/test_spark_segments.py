"""Every segment condition gives the same members on DuckDB and on Spark (warehouse mode, local mode)."""

from __future__ import annotations

import ibis
import pyarrow.parquet as pq
import pytest

from nudgekit.segments.model import parse
from nudgekit.workspace import Workspace

from .catalog import COMBINED, CONDITIONS
from .world import NOW, build


@pytest.fixture(scope="module")
def both(tmp_path_factory, spark):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("spark-shop")
    local, _ = build(tmp, seed=33, people=70)
    lake = tmp / "lake.parquet"
    with local.events.reader() as con:
        pq.write_table(con.sql("SELECT user_id, type, event, timestamp, properties FROM events").to_arrow_table(), lake)
    spark.read.parquet(str(lake)).createOrReplaceTempView("shop_events")
    warehouse = Workspace.open(local.settings.home, clock=lambda: NOW, events_connection=ibis.pyspark.connect(spark))
    warehouse.settings.warehouse.table = "shop_events"
    warehouse.settings.warehouse.type = "type"
    yield local, warehouse
    warehouse.close()
    local.close()


def test_every_condition_gives_the_same_members_on_spark(both):
    local, warehouse = both
    differ = []
    for where in CONDITIONS + COMBINED:
        segment = parse({"name": "t", "where": where})
        on_duckdb = set(local.segment_members(segment).column("person_id").to_pylist())
        on_spark = set(warehouse.segment_members(segment).column("person_id").to_pylist())
        if on_duckdb != on_spark:
            differ.append((where, sorted(on_duckdb ^ on_spark)[:5]))
    assert differ == [], "\n".join(str(d) for d in differ)


def test_preview_is_the_same_on_spark(both):
    local, warehouse = both
    segment = parse({"name": "t", "where": COMBINED[1]})
    a, b = local.segment_preview(segment).as_dict(), warehouse.segment_preview(segment).as_dict()
    assert {**a, "engine": None} == {**b, "engine": None} and b["engine"] == "pyspark"


def test_single_user_check_on_spark(both):
    local, warehouse = both
    segment = parse({"name": "t", "where": CONDITIONS[20]})
    members = set(local.segment_members(segment).column("person_id").to_pylist())
    for pid in ("u001", "u002", "u003", "u010"):
        assert warehouse.is_member(segment, pid) == (pid in members)
