"""One set of rules for every door: Segment-shaped rows in, stored rows and named rejects out.

Each rule is written once, here, with its condition in two engines: SQL, run
vectorised in DuckDB for files (a million rows are checked as fast as one
request), and Python, for the HTTP API, JSONL and the Python API, where a
DuckDB query's fixed cost (milliseconds) would dominate 100-event requests.
The reason a marketer reads is built by the same Python function for both,
and tests/ingest/test_validate.py runs a corpus of awkward rows through both
engines and requires identical verdicts and identical stored rows.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import orjson
import pyarrow as pa

from nudgekit.store.events import EVENT_SCHEMA
from nudgekit.vocabulary import MessageType

RAW_SCHEMA = pa.schema(
    [
        ("_row", pa.int64()),
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("previous_id", pa.string()),
        ("timestamp", pa.string()),
        ("original_timestamp", pa.string()),
        ("sent_at", pa.string()),
        ("properties", pa.string()),
        ("context", pa.string()),
        ("_size", pa.int64()),
    ]
)
ACCEPTED_SCHEMA = EVENT_SCHEMA.append(pa.field("_row", pa.int64()))

MAX_ID_LENGTH = 255
MAX_EVENT_NAME_LENGTH = 200
ISO_HINT = "use ISO 8601, e.g. 2026-11-22T09:30:00+09:00"
TYPES = tuple(t.value for t in MessageType)
TYPE_LIST_SQL = ", ".join(f"'{t}'" for t in TYPES)
EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Reject:
    """A message we refused: where it was, which field, and why in plain words."""

    row: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.row, "field": self.field, "reason": self.reason}


@dataclass
class Row:
    """One raw row with its times parsed: what every rule looks at."""

    values: dict[str, Any]
    ts_client: datetime | None
    ts_orig: datetime | None
    ts: datetime
    received: datetime
    future_hours: int
    max_bytes: int

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


def _blank(value: str | None) -> bool:
    return value is None or value.strip(" ") == ""


def _too_long(value: str | None, limit: int) -> bool:
    return value is not None and len(value) > limit


def _not_object(text: str | None) -> bool:
    if text is None:
        return False
    try:
        return not isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return True


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sql_blank(column: str) -> str:
    return f"(nullif(trim({column}), '') IS NULL)"


def _sql_not_object(column: str) -> str:
    """Valid JSON whose first non-blank character is "{" is an object: one parse, not two."""
    return f"(left(ltrim({column}, ' \t\n\r'), 1) <> '{{' OR NOT json_valid({column}))"


@dataclass(frozen=True)
class Rule:
    field: str
    sql: str
    test: Callable[[Row], bool]
    reason: Callable[[Row], str]


# Order matters: the first rule a row breaks is the one reported.
RULES: tuple[Rule, ...] = (
    Rule("type", f"type IS NULL OR type NOT IN ({TYPE_LIST_SQL})",
         lambda r: r["type"] not in TYPES,
         lambda r: f"unknown message type {repr(r['type']) if r['type'] is not None else '(none)'}; "
                   f"expected one of {', '.join(TYPES)}"),
    Rule("userId", f"{_sql_blank('user_id')} AND {_sql_blank('anonymous_id')}",
         lambda r: _blank(r["user_id"]) and _blank(r["anonymous_id"]),
         lambda r: "every message needs a userId or an anonymousId"),
    Rule("userId", f"length(user_id) > {MAX_ID_LENGTH}",
         lambda r: _too_long(r["user_id"], MAX_ID_LENGTH),
         lambda r: f"userId is longer than {MAX_ID_LENGTH} characters"),
    Rule("anonymousId", f"length(anonymous_id) > {MAX_ID_LENGTH}",
         lambda r: _too_long(r["anonymous_id"], MAX_ID_LENGTH),
         lambda r: f"anonymousId is longer than {MAX_ID_LENGTH} characters"),
    Rule("messageId", f"length(message_id) > {MAX_ID_LENGTH}",
         lambda r: _too_long(r["message_id"], MAX_ID_LENGTH),
         lambda r: f"messageId is longer than {MAX_ID_LENGTH} characters"),
    Rule("event", f"type = 'track' AND {_sql_blank('event')}",
         lambda r: r["type"] == "track" and _blank(r["event"]),
         lambda r: "a track call needs an event name"),
    Rule("event", f"length(event) > {MAX_EVENT_NAME_LENGTH}",
         lambda r: _too_long(r["event"], MAX_EVENT_NAME_LENGTH),
         lambda r: f"the event name is longer than {MAX_EVENT_NAME_LENGTH} characters"),
    Rule("previousId", f"type = 'alias' AND ({_sql_blank('previous_id')} OR {_sql_blank('user_id')})",
         lambda r: r["type"] == "alias" and (_blank(r["previous_id"]) or _blank(r["user_id"])),
         lambda r: "an alias call needs both previousId and userId"),
    Rule("timestamp", '"timestamp" IS NOT NULL AND ts_client IS NULL',
         lambda r: r["timestamp"] is not None and r.ts_client is None,
         lambda r: f'"{r["timestamp"]}" is not a date and time; {ISO_HINT}'),
    Rule("originalTimestamp", "original_timestamp IS NOT NULL AND ts_orig IS NULL",
         lambda r: r["original_timestamp"] is not None and r.ts_orig is None,
         lambda r: f'"{r["original_timestamp"]}" is not a date and time; {ISO_HINT}'),
    Rule("timestamp", "ts > $received + to_hours($future_hours)",
         lambda r: r.ts > r.received + timedelta(hours=r.future_hours),
         lambda r: f"the time {_utc(r.ts)} is more than {r.future_hours} hours in the future; "
                   "check the device clock or the time zone"),
    Rule("timestamp", "ts < TIMESTAMPTZ '2000-01-01 00:00:00+00'",
         lambda r: r.ts < EPOCH_2000,
         lambda r: f"the time {_utc(r.ts)} is before the year 2000"),
    Rule("properties", f"properties IS NOT NULL AND {_sql_not_object('properties')}",
         lambda r: _not_object(r["properties"]),
         lambda r: 'properties must be a JSON object like {"price": 12900}'),
    Rule("context", f"context IS NOT NULL AND {_sql_not_object('context')}",
         lambda r: _not_object(r["context"]),
         lambda r: "context must be a JSON object"),
    Rule("message", "_size > $max_bytes",
         lambda r: (r["_size"] or 0) > r.max_bytes,
         lambda r: f"the message is {r['_size']} bytes; the limit is {r.max_bytes} bytes (32 KB)"),
)

# -- SQL engine ----------------------------------------------------------------------------------

_RULE_CASE = "CASE " + " ".join(f"WHEN {rule.sql} THEN {i}" for i, rule in enumerate(RULES)) + " END"

JUDGE_SQL = f"""
WITH parsed AS (
    SELECT *,
           TRY_CAST("timestamp" AS TIMESTAMPTZ) AS ts_client,
           TRY_CAST(original_timestamp AS TIMESTAMPTZ) AS ts_orig,
           TRY_CAST(sent_at AS TIMESTAMPTZ) AS ts_sent
    FROM {{source}}
), timed AS (
    SELECT *,
           CASE WHEN "timestamp" IS NOT NULL THEN ts_client
                WHEN ts_orig IS NOT NULL AND ts_sent IS NOT NULL THEN $received - (ts_sent - ts_orig)
                WHEN ts_orig IS NOT NULL THEN ts_orig
                ELSE $received END AS ts
    FROM parsed
), ruled AS (
    SELECT *, {_RULE_CASE} AS rule FROM timed
)
SELECT rule, _row,
       -- what the reasons quote, kept for rejected rows only
       CASE WHEN rule IS NOT NULL THEN "timestamp" END AS raw_timestamp,
       CASE WHEN rule IS NOT NULL THEN original_timestamp END AS original_timestamp,
       CASE WHEN rule IS NOT NULL THEN _size END AS _size,
       CASE WHEN rule IS NOT NULL THEN ts_client END AS ts_client,
       CASE WHEN rule IS NOT NULL THEN ts_orig END AS ts_orig,
       ts,
       CASE WHEN rule IS NULL THEN coalesce(nullif(trim(message_id), ''),
            md5(concat_ws('|', type, event, user_id, anonymous_id, previous_id,
                          strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%S.%fZ'), properties))) END AS event_id,
       type,
       CASE WHEN rule IS NULL THEN nullif(trim(event), '') ELSE event END AS event,
       CASE WHEN rule IS NULL THEN nullif(user_id, '') ELSE user_id END AS user_id,
       CASE WHEN rule IS NULL THEN nullif(anonymous_id, '') ELSE anonymous_id END AS anonymous_id,
       CASE WHEN rule IS NULL THEN nullif(previous_id, '') ELSE previous_id END AS previous_id,
       ts AS "timestamp",
       $received AS received_at,
       coalesce(properties, '{{}}') AS properties,
       coalesce(context, '{{}}') AS context,
       $source AS source
FROM ruled
"""

REJECTED_SQL = """
SELECT rule, _row, type, event, user_id, anonymous_id, previous_id, raw_timestamp AS "timestamp",
       original_timestamp, properties, context, _size, ts_client, ts_orig, ts
FROM judged WHERE rule IS NOT NULL ORDER BY _row
"""
STORED_WHERE = "rule IS NULL"


@dataclass(frozen=True)
class Checked:
    """Rows that passed (ACCEPTED_SCHEMA: EVENT_SCHEMA plus `_row`) and the rejects."""

    accepted: pa.Table
    rejects: list[Reject]


class Validator:
    """Runs the rules. `check` for rows in Python (requests), `judge_sql` inside a DuckDB connection (files)."""

    def __init__(self, zone: str, *, max_message_bytes: int = 32 * 1024, future_hours: float = 24.0) -> None:
        self.zone_name = zone
        self.zone: tzinfo = ZoneInfo(zone)
        self.max_message_bytes = max_message_bytes
        self.future_hours = int(future_hours)
        self._local = threading.local()

    # -- Python engine ---------------------------------------------------------------------------

    def _parse_time(self, text: str | None) -> datetime | None:
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            return None
        return moment.replace(tzinfo=self.zone) if moment.tzinfo is None else moment

    def check(self, raws: Iterable[dict[str, Any]], *, received_at: datetime, source: str) -> Checked:
        columns: dict[str, list[Any]] = {name: [] for name in ACCEPTED_SCHEMA.names}
        rejects: list[Reject] = []
        for raw in raws:
            ts_client = self._parse_time(raw.get("timestamp"))
            ts_orig = self._parse_time(raw.get("original_timestamp"))
            ts_sent = self._parse_time(raw.get("sent_at"))
            if raw.get("timestamp") is not None:
                ts = ts_client
            elif ts_orig is not None and ts_sent is not None:
                ts = received_at - (ts_sent - ts_orig)
            else:
                ts = ts_orig or received_at
            row = Row(raw, ts_client, ts_orig, ts or received_at, received_at, self.future_hours,
                      self.max_message_bytes)
            broken = next((rule for rule in RULES if rule.test(row)), None)
            if broken is not None:
                rejects.append(Reject(int(raw["_row"]), broken.field, broken.reason(row)))
                continue
            _append_stored(columns, row, received_at, source)
        return Checked(pa.table(columns, schema=ACCEPTED_SCHEMA), rejects)

    # -- SQL engine ------------------------------------------------------------------------------

    def connection(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB for this thread, reading naive times in the workspace zone."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = duckdb.connect(":memory:")
            self.prepare(con)
            self._local.con = con
        return con

    def prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        # Naive times in files are read in the workspace zone (a Korean team writes 2026-11-22 09:00 KST).
        con.execute(f"SET TimeZone = '{self.zone_name}'")

    def judge_sql(self, con: duckdb.DuckDBPyConnection, source: str, *, received_at: datetime,
                  source_name: str) -> list[Reject]:
        """Judge the rows of relation `source` (RAW_SCHEMA columns) into temp table `judged`.

        The rows to store are `judged WHERE rule IS NULL` (EVENT_SCHEMA columns plus `_row`).
        Returns the rejects.
        """
        params = {"received": received_at, "future_hours": self.future_hours, "max_bytes": self.max_message_bytes,
                  "source": source_name}
        judge = JUDGE_SQL.replace("{source}", source)
        con.execute(f"CREATE OR REPLACE TEMP TABLE judged AS {judge}", params)
        rejects = []
        for raw in con.sql(REJECTED_SQL).to_arrow_table().to_pylist():
            row = Row(raw, raw["ts_client"], raw["ts_orig"], raw["ts"], received_at, self.future_hours,
                      self.max_message_bytes)
            rule = RULES[raw["rule"]]
            rejects.append(Reject(int(raw["_row"]), rule.field, rule.reason(row)))
        return rejects

    def check_table(self, raw: pa.Table, *, received_at: datetime, source: str) -> Checked:
        """The SQL engine on an Arrow table, returning Arrow (the parity tests compare it with `check`)."""
        con = self.connection()
        con.register("raw_rows", raw.cast(RAW_SCHEMA))
        try:
            rejects = self.judge_sql(con, "raw_rows", received_at=received_at, source_name=source)
            columns = ", ".join(f'"{name}"' for name in ACCEPTED_SCHEMA.names)
            accepted = con.sql(f"SELECT {columns} FROM judged WHERE {STORED_WHERE} ORDER BY _row").to_arrow_table()
        finally:
            con.unregister("raw_rows")
            con.execute("DROP TABLE IF EXISTS judged")
        return Checked(accepted.cast(ACCEPTED_SCHEMA), rejects)


def _append_stored(columns: dict[str, list[Any]], row: Row, received_at: datetime, source: str) -> None:
    raw = row.values
    message_id = raw.get("message_id")
    if _blank(message_id):
        parts = [raw.get("type"), raw.get("event"), raw.get("user_id"), raw.get("anonymous_id"),
                 raw.get("previous_id"), row.ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 raw.get("properties")]
        event_id = hashlib.md5("|".join(p for p in parts if p is not None).encode()).hexdigest()
    else:
        event_id = message_id.strip(" ")
    event = raw.get("event")
    columns["event_id"].append(event_id)
    columns["type"].append(raw.get("type"))
    columns["event"].append(event.strip(" ") or None if event is not None else None)
    columns["user_id"].append(raw.get("user_id") or None)
    columns["anonymous_id"].append(raw.get("anonymous_id") or None)
    columns["previous_id"].append(raw.get("previous_id") or None)
    columns["timestamp"].append(row.ts)
    columns["received_at"].append(received_at)
    columns["properties"].append(raw.get("properties") if raw.get("properties") is not None else "{}")
    columns["context"].append(raw.get("context") if raw.get("context") is not None else "{}")
    columns["source"].append(source)
    columns["_row"].append(raw["_row"])


def without_row(table: pa.Table) -> pa.Table:
    return table.drop_columns(["_row"]) if "_row" in table.column_names else table

