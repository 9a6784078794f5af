"""The Segment-compatible HTTP API, spoken to over real HTTP: limits, auth, partial batches, no 500s."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import orjson
import pytest
from conftest import LiveServer, wait_for

from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace


@pytest.fixture
def api(sqlite_ws: Workspace) -> Iterator[tuple[httpx.Client, Workspace]]:
    key = sqlite_ws.keys.create(KeyScope.WRITE, "test", sqlite_ws.clock())[1]
    with LiveServer(sqlite_ws) as server, httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as client:
        client.write_key = key  # type: ignore[attr-defined]
        client.server_url = server.url  # type: ignore[attr-defined]
        yield client, sqlite_ws


def stored(ws: Workspace, n: int) -> int:
    return wait_for(lambda: ws.flush() and False or ws.events.count() >= n and ws.events.count())


def test_track_is_stored_and_a_retry_with_the_same_message_id_is_stored_once(api) -> None:
    client, ws = api
    message = {"userId": "u1", "event": "app_opened", "messageId": "m-1", "timestamp": "2026-11-22T09:00:00+09:00"}
    for _ in range(3):
        response = client.post("/v1/track", json=message)
        assert response.status_code == 200 and response.json() == {"success": True}
    assert stored(ws, 1) == 1
    ws.flush()
    assert ws.events.count() == 1


def test_batch_stores_the_good_messages_and_names_the_bad_ones(api) -> None:
    client, ws = api
    batch = [
        {"type": "track", "userId": "u1", "event": "product_viewed", "properties": {"sku": "P-1"}},
        {"type": "track", "event": "product_viewed"},
        {"type": "teleport", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "x", "timestamp": "2031-01-01T00:00:00Z"},
        {"type": "identify", "userId": "u2", "traits": {"phone": "010-99"}},
        {"type": "identify", "userId": "u3", "traits": {"email": "ok@naver.com"}},
        "not an object",
    ]
    response = client.post("/v1/batch", json={"batch": batch})
    body = response.json()
    assert response.status_code == 200 and body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "userId"), (2, "type"), (3, "timestamp"), (4, "traits.phone"), (6, "message")]
    assert "in the future" in body["rejected"][2]["reason"]
    assert stored(ws, 2) == 2
    assert ws.profile("u2") is None and ws.profile("u3")["profile"]["email"] == "ok@naver.com"


@pytest.mark.parametrize("body, field", [
    (b"{not json", "body"),
    (b"[]", "batch"),
    (b'{"batch": "nope"}', "batch"),
    (b"", "body"),
])
def test_malformed_batches_get_400_naming_the_problem(api, body: bytes, field: str) -> None:
    client, _ = api
    response = client.post("/v1/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    payload = response.json()
    assert payload["errors"][0]["field"] == field and payload["code"] == "invalid_request" and payload["message"]


def test_a_single_bad_message_gets_400(api) -> None:
    client, ws = api
    response = client.post("/v1/track", json={"userId": "u1", "timestamp": "1999-12-31T23:59:59Z", "event": "x"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "timestamp"
    response = client.post("/v1/identify", json={"type": "track", "userId": "u1"})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "type"


def test_segment_size_limits(api) -> None:
    client, ws = api
    big = {"userId": "u1", "event": "x", "properties": {"blob": "가" * 12_000}}  # ~36 KB in UTF-8
    assert client.post("/v1/track", json=big).status_code == 413
    small = {"userId": "u1", "event": "small", "type": "track"}
    in_batch = client.post("/v1/batch", json={"batch": [{**big, "type": "track"}, small]})
    assert in_batch.status_code == 200
    assert in_batch.json()["rejected"][0]["field"] == "message"
    huge = {"batch": [{"type": "track", "userId": "u1", "event": "x", "properties": {"p": "a" * 20_000}}] * 30}
    assert client.post("/v1/batch", json=huge).status_code == 413
    packed = gzip.compress(orjson.dumps(huge))  # small on the wire, too big unpacked
    response = client.post("/v1/batch", content=packed, headers={"content-encoding": "gzip",
                                                                 "content-type": "application/json"})
    assert response.status_code == 413
    assert stored(ws, 1) == 1


def test_gzip_bodies_are_accepted_and_broken_gzip_is_a_400(api) -> None:
    client, ws = api
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u1", "event": "app_opened"}]}))
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    assert client.post("/v1/batch", content=body, headers=headers).status_code == 200
    assert client.post("/v1/batch", content=b"\x1f\x8bnonsense", headers=headers).status_code == 400
    assert stored(ws, 1) == 1


def test_keys_are_required_and_checked(api) -> None:
    client, ws = api
    message = {"userId": "u1", "event": "x"}
    url = f"{client.server_url}/v1/track"
    anonymous = httpx.post(url, json=message)
    assert anonymous.status_code == 401 and anonymous.json()["errors"][0]["field"] == "writeKey"
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert httpx.post(url, json=message, auth=("nk_write_nope", "")).status_code == 401
    assert httpx.post(url, json={**message, "writeKey": client.write_key}).status_code == 200
    info = [k for k in ws.keys.list() if k.name == "test"][0]
    ws.keys.revoke(info.id, ws.clock())
    assert client.post("/v1/track", json=message).status_code == 401


def test_short_segment_paths_and_page_screen_alias_group(api) -> None:
    client, ws = api
    assert client.post("/v1/t", json={"userId": "u1", "event": "app_opened"}).status_code == 200
    assert client.post("/v1/screen", json={"userId": "u1", "name": "Home"}).status_code == 200
    assert client.post("/v1/group", json={"userId": "u1", "groupId": "g1", "traits": {"plan": "b2b"}}).status_code == 200
    assert client.post("/v1/alias", json={"previousId": "old-1", "userId": "u1"}).status_code == 200
    assert stored(ws, 4) == 4
    kinds = sorted(r["type"] for r in ws.events.tail(10))
    assert kinds == ["alias", "group", "screen", "track"]


def test_an_unexpected_fault_answers_503_and_writes_nothing(api, monkeypatch) -> None:
    client, ws = api

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ws.events, "spool", broken)
    response = client.post("/v1/track", json={"userId": "u1", "event": "x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["success"] is False


def test_openapi_docs_are_served(api) -> None:
    client, _ = api
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/batch", "/v1/identify", "/v1/track", "/api/v1/users/{user_id}/consents"} <= set(paths)
