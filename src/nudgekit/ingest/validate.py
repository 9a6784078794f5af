"""One validation for every door: Segment-shaped rows in, stored rows and named rejects out.

Rows from the HTTP API, the Python API and bulk files all become one Arrow
table of text columns (RAW_SCHEMA) and pass the same vectorised rules in an
in-memory DuckDB, so a million-row file is checked as fast as one request.
Profile rules (phone, email, trait types, consent) follow in `profiles.identify`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import duckdb
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

MAX_ID_LENGTH = 255
MAX_EVENT_NAME_LENGTH = 200
ISO_HINT = "use ISO 8601, e.g. 2026-11-22T09:30:00+09:00"
TYPES = ", ".join(f"'{t.value}'" for t in MessageType)
TYPE_WORDS = ", ".join(t.value for t in MessageType)


@dataclass(frozen=True)
class Reject:
    """A message we refused: where it was, which field, and why in plain words."""

    row: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.row, "field": self.field, "reason": self.reason}


def _blank(column: str) -> str:
    return f"(nullif(trim({column}), '') IS NULL)"


# (field, condition, reason as a SQL expression). Order matters: the first rule that fails is reported.
RULES: list[tuple[str, str, str]] = [
    ("type", f"type IS NULL OR type NOT IN ({TYPES})",
     f"'unknown message type ' || coalesce('\"' || type || '\"', '(none)') || '; expected one of {TYPE_WORDS}'"),
    ("userId", f"{_blank('user_id')} AND {_blank('anonymous_id')}",
     "'every message needs a userId or an anonymousId'"),
    ("userId", f"length(user_id) > {MAX_ID_LENGTH}", f"'userId is longer than {MAX_ID_LENGTH} characters'"),
    ("anonymousId", f"length(anonymous_id) > {MAX_ID_LENGTH}",
     f"'anonymousId is longer than {MAX_ID_LENGTH} characters'"),
    ("messageId", f"length(message_id) > {MAX_ID_LENGTH}",
     f"'messageId is longer than {MAX_ID_LENGTH} characters'"),
    ("event", f"type = 'track' AND {_blank('event')}", "'a track call needs an event name'"),
    ("event", f"length(event) > {MAX_EVENT_NAME_LENGTH}",
     f"'the event name is longer than {MAX_EVENT_NAME_LENGTH} characters'"),
    ("previousId", f"type = 'alias' AND ({_blank('previous_id')} OR {_blank('user_id')})",
     "'an alias call needs both previousId and userId'"),
    ("timestamp", "\"timestamp\" IS NOT NULL AND ts_client IS NULL",
     f"'\"' || \"timestamp\" || '\" is not a date and time; {ISO_HINT}'"),
    ("originalTimestamp", "original_timestamp IS NOT NULL AND ts_orig IS NULL",
     f"'\"' || original_timestamp || '\" is not a date and time; {ISO_HINT}'"),
    ("timestamp", "ts > $received + to_hours($future_hours)",
     "'the time ' || strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%SZ') || ' is more than ' || $future_hours "
     "|| ' hours in the future; check the device clock or the time zone'"),
    ("timestamp", "ts < TIMESTAMPTZ '2000-01-01 00:00:00+00'",
     "'the time ' || strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%SZ') || ' is before the year 2000'"),
    ("properties", "properties IS NOT NULL AND (NOT json_valid(properties) OR json_type(properties) <> 'OBJECT')",
     "'properties must be a JSON object like {\"price\": 12900}'"),
    ("context", "context IS NOT NULL AND (NOT json_valid(context) OR json_type(context) <> 'OBJECT')",
     "'context must be a JSON object'"),
    ("message", "_size > $max_bytes",
     "'the message is ' || _size || ' bytes; the limit is ' || $max_bytes || ' bytes (32 KB)'"),
]

_VERDICT = "CASE " + " ".join(
    f"WHEN {cond} THEN '{field}' || chr(31) || ({reason})" for field, cond, reason in RULES
) + " END"

VALIDATE_SQL = f"""
WITH parsed AS (
    SELECT *,
           TRY_CAST("timestamp" AS TIMESTAMPTZ) AS ts_client,
           TRY_CAST(original_timestamp AS TIMESTAMPTZ) AS ts_orig,
           TRY_CAST(sent_at AS TIMESTAMPTZ) AS ts_sent
    FROM raw
), timed AS (
    SELECT *,
           CASE WHEN "timestamp" IS NOT NULL THEN ts_client
                WHEN ts_orig IS NOT NULL AND ts_sent IS NOT NULL THEN $received - (ts_sent - ts_orig)
                WHEN ts_orig IS NOT NULL THEN ts_orig
                ELSE $received END AS ts
    FROM parsed
)
SELECT *, {_VERDICT} AS verdict FROM timed
"""

ACCEPTED_SQL = """
SELECT coalesce(nullif(trim(message_id), ''),
                md5(concat_ws('|', type, event, user_id, anonymous_id, previous_id,
                              strftime(timezone('UTC', ts), '%Y-%m-%dT%H:%M:%S.%fZ'), properties))) AS event_id,
       type,
       nullif(trim(event), '') AS event,
       nullif(user_id, '') AS user_id,
       nullif(anonymous_id, '') AS anonymous_id,
       nullif(previous_id, '') AS previous_id,
       ts AS "timestamp",
       $received AS received_at,
       coalesce(properties, '{}') AS properties,
       coalesce(context, '{}') AS context,
       $source AS source,
       _row
FROM judged WHERE verdict IS NULL ORDER BY _row
"""

REJECTED_SQL = """
SELECT _row, split_part(verdict, chr(31), 1) AS field, split_part(verdict, chr(31), 2) AS reason
FROM judged WHERE verdict IS NOT NULL ORDER BY _row
"""


@dataclass(frozen=True)
class Checked:
    """Rows that passed (EVENT_SCHEMA plus `_row`) and the rejects."""

    accepted: pa.Table
    rejects: list[Reject]


class Validator:
    """Runs the rules. One in-memory DuckDB per thread, so API worker threads never share a connection."""

    def __init__(self, zone: str, *, max_message_bytes: int = 32 * 1024, future_hours: float = 24.0) -> None:
        self.zone = zone
        self.max_message_bytes = max_message_bytes
        self.future_hours = future_hours
        self._local = threading.local()

    def connection(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = duckdb.connect(":memory:")
            # Naive times in files are read in the workspace zone (a Korean team writes 2026-11-22 09:00 KST).
            con.execute(f"SET TimeZone = '{self.zone}'")
            con.execute("SET threads = 2")
            self._local.con = con
        return con

    def check(self, raw: pa.Table, *, received_at: datetime, source: str) -> Checked:
        con = self.connection()
        params = {
            "received": received_at,
            "future_hours": int(self.future_hours),
            "max_bytes": self.max_message_bytes,
        }
        con.register("raw", raw.cast(RAW_SCHEMA))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE judged AS {VALIDATE_SQL}", params)
            accepted = con.sql(ACCEPTED_SQL, params={"received": received_at, "source": source}).to_arrow_table()
            rejects = [Reject(int(r), f, why) for r, f, why in con.execute(REJECTED_SQL).fetchall()]
        finally:
            con.unregister("raw")
            con.execute("DROP TABLE IF EXISTS judged")
        accepted = accepted.cast(EVENT_SCHEMA.append(pa.field("_row", pa.int64())))
        return Checked(accepted, rejects)


def without_row(table: pa.Table) -> pa.Table:
    return table.drop_columns(["_row"]) if "_row" in table.column_names else table
