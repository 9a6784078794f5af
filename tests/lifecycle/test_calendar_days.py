"""Local calendar days from epoch arithmetic (`calendar_age`) agree with the engines' own date casts,
across daylight-saving changes and historical offsets, and the stages built on them with the reference."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nudgekit.config import LifecycleSettings
from nudgekit.store.activity import calendar_age, day_start, utc_offsets
from nudgekit.store.backend import set_session_zone

from . import reference
from .conftest import AS_OF, run_engine
from .test_stages import random_events

ZONES = ["Asia/Seoul", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu",
         "America/St_Johns", "Pacific/Apia", "UTC"]


def instants(zone: str, rng: random.Random, count: int = 400) -> list[datetime]:
    """Moments on both sides of every offset change since 2000 (where days are 23 or 25 hours, or a day
    is skipped), local midnights, and random moments back to 1901 (before 2000: the cast's branch)."""
    around = []
    for at_us, _ in utc_offsets(zone, AS_OF):
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at_us)
        if at.year >= 2000:
            around += [at + timedelta(microseconds=d) for d in (-1, 0, 1)] + [at + timedelta(hours=h) for h in (-25, 23)]
    start, end = datetime(1901, 1, 1, tzinfo=UTC).timestamp(), datetime(2026, 11, 25, tzinfo=UTC).timestamp()
    randoms = [datetime.fromtimestamp(rng.uniform(start, end), UTC) for _ in range(count)]
    midnights = [day_start(AS_OF - timedelta(days=d), zone) + timedelta(microseconds=e)
                 for d in range(0, 40) for e in (-1, 0)]
    return around + randoms + midnights


def ages_on(con, zone: str, moments: list[datetime], folder: Path | None = None,  # type: ignore[no-untyped-def]
            ) -> tuple[list[int], list[int]]:
    """(calendar_age, the engine's own date cast in the session zone) for each moment; Spark reads them
    from a Parquet file in `folder`."""
    set_session_zone(con, zone)
    table = pa.table({"i": pa.array(range(len(moments)), pa.int64()),
                      "ts": pa.array(moments, pa.timestamp("us", tz="UTC"))})
    if folder is None:
        t = con.create_table("moments", table, overwrite=True)
    else:
        pq.write_table(table, folder / "moments.parquet")
        t = con.read_parquet(str(folder / "moments.parquet"))
    out = con.to_pyarrow(t.select(
        t.i, ours=calendar_age(t.ts, AS_OF, zone, con.name),
        cast=ibis.literal(AS_OF).delta(t.ts.date(), unit="day").cast("int32"),
    ).order_by("i"))
    return out.column("ours").to_pylist(), out.column("cast").to_pylist()


@pytest.mark.parametrize("zone", ZONES)
def test_calendar_age_equals_the_date_cast_in_the_zone(zone):
    rng = random.Random(zone)
    moments = instants(zone, rng)
    con = ibis.duckdb.connect()
    ours, cast = ages_on(con, zone, moments)
    python = [(AS_OF - m.astimezone(ZoneInfo(zone)).date()).days for m in moments]
    assert ours == python
    assert cast == python


def test_calendar_age_on_spark_equals_python(spark, tmp_path):
    zone = "America/New_York"
    moments = instants(zone, random.Random(3), count=100)
    con = ibis.pyspark.connect(spark)
    ours, _ = ages_on(con, zone, moments, tmp_path)
    assert ours == [(AS_OF - m.astimezone(ZoneInfo(zone)).date()).days for m in moments]


def test_the_offsets_are_newest_first_and_find_the_change_to_the_second():
    offsets = utc_offsets("America/New_York", date(2026, 11, 24))
    assert [at for at, _ in offsets] == sorted((at for at, _ in offsets), reverse=True)
    ended = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 02:00 EDT became 01:00 EST
    assert offsets[0] == (int(ended.timestamp()) * 1_000_000, -5 * 3600 * 1_000_000)
    assert utc_offsets("UTC", date(2026, 11, 24)) == ((int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000, 0),)


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Lord_Howe"])
@pytest.mark.parametrize("seed", [1, 2])
def test_stages_in_a_zone_that_changes_its_clocks_match_the_reference(duck, zone, seed):
    """New York left daylight time on 2026-11-01 and London on 2026-10-25, inside the 28-day Power window;
    Lord Howe moves its clocks by half an hour (2026-10-04)."""
    rng = random.Random(seed)
    events, signals = random_events(rng, 150)
    churn = rng.choice([14, 30])
    cfg = LifecycleSettings(churn_days=churn, usage_cycle_days=min(churn, 14), power_active_days=rng.choice([4, 12]))
    expected = reference.stages(events, AS_OF, cfg, zone, signals)
    assert run_engine(duck, events, cfg, zone=zone, signals=signals) == expected
