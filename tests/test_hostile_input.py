"""Input a newcomer's review threw at nudgekit: every case is a clear 4xx or a named reject, never a crash."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import LiveServer
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace


@pytest.fixture
def client(sqlite_ws: Workspace) -> Iterator[httpx.Client]:
    key = sqlite_ws.keys.create(KeyScope.WRITE, "hostile", sqlite_ws.clock())[1]
    with LiveServer(sqlite_ws) as server, httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as c:
        yield c


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_nesting_is_a_named_reject_and_the_connection_survives(client: httpx.Client) -> None:
    batch = [{"type": "track", "userId": "u1", "event": "deep", "properties": nested(300)},
             {"type": "track", "userId": "u1", "event": "fine"}]
    response = client.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 200
    assert [(r["index"], r["field"]) for r in response.json()["rejected"]] == [(0, "message")]
    assert client.post("/v1/track", json={"userId": "u1", "event": "after"}).status_code == 200


@pytest.mark.parametrize("message, field", [
    ({"userId": "a\u0000b", "event": "x"}, "message"),
    ({"userId": True, "event": "x"}, "userId"),
    ({"userId": ["u1"], "event": "x"}, "userId"),
])
def test_values_that_cannot_be_stored_are_refused(client: httpx.Client, message: dict, field: str) -> None:
    response = client.post("/v1/track", json=message)
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == field


def test_a_write_key_that_is_not_a_string_is_a_401(client: httpx.Client) -> None:
    url = str(client.base_url).rstrip("/") + "/v1/track"
    response = httpx.post(url, json={"userId": "u", "event": "e", "writeKey": 123})
    assert response.status_code == 401


@pytest.mark.parametrize("encoding, status", [("deflate", 415), ("br", 415), ("gzip, gzip", 415)])
def test_unsupported_encodings_are_415(client: httpx.Client, encoding: str, status: int) -> None:
    response = client.post("/v1/track", content=b'{"userId":"u","event":"e"}',
                           headers={"content-encoding": encoding, "content-type": "application/json"})
    assert response.status_code == status


def test_gzip_cut_short_is_a_400(client: httpx.Client) -> None:
    body = gzip.compress(orjson.dumps({"userId": "u", "event": "e"}))[:-6]
    response = client.post("/v1/track", content=body, headers={"content-encoding": "gzip"})
    assert response.status_code == 400 and "cut short" in response.json()["errors"][0]["reason"]


def test_file_values_that_break_sql_are_rejected_per_row(sqlite_ws: Workspace, tmp_path) -> None:
    csv_file = tmp_path / "events.csv"
    csv_file.write_text('user_id,event,properties,coupon\nu1,x,not json,A\nu2,x,"{""a"": 1}",B\n', encoding="utf-8")
    report = sqlite_ws.import_events(csv_file)
    assert (report.accepted, report.rejected) == (1, 1) and report.sample[0]["field"] == "properties"
    parquet = tmp_path / "events.parquet"
    pq.write_table(pa.table({"user_id": ["u1", "u2"], "event": ["x", "x"],
                             "timestamp": [99_999_999_999_999_999, 1_763_600_000],
                             "price": [float("nan"), 1.5]}), parquet)
    report = sqlite_ws.import_events(parquet)
    assert (report.accepted, report.rejected) == (1, 1) and report.sample[0]["field"] == "timestamp"
    stored = sqlite_ws.events.query("SELECT properties FROM events WHERE user_id = 'u2' AND source = 'import'")
    assert {json.loads(r["properties"]).get("price") for r in stored} >= {1.5}


def test_nan_is_never_stored_as_json(sqlite_ws: Workspace, tmp_path) -> None:
    parquet = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "event": ["x"], "price": [float("nan")], "qty": [2]}), parquet)
    assert sqlite_ws.import_events(parquet).accepted == 1
    [row] = sqlite_ws.events.query("SELECT properties FROM events")
    assert json.loads(row["properties"]) == {"qty": 2}


def test_csv_epoch_timestamps_are_read(sqlite_ws: Workspace, tmp_path) -> None:
    source = tmp_path / "epoch.csv"
    source.write_text("user_id,event,timestamp\nu1,x,1763600000\nu2,x,1763600000000\n", encoding="utf-8")
    assert sqlite_ws.import_events(source).accepted == 2
    assert len({r["timestamp"] for r in sqlite_ws.events.query("SELECT timestamp FROM events")}) == 1


@pytest.mark.parametrize("content", ["user;event\nu1;x\n", "name,event\nkim,x\n"])
def test_a_file_without_an_id_column_is_one_clear_error(tmp_path, content: str) -> None:
    home = tmp_path / "ws"
    Workspace.init(home)[0].close()
    source = tmp_path / "events.csv"
    source.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "events", str(source), "--home", str(home)])
    assert result.exit_code == 2 and "no user_id" in result.output


def test_an_import_that_accepts_nothing_exits_non_zero(tmp_path) -> None:
    home = tmp_path / "ws"
    Workspace.init(home)[0].close()
    source = tmp_path / "events.csv"
    source.write_text("user_id,event\n,x\n,y\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["import", "events", str(source), "--home", str(home), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["rejected"] == 2


def test_users_import_reads_naive_consent_times_in_the_workspace_zone(ws: Workspace, tmp_path) -> None:
    source = tmp_path / "users.csv"
    source.write_text("user_id,consent_sms_advertising,consent_at,ltv\nu2,Y,2026-11-01 10:00,1200\n"
                      "u1,Y,2026-11-01 10:00,inf\n", encoding="utf-8")
    report = ws.import_users(source)
    assert (report.accepted, report.rejected) == (1, 1) and report.sample[0]["field"] == "traits.ltv"
    assert ws.profile("u2")["consents"][0]["at"] == "2026-11-01T01:00:00+00:00"


def test_consent_from_outside_cannot_claim_to_be_a_merge_or_from_1900(ws: Workspace) -> None:
    from nudgekit.profiles.contacts import FieldError

    with pytest.raises(FieldError):
        ws.set_consent("u1", channel="sms", purpose="advertising", granted=True, source="merge")
    result = ws.ingest([{"type": "identify", "userId": "u1",
                         "traits": {"consent": {"sms": True, "at": "1900-01-01T00:00:00Z"}}}])
    assert result.rejects[0].field == "traits.consent.at"


@pytest.mark.parametrize("args", [["events", "tail", "-n", "-5"], ["users", "show", "u1", "--events", "-1"]])
def test_negative_limits_are_usage_errors(tmp_path, args: list[str]) -> None:
    home = tmp_path / "ws"
    Workspace.init(home)[0].close()
    assert CliRunner().invoke(app, [*args, "--home", str(home)]).exit_code == 2


def test_with_json_a_failure_is_json_too(tmp_path) -> None:
    home = tmp_path / "ws"
    Workspace.init(home)[0].close()
    result = CliRunner().invoke(app, ["users", "show", "nosuch", "--home", str(home), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"error": 'no user or visitor "nosuch"', "exit_code": 1}
