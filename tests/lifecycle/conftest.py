"""Run the lifecycle engine on a list of events in an in-memory backend, without a workspace."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import ibis
import pyarrow as pa
import pytest

from nudgekit.config import LifecycleSettings
from nudgekit.lifecycle.run import classify_everyone
from nudgekit.store.activity import ActivitySpec, person_days
from nudgekit.store.backend import EventsView, set_session_zone

from .reference import Ev, to_rows

ZONE = "Asia/Seoul"
AS_OF = date(2026, 11, 24)


def at(days_ago: int, hour: int = 12, minute: int = 0, zone: str = ZONE) -> datetime:
    """A moment `days_ago` calendar days before AS_OF, at a local wall-clock time in `zone`."""
    local = datetime.combine(AS_OF - timedelta(days=days_ago), time(hour, minute), ZoneInfo(zone))
    return local.astimezone(UTC)


def events_table(con, events: list[Ev]):  # type: ignore[no-untyped-def]
    rows = to_rows(events)
    table = pa.table({
        "person_id": pa.array(rows["person_id"], pa.string()),
        "type": pa.array(rows["type"], pa.string()),
        "event": pa.array(rows["event"], pa.string()),
        "timestamp": pa.array(rows["timestamp"], pa.timestamp("us", tz="UTC")),
        "properties": pa.array(rows["properties"], pa.string()),
    })
    return con.create_table("ev", table, overwrite=True)


def run_engine(con, events: list[Ev], cfg: LifecycleSettings | None = None, as_of: date = AS_OF,  # type: ignore[no-untyped-def]
               zone: str = ZONE, signals: dict[str, datetime] | None = None) -> dict[str, tuple[str, bool]]:
    cfg = cfg or LifecycleSettings()
    set_session_zone(con, zone)
    t = events_table(con, events)
    actors = t.rename(actor="person_id").mutate(is_anon=ibis.literal(False))
    spec = ActivitySpec.from_settings(zone, cfg)
    view = EventsView(con, con.name, t, person_days(actors, spec, keys=("actor", "is_anon"), engine=con.name), False)
    signal_table = None
    signals = {p: t for p, t in (signals or {}).items() if t.astimezone(ZoneInfo(zone)).date() <= as_of}
    if signals:
        signal_table = pa.table({"person_id": pa.array(list(signals), pa.string()),
                                 "tokens_invalid_at": pa.array(list(signals.values()), pa.timestamp("us", tz="UTC"))})
    out = classify_everyone(view, as_of, cfg, zone, signal_table).to_pylist()
    return {r["person_id"]: (r["stage"], r["lapsing"]) for r in out}


@pytest.fixture
def duck():  # type: ignore[no-untyped-def]
    con = ibis.duckdb.connect()
    yield con
    con.disconnect()
