"""The shared rules: one verdict per row, the same from the Python engine (requests) and the SQL engine (files)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from nudgekit.ingest.validate import RAW_SCHEMA, Validator

RECEIVED = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)

# (row, expected rejected field or None). Awkward on purpose: every rule, blank-ish values, odd time formats.
CORPUS: list[tuple[dict, str | None]] = [
    ({"type": "track", "event": "app_opened", "user_id": "u1", "timestamp": "2026-11-21T09:00:00Z"}, None),
    ({"type": "track", "event": "  padded  ", "user_id": "u1", "timestamp": "2026-11-21T09:00:00.123+09:00"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "2026-11-21 09:00:00"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "2026-11-21"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "2026-11-21T09:00:00.123456Z"}, None),
    ({"type": "track", "event": "x", "anonymous_id": "a1"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "message_id": "  m-7  "}, None),
    ({"type": "track", "event": "x", "user_id": "", "anonymous_id": "a1"}, None),
    ({"type": "page", "user_id": "u1"}, None),
    ({"type": "identify", "user_id": "u1", "properties": '{"name": "김민지"}'}, None),
    ({"type": "alias", "user_id": "u1", "previous_id": "a1"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "original_timestamp": "2026-11-21T09:00:00Z",
      "sent_at": "2026-11-21T09:00:05Z"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "original_timestamp": "2026-11-21T09:00:00Z"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "properties": ' \n{"a": [1, {"b": null}]}'}, None),
    ({"type": "teleport", "user_id": "u1"}, "type"),
    ({"type": None, "user_id": "u1"}, "type"),
    ({"type": "track", "event": "x"}, "userId"),
    ({"type": "track", "event": "x", "user_id": "   ", "anonymous_id": ""}, "userId"),
    ({"type": "track", "event": "x", "user_id": "u" * 256}, "userId"),
    ({"type": "track", "event": "x", "anonymous_id": "a" * 256}, "anonymousId"),
    ({"type": "track", "event": "x", "user_id": "u1", "message_id": "m" * 256}, "messageId"),
    ({"type": "track", "event": "", "user_id": "u1"}, "event"),
    ({"type": "track", "event": "  ", "user_id": "u1"}, "event"),
    ({"type": "track", "user_id": "u1"}, "event"),
    ({"type": "track", "event": "e" * 201, "user_id": "u1"}, "event"),
    ({"type": "alias", "user_id": "u1"}, "previousId"),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "yesterday"}, "timestamp"),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "31/12/2026"}, "timestamp"),
    ({"type": "track", "event": "x", "user_id": "u1", "original_timestamp": "soon"}, "originalTimestamp"),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "2026-11-23T02:00:00Z"}, "timestamp"),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "2026-11-23T00:59:00Z"}, None),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "1999-12-31T23:59:59Z"}, "timestamp"),
    ({"type": "track", "event": "x", "user_id": "u1", "timestamp": "2000-01-01 08:59:00"}, "timestamp"),
    ({"type": "track", "event": "x", "user_id": "u1", "properties": "[1, 2]"}, "properties"),
    ({"type": "track", "event": "x", "user_id": "u1", "properties": "{broken"}, "properties"),
    ({"type": "track", "event": "x", "user_id": "u1", "properties": '"text"'}, "properties"),
    ({"type": "track", "event": "x", "user_id": "u1", "context": "null"}, "context"),
    ({"type": "track", "event": "x", "user_id": "u1", "_size": 40_000}, "message"),
]


def raw_rows() -> list[dict]:
    rows = []
    for i, (row, _) in enumerate(CORPUS):
        full = {name: None for name in RAW_SCHEMA.names}
        full.update(row, _row=i)
        full["_size"] = row.get("_size", 100)
        rows.append(full)
    return rows


@pytest.fixture
def validator() -> Validator:
    return Validator("Asia/Seoul")


def test_the_python_engine_gives_the_expected_verdicts(validator: Validator) -> None:
    checked = validator.check(raw_rows(), received_at=RECEIVED, source="http")
    got = {r.row: r.field for r in checked.rejects}
    expected = {i: field for i, (_, field) in enumerate(CORPUS) if field}
    assert got == expected
    assert checked.accepted.num_rows == len(CORPUS) - len(expected)


def test_both_engines_agree_on_every_verdict_reason_and_stored_row(validator: Validator) -> None:
    rows = raw_rows()
    python = validator.check(rows, received_at=RECEIVED, source="http")
    sql = validator.check_table(pa.Table.from_pylist(rows, schema=RAW_SCHEMA), received_at=RECEIVED, source="http")
    assert python.rejects == sql.rejects
    assert python.accepted.to_pylist() == sql.accepted.to_pylist()


def test_reasons_speak_plainly(validator: Validator) -> None:
    checked = validator.check(raw_rows(), received_at=RECEIVED, source="http")
    reasons = {CORPUS[r.row][0].get("timestamp") or CORPUS[r.row][0].get("type"): r.reason for r in checked.rejects}
    assert reasons["yesterday"].startswith('"yesterday" is not a date and time; use ISO 8601')
    assert reasons["2026-11-23T02:00:00Z"] == (
        "the time 2026-11-23T02:00:00Z is more than 24 hours in the future; check the device clock or the time zone")
    assert reasons["1999-12-31T23:59:59Z"] == "the time 1999-12-31T23:59:59Z is before the year 2000"
    assert "expected one of identify, track" in reasons["teleport"]


def test_stored_rows_follow_segment_rules(validator: Validator) -> None:
    checked = validator.check(raw_rows(), received_at=RECEIVED, source="http")
    by_row = {r["_row"]: r for r in checked.accepted.to_pylist()}
    assert by_row[1]["event"] == "padded"
    assert by_row[1]["timestamp"] == datetime(2026, 11, 21, 0, 0, 0, 123000, tzinfo=UTC)
    assert by_row[2]["timestamp"] == datetime(2026, 11, 21, 0, 0, tzinfo=UTC)  # naive = Asia/Seoul
    assert by_row[5]["timestamp"] == RECEIVED  # no time given: when we received it
    assert by_row[6]["event_id"] == "m-7"
    assert by_row[7]["user_id"] is None
    assert by_row[11]["timestamp"] == datetime(2026, 11, 22, 0, 59, 55, tzinfo=UTC)  # clock skew corrected
    assert by_row[12]["timestamp"] == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert len(by_row[0]["event_id"]) == 32  # no messageId: a content hash, so a re-import dedupes
