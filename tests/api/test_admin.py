"""The admin API (/api/v1) over real HTTP: admin keys only, profiles, consent changes, field-named refusals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock, LiveServer, wait_for

from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

UNSUBSCRIBE = {"channel": "sms", "purpose": "advertising", "granted": False, "source": "unsubscribe_link",
               "at": "2026-11-20T21:30:00+09:00", "evidence": "link click"}
UNSUBSCRIBED_AT = "2026-11-20T12:30:00+00:00"
NOW = "2026-11-22T01:00:00+00:00"
"""The `clock` fixture's time: when nudgekit learned of each change."""


@dataclass
class Admin:
    """A running server and a client holding an admin key."""

    client: httpx.Client
    ws: Workspace
    url: str
    admin_key: str
    admin_key_id: str
    write_key: str

    def consent(self, user_id: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(f"/api/v1/users/{user_id}/consents", json=body)

    def user(self, user_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/users/{user_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def history(self, user_id: str) -> list[dict[str, Any]]:
        return self.user(user_id)["consent_history"]

    def send(self, kind: str, message: dict[str, Any]) -> None:
        response = httpx.post(f"{self.url}/v1/{kind}", json=message, auth=(self.write_key, ""), timeout=10)
        assert response.status_code == 200, response.text


@contextmanager
def serve(ws: Workspace) -> Iterator[Admin]:
    info, admin_key = ws.keys.create(KeyScope.ADMIN, "crm ops", ws.clock())
    write_key = ws.keys.create(KeyScope.WRITE, "app", ws.clock())[1]
    with LiveServer(ws) as server, httpx.Client(base_url=server.url, auth=(admin_key, ""), timeout=10) as client:
        yield Admin(client, ws, server.url, admin_key, info.id, write_key)


@pytest.fixture
def admin(ws: Workspace) -> Iterator[Admin]:
    with serve(ws) as running:
        yield running


@pytest.fixture
def sqlite_admin(sqlite_ws: Workspace) -> Iterator[Admin]:
    """For refusals decided before the state DB is touched, where the backend does not matter."""
    with serve(sqlite_ws) as running:
        yield running


def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["message"] and body["errors"]
    return body["errors"][0]


# -- reading a user ------------------------------------------------------------------------------


def test_reading_a_user_needs_an_admin_key(admin: Admin) -> None:
    admin.send("identify", {"userId": "u1", "timestamp": "2026-11-21T08:00:00+09:00", "traits": {
        "email": "minji@naver.com", "consent": {"sms": True, "source": "signup_form", "at": "2026-11-01T10:00:00+09:00"}}})
    admin.send("track", {"userId": "u1", "event": "app_opened", "messageId": "m-1",
                         "timestamp": "2026-11-21T09:00:00+09:00"})
    path = f"{admin.url}/api/v1/users/u1"

    anonymous = httpx.get(path)
    assert refused(anonymous, 401)["field"] == "authorization"
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert refused(httpx.get(path, auth=(admin.write_key, "")), 403)["field"] == "authorization"

    found = wait_for(lambda: (body := admin.user("u1"))["activity"]["events"] == 2 and body)
    assert found["profile_id"] == "u1" and found["profile"]["email"] == "minji@naver.com"
    assert found["consents"] == [{"channel": "sms", "purpose": "advertising", "granted": True,
                                  "at": "2026-11-01T01:00:00+00:00", "source": "signup_form"}]
    assert [(e["type"], e["event"]) for e in found["recent_events"]] == [("track", "app_opened"), ("identify", None)]
    bearer = httpx.get(path, headers={"Authorization": f"Bearer {admin.admin_key}"})
    assert bearer.status_code == 200

    admin.ws.keys.revoke(admin.admin_key_id, admin.ws.clock())
    assert refused(admin.client.get("/api/v1/users/u1"), 401)


def test_an_unknown_key_on_the_admin_api_names_the_authorization(admin: Admin) -> None:
    response = httpx.get(f"{admin.url}/api/v1/users/u1", auth=("nk_admin_forged", ""))
    assert refused(response, 401)["field"] == "authorization"


def test_an_unknown_user_is_404_naming_the_user_id(admin: Admin) -> None:
    response = admin.client.get("/api/v1/users/ghost")
    assert refused(response, 404) == {"field": "user_id", "reason": 'no user or visitor "ghost"'}
    assert response.json()["code"] == "not_found"


# -- recording consent ---------------------------------------------------------------------------


def test_a_consent_change_is_recorded_and_then_shown(admin: Admin) -> None:
    response = admin.consent("u1", UNSUBSCRIBE)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["recorded"] is True
    assert answer["consent"]["granted"] is False and answer["consent"]["source"] == "unsubscribe_link"
    assert datetime.fromisoformat(answer["consent"]["at"]) == datetime.fromisoformat(UNSUBSCRIBED_AT)

    shown = admin.user("u1")
    assert shown["consents"] == [{"channel": "sms", "purpose": "advertising", "granted": False,
                                  "at": UNSUBSCRIBED_AT, "source": "unsubscribe_link"}]
    assert shown["consent_history"] == [{"channel": "sms", "purpose": "advertising", "change": "withdrawn",
                                         "at": UNSUBSCRIBED_AT, "source": "unsubscribe_link", "recorded_at": NOW,
                                         "evidence": "link click"}]


def test_the_same_body_twice_is_recorded_once(admin: Admin) -> None:
    first, again = admin.consent("u1", UNSUBSCRIBE), admin.consent("u1", UNSUBSCRIBE)
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["recorded"], again.json()["recorded"]) == (True, False)
    assert len(admin.history("u1")) == 1


def test_a_retried_request_gets_the_same_answer(admin: Admin) -> None:
    first, again = admin.consent("u1", UNSUBSCRIBE).json(), admin.consent("u1", UNSUBSCRIBE).json()
    assert first["consent"] == again["consent"] == admin.user("u1")["consents"][0]


def test_an_idempotency_key_records_a_retry_once_even_if_its_time_moved(admin: Admin, clock: FakeClock) -> None:
    body = {"channel": "push", "change": "granted", "source": "settings_screen", "idempotency_key": "req-1"}
    assert admin.consent("u1", body).json()["recorded"] is True
    clock.advance(minutes=5)  # no `at`: the retry says "now" again, a different time
    assert admin.consent("u1", body).json()["recorded"] is False
    assert admin.consent("u1", {**body, "idempotency_key": "req-2"}).json()["recorded"] is True
    assert [(h["change"], h["at"]) for h in admin.history("u1")] == [
        ("granted", NOW), ("granted", "2026-11-22T01:05:00+00:00")]


def test_a_user_id_too_long_for_the_state_db_is_refused_naming_it(admin: Admin) -> None:
    assert refused(admin.consent("u" * 300, UNSUBSCRIBE), 400)["field"] == "user_id"


@pytest.mark.parametrize("changes, fields", [
    pytest.param({"channel": "fax"}, {"channel"}, id="unknown channel"),
    pytest.param({"purpose": "lunch"}, {"purpose"}, id="unknown purpose"),
    pytest.param({"source": "telepathy"}, {"source"}, id="unknown source"),
    pytest.param({"source": None}, {"source"}, id="missing source"),
    pytest.param({"granted": "maybe"}, {"granted"}, id="granted not a boolean"),
    pytest.param({"at": "yesterday"}, {"at"}, id="at not a time"),
    pytest.param({"evidence": "x" * 2001}, {"evidence"}, id="evidence too long"),
    pytest.param({"idempotency_key": "k" * 201}, {"idempotency_key"}, id="idempotency key too long"),
    pytest.param({"granted": None}, {"granted", "change"}, id="neither granted nor change"),
    pytest.param({"at": "2026-11-20T21:30:00"}, {"at"}, id="at without a time zone"),
    pytest.param({"change": "granted"}, {"granted", "change"}, id="granted and change disagree"),
    pytest.param({"at": "2027-11-20T21:30:00+09:00"}, {"at"}, id="at a year ahead"),
])
def test_a_bad_consent_body_is_a_400_naming_the_field_and_records_nothing(
    sqlite_admin: Admin, changes: dict[str, Any], fields: set[str]
) -> None:
    body = {k: v for k, v in {**UNSUBSCRIBE, **changes}.items() if v is not None}
    error = refused(sqlite_admin.consent("u1", body), 400)
    assert error["field"] in fields and error["reason"]
    assert sqlite_admin.client.get("/api/v1/users/u1").status_code == 404


@pytest.mark.parametrize("raw", [b"", b"null", b"{nope", b"[1]", b'"sms"'], ids=repr)
def test_a_body_that_is_not_a_json_object_is_a_400_never_a_fault(sqlite_admin: Admin, raw: bytes) -> None:
    response = sqlite_admin.client.post("/api/v1/users/u1/consents", content=raw,
                                        headers={"content-type": "application/json"})
    refused(response, 400)
    assert sqlite_admin.client.get("/api/v1/users/u1").status_code == 404


# -- one history, whichever way consent arrives --------------------------------------------------


def test_consent_recorded_by_api_python_identify_and_import_reads_the_same(ws: Workspace, tmp_path: Path) -> None:
    ws.set_consent("by-python", channel="sms", purpose="advertising", granted=False, source="optout_080_call",
                   at=datetime.fromisoformat(UNSUBSCRIBE["at"]), evidence="link click")
    users = tmp_path / "users.csv"
    users.write_text("user_id,consent_sms_advertising,consent_at,consent_source,consent_evidence\n"
                     f"by-import,false,{UNSUBSCRIBE['at']},sms_reply,link click\n", encoding="utf-8")
    report = ws.import_users(users)
    assert (report.accepted, report.rejected) == (1, 0)
    with serve(ws) as admin:
        assert admin.consent("by-api", UNSUBSCRIBE).status_code == 200
        admin.send("identify", {"userId": "by-identify", "traits": {"consent": {
            "sms": {"advertising": False}, "source": "in_app", "at": UNSUBSCRIBE["at"], "evidence": "link click"}}})
        histories = {user: admin.history(user) for user in ("by-api", "by-python", "by-identify", "by-import")}

    assert {user: [h["source"] for h in history] for user, history in histories.items()} == {
        "by-api": ["unsubscribe_link"], "by-python": ["optout_080_call"], "by-identify": ["in_app"],
        "by-import": ["sms_reply"]}
    expected = {"channel": "sms", "purpose": "advertising", "change": "withdrawn", "at": UNSUBSCRIBED_AT,
                "recorded_at": NOW, "evidence": "link click"}
    for user, [record] in histories.items():
        assert {k: v for k, v in record.items() if k != "source"} == expected, user
