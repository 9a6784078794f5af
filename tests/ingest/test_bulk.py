"""Bulk import: CSV, JSONL and Parquet through the same rules; bad rows reported, good rows kept."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nudgekit.workspace import Workspace

BASE = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def write_events_csv(path: Path, rows: int, bad_every: int) -> set[int]:
    bad_rows: set[int] = set()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["message_id", "user_id", "event", "timestamp", "sku", "price"])
        for i in range(rows):
            stamp = (BASE + timedelta(minutes=i)).isoformat()
            user, event = f"u{i % 50}", "product_viewed"
            if bad_every and i % bad_every == 7:
                bad_rows.add(i + 1)
                kind = (i // bad_every) % 3
                if kind == 0:
                    user = ""
                elif kind == 1:
                    stamp = "31/12/2026"
                else:
                    event = ""
            writer.writerow([f"m{i}", user, event, stamp, f"P-{i % 5}", 12900])
    return bad_rows


def test_csv_with_one_percent_bad_rows_keeps_the_rest_and_reports_every_bad_row(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "events.csv"
    bad = write_events_csv(source, 3000, 100)
    rejects = tmp_path / "rejects.jsonl"
    report = sqlite_ws.import_events(source, reject_file=rejects, chunk_rows=1000)
    assert (report.rows, report.accepted, report.rejected) == (3000, 3000 - len(bad), len(bad))
    assert sqlite_ws.events.count() == 3000 - len(bad)
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert {line["row"] for line in lines} == bad
    assert {line["field"] for line in lines} == {"userId", "timestamp", "event"}
    first = lines[0]
    assert first["record"]["message_id"] == f"m{first['row'] - 1}"
    assert len(report.sample) == 10
    # extra columns became typed properties
    row = sqlite_ws.events.query("SELECT properties FROM events WHERE event_id = 'm0'")[0]
    assert json.loads(row["properties"]) == {"sku": "P-0", "price": 12900}


def test_importing_the_same_file_twice_stores_each_event_once(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "events.csv"
    write_events_csv(source, 500, 0)
    first = sqlite_ws.import_events(source)
    second = sqlite_ws.import_events(source)
    assert (first.stored, second.stored, second.duplicates) == (500, 0, 500)
    assert sqlite_ws.events.count() == 500


def test_parquet_events_with_typed_columns_and_naive_local_times(sqlite_ws: Workspace, tmp_path) -> None:
    table = pa.table({
        "userId": ["u1", "u2", "u3"],
        "event_name": ["order_completed", "app_opened", "app_opened"],
        "timestamp": pa.array([datetime(2026, 11, 1, 9, 0)] * 3, pa.timestamp("us")),  # naive: workspace zone
        "revenue": [32900, None, None],
        "properties": ['{"coupon": "WELCOME"}', None, "[1,2]"],
    })
    source = tmp_path / "events.parquet"
    pq.write_table(table, source)
    rejects = tmp_path / "rejects.jsonl"
    report = sqlite_ws.import_events(source, reject_file=rejects)
    assert (report.accepted, report.rejected) == (2, 1)
    assert report.sample[0] == {"row": 3, "field": "properties", "reason": report.sample[0]["reason"]}
    assert json.loads(rejects.read_text())["record"]["userId"] == "u3"
    rows = sqlite_ws.events.query("SELECT user_id, timestamp, properties FROM events ORDER BY user_id")
    assert rows[0]["timestamp"] == datetime(2026, 11, 1, 0, 0, tzinfo=UTC)  # 09:00 in Seoul
    assert json.loads(rows[0]["properties"]) == {"coupon": "WELCOME", "revenue": 32900}


def test_unix_epoch_timestamps_in_seconds_and_milliseconds(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "epoch.parquet"
    pq.write_table(pa.table({"user_id": ["a", "b"], "event": ["x", "x"],
                             "timestamp": [1_762_000_000, 1_762_000_000_000]}), source)
    assert sqlite_ws.import_events(source).accepted == 2
    stamps = {r["timestamp"] for r in sqlite_ws.events.query("SELECT timestamp FROM events")}
    assert stamps == {datetime.fromtimestamp(1_762_000_000, UTC)}


def test_jsonl_events_are_segment_messages_and_broken_lines_are_reported(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([
        json.dumps({"userId": "u1", "event": "signed_up", "timestamp": "2026-11-01T09:00:00+09:00", "plan": "free"}),
        "{broken",
        "",
        json.dumps({"type": "identify", "userId": "u1", "traits": {"name": "정하늘", "phone": "010-5555-1234"}}),
        json.dumps({"anonymousId": "a9", "event": "app_opened"}),
    ]) + "\n", encoding="utf-8")
    report = sqlite_ws.import_events(source)
    assert (report.accepted, report.rejected) == (3, 1)
    assert report.sample == [{"row": 2, "field": "line", "reason": report.sample[0]["reason"]}]
    profile = sqlite_ws.profile("u1")
    assert profile["profile"]["phone"] == "+821055551234"
    signed = [e for e in profile["recent_events"] if e["event"] == "signed_up"][0]
    assert json.loads(signed["properties"]) == {"plan": "free"}


def test_users_import_with_consents_push_tokens_and_traits(ws: Workspace, tmp_path) -> None:
    source = tmp_path / "users.csv"
    source.write_text(
        "user_id,name,phone,email,timezone,consent_sms_advertising,consent_sms_night,consent_at,push_token,"
        "push_platform,points,utm_source\n"
        "u1,김민지,010-1234-5678,minji@naver.com,Asia/Seoul,true,false,2026-10-01T10:00:00+09:00,tok-1,ios,1200,naver\n"
        "u2,이준호,01099998888,,America/Los_Angeles,false,,,,,300,\n"
        "u3,박지민,010-12,park@daum.net,Asia/Seoul,true,,,,,10,\n"
        ",익명,010-2222-3333,,,,,,,,,\n"
        "u5,최유진,010-4444-5555,bad@@mail,Asia/Seoul,,,,,,5,\n",
        encoding="utf-8",
    )
    report = ws.import_users(source)
    assert (report.rows, report.accepted, report.rejected) == (5, 2, 3)
    assert [(r["row"], r["field"]) for r in report.sample] == [(3, "traits.phone"), (4, "userId"), (5, "traits.email")]
    u1 = ws.profile("u1")
    assert u1["profile"]["phone"] == "+821012345678" and u1["profile"]["traits"] == {"name": "김민지", "points": 1200}
    assert u1["profile"]["attribution"]["utm_source"] == "naver"
    assert {(c["channel"], c["purpose"], c["granted"], c["source"]) for c in u1["consents"]} == {
        ("sms", "advertising", True, "import"), ("sms", "night", False, "import")}
    assert u1["consents"][0]["at"].startswith("2026-10-01T01:00:00")
    assert u1["push_tokens"][0]["platform"] == "ios"
    assert ws.profile("u2")["profile"]["timezone"] == "America/Los_Angeles"
    assert ws.profile("u3") is None


def test_unknown_file_type_is_refused(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "events.xlsx"
    source.write_bytes(b"PK")
    with pytest.raises(ValueError, match="cannot tell the format"):
        sqlite_ws.import_events(source)


def test_excel_csv_in_cp949_with_a_bom_less_header_is_read(ws: Workspace, tmp_path) -> None:
    source = tmp_path / "고객.csv"
    source.write_bytes("user_id,name,phone,등급\nu1,김민지,010-1234-5678,골드\n".encode("cp949"))
    assert ws.import_users(source).accepted == 1
    assert ws.profile("u1")["profile"]["traits"] == {"name": "김민지", "등급": "골드"}


def test_utf8_bom_is_not_part_of_the_first_column(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "users.csv"
    source.write_bytes("\ufeffuser_id,name\nu1,김민지\n".encode())
    assert sqlite_ws.import_users(source).accepted == 1


def test_lines_with_the_wrong_number_of_fields_are_rejected_not_fatal(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "events.csv"
    source.write_text("user_id,event,price\nu1,product_viewed,12900\nu2,product_viewed,1,2\nu3,app_opened,\n",
                      encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    report = sqlite_ws.import_events(source, reject_file=rejects)
    assert (report.accepted, report.rejected) == (2, 1)
    line = json.loads(rejects.read_text())
    assert line["field"] == "row" and "has 4 values but the header has 3" in line["reason"]
    assert line["record"] == "u2,product_viewed,1,2"


def test_a_column_that_changes_type_halfway_does_not_stop_the_import(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "events.csv"
    lines = [f"u{i},order_completed,{12900 + i},0{i % 10}1234" for i in range(3000)]
    lines.append('u9,order_completed,"12,900",01234')
    source.write_text("user_id,event,revenue,zip\n" + "\n".join(lines) + "\n", encoding="utf-8")
    report = sqlite_ws.import_events(source, chunk_rows=1000)
    assert (report.accepted, report.rejected) == (3001, 0)
    rows = sqlite_ws.events.query("SELECT user_id, properties FROM events WHERE user_id IN ('u1', 'u9')")
    props = {r["user_id"]: json.loads(r["properties"]) for r in rows}
    assert props["u1"] == {"revenue": 12901, "zip": "011234"}
    assert props["u9"] == {"revenue": "12,900", "zip": "01234"}
