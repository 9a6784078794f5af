"""`nudge`, driven as a user drives it: init, keys, consent, import, users show, events tail — text and --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result
from conftest import _postgres_or_skip
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

GRANT_SMS = ["consent", "set", "u1", "--channel", "sms", "--purpose", "advertising", "--granted",
             "--source", "signup_form", "--at", "2026-11-01 10:00"]
"""A naive --at: read in the workspace time zone, Asia/Seoul, so it is 01:00 UTC."""


class Nudge:
    """The `nudge` command on one workspace folder, given to it through NUDGE_HOME as a user would."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.runner = CliRunner(env={"NUDGE_HOME": str(home), **env})

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args))

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, f"nudge {' '.join(args)} exited {result.exit_code}: {result.output}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


def said(result: Result) -> str:
    """What the command told the user, with Rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture
def nudge(tmp_path: Path) -> Nudge:
    cli = Nudge(tmp_path / "ws")
    cli.ok("init")
    return cli


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- init ----------------------------------------------------------------------------------------


def test_init_shows_a_write_key_once_and_a_second_init_shows_none(tmp_path: Path) -> None:
    cli = Nudge(tmp_path / "elsewhere")
    first = cli.ok("init", str(tmp_path / "ws"))
    keys = [word for word in first.stdout.split() if word.startswith("nk_write_")]
    assert len(keys) == 1 and "shown once" in said(first)
    again = cli.ok("init", str(tmp_path / "ws"))
    assert "nk_write_" not in again.output
    assert "write key already exists" in said(again)
    listed = cli.json("keys", "list", "--home", str(tmp_path / "ws"))
    assert [(k["scope"], k["name"]) for k in listed] == [("write", "default write key")]
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.keys.scope_of(keys[0]) == KeyScope.WRITE
    assert not (tmp_path / "elsewhere").exists()  # the DIR argument wins over NUDGE_HOME


def test_init_json_names_the_state_db_the_event_store_and_the_write_key(tmp_path: Path) -> None:
    cli = Nudge(tmp_path / "ws")
    out = cli.json("init")
    home = (tmp_path / "ws").resolve()
    assert set(out) == {"workspace", "state_db", "event_store", "write_key"}
    assert out["workspace"] == str(home)
    assert out["state_db"] == f"sqlite:///{home / 'state.db'}"
    assert Path(out["event_store"]).is_file() and Path(out["event_store"]).parent == home
    assert out["write_key"].startswith("nk_write_")
    assert cli.json("init")["write_key"] is None


# -- keys ----------------------------------------------------------------------------------------


def test_an_admin_key_is_shown_at_creation_listed_without_secrets_and_revoked(nudge: Nudge) -> None:
    created = nudge.json("keys", "create", "--scope", "admin", "--name", "crm ops")
    assert created["scope"] == "admin" and created["name"] == "crm ops" and created["revoked_at"] is None
    assert created["key"].startswith("nk_admin_")

    listing = nudge.ok("keys", "list", "--json")
    keys = json.loads(listing.stdout)
    assert [(k["scope"], k["revoked_at"]) for k in keys] == [("write", None), ("admin", None)]
    assert all(set(k) == {"id", "scope", "name", "created_at", "revoked_at"} for k in keys)
    assert created["key"] not in listing.output and "nk_" not in listing.output

    assert "revoked" in said(nudge.ok("keys", "revoke", created["id"]))
    revoked = {k["id"]: k["revoked_at"] for k in nudge.json("keys", "list")}
    assert revoked[created["id"]] is not None
    with Workspace.open(nudge.home) as ws:
        assert ws.keys.scope_of(created["key"]) is None


def test_revoking_an_unknown_key_fails_and_says_so(nudge: Nudge) -> None:
    result = nudge("keys", "revoke", "deadbeef")
    assert result.exit_code == 1
    assert 'no key with id "deadbeef"' in said(result)
    assert all(k["revoked_at"] is None for k in nudge.json("keys", "list"))


# -- consent -------------------------------------------------------------------------------------


def test_consent_given_with_a_naive_time_is_read_in_seoul_then_withdrawn(nudge: Nudge) -> None:
    granted = nudge.ok(*GRANT_SMS)
    assert "recorded" in said(granted)
    shown = nudge.json("users", "show", "u1")
    assert shown["consents"] == [{"channel": "sms", "purpose": "advertising", "granted": True,
                                  "at": "2026-11-01T01:00:00+00:00", "source": "signup_form"}]
    [record] = shown["consent_history"]
    assert (record["change"], record["at"], record["source"]) == ("granted", "2026-11-01T01:00:00+00:00", "signup_form")

    nudge.ok("consent", "set", "u1", "--channel", "sms", "--purpose", "advertising", "--withdrawn",
             "--source", "unsubscribe_link", "--at", "2026-11-20 21:30", "--evidence", "link click")
    shown = nudge.json("users", "show", "u1")
    assert [(c["granted"], c["at"]) for c in shown["consents"]] == [(False, "2026-11-20T12:30:00+00:00")]
    assert [(h["change"], h["source"], h["evidence"]) for h in shown["consent_history"]] == [
        ("granted", "signup_form", None), ("withdrawn", "unsubscribe_link", "link click")]


def test_an_unknown_channel_is_a_usage_error_and_records_nothing(nudge: Nudge) -> None:
    result = nudge("consent", "set", "u1", "--channel", "fax", "--purpose", "advertising", "--granted")
    assert result.exit_code == 2
    assert "--channel" in said(result) and "fax" in said(result)
    assert nudge("users", "show", "u1").exit_code == 1


# -- import --------------------------------------------------------------------------------------

EVENTS_CSV = """\
message_id,user_id,event,timestamp,sku
m-1,u1,product_viewed,2025-11-01 09:00:00,P-1
m-2,u1,added_to_cart,2025-11-01 09:05:00,P-1
m-3,,order_completed,2025-11-01 09:10:00,P-1
m-4,u1,order_completed,2025-11-01 09:10:00,P-1
"""


def test_importing_events_with_one_bad_row_keeps_the_rest_and_writes_the_reject(nudge: Nudge, tmp_path: Path) -> None:
    report = nudge.json("import", "events", str(write(tmp_path / "events.csv", EVENTS_CSV)))
    assert (report["rows"], report["accepted"], report["stored"], report["rejected"]) == (4, 3, 3, 1)
    assert report["first_rejects"] == [
        {"row": 3, "field": "userId", "reason": "every message needs a userId or an anonymousId"}]
    [reject] = [json.loads(line) for line in Path(report["reject_file"]).read_text().splitlines()]
    assert reject["row"] == 3 and reject["record"]["message_id"] == "m-3"
    assert nudge.json("users", "show", "u1")["activity"]["events"] == 3


def test_importing_users_stores_contacts_traits_and_consent(nudge: Nudge, tmp_path: Path) -> None:
    users = write(tmp_path / "users.csv", (
        "user_id,email,phone,plan,consent_sms_advertising,consent_at,consent_source\n"
        "u7,minji@naver.com,010-1234-5678,gold,true,2026-11-01T10:00:00+09:00,signup_form\n"
        "u8,not-an-email,,silver,false,,\n"
    ))
    result = nudge.ok("import", "users", str(users))
    assert "1 accepted" in said(result) and "1 rejected" in said(result) and "traits.email" in said(result)
    shown = nudge.json("users", "show", "u7")
    profile = shown["profile"]
    assert (profile["email"], profile["phone"], profile["traits"]) == ("minji@naver.com", "+821012345678", {"plan": "gold"})
    assert shown["consents"] == [{"channel": "sms", "purpose": "advertising", "granted": True,
                                  "at": "2026-11-01T01:00:00+00:00", "source": "signup_form"}]
    assert nudge("users", "show", "u8").exit_code == 1


def test_importing_a_missing_file_fails_and_names_it(nudge: Nudge, tmp_path: Path) -> None:
    result = nudge("import", "events", str(tmp_path / "nope.csv"))
    assert result.exit_code == 1
    assert "nope.csv: no such file" in said(result)


# -- users and events ----------------------------------------------------------------------------


def test_showing_an_unknown_user_fails_and_says_so(nudge: Nudge) -> None:
    result = nudge("users", "show", "ghost")
    assert result.exit_code == 1
    assert 'no user or visitor "ghost"' in said(result)


def test_events_tail_gives_the_last_arrivals_in_order(nudge: Nudge, tmp_path: Path) -> None:
    for i, (name, hour) in enumerate([("app_opened", 9), ("product_viewed", 10), ("order_completed", 11)]):
        nudge.ok("import", "events", str(write(
            tmp_path / f"e{i}.csv", f"message_id,user_id,event,timestamp\nm-{i},u1,{name},2025-11-01 {hour}:00:00\n")))
    tail = nudge.json("events", "tail", "-n", "2")
    assert [(e["event_id"], e["event"]) for e in tail] == [("m-1", "product_viewed"), ("m-2", "order_completed")]
    assert tail[0]["timestamp"] == "2025-11-01T01:00:00+00:00"


def test_events_tail_of_one_import_gives_the_latest_two_in_time_order(nudge: Nudge, tmp_path: Path) -> None:
    events = write(tmp_path / "events.csv", (
        "message_id,user_id,event,timestamp\n"
        "m-c,u1,app_opened,2025-11-01 09:00:00\n"
        "m-a,u1,product_viewed,2025-11-01 10:00:00\n"
        "m-b,u1,order_completed,2025-11-01 11:00:00\n"
    ))
    nudge.ok("import", "events", str(events))
    tail = nudge.json("events", "tail", "-n", "2")
    assert [e["event"] for e in tail] == ["product_viewed", "order_completed"]


# -- no workspace --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["users", "show", "u1"],
    ["events", "tail"],
    ["keys", "list"],
    ["keys", "create", "--scope", "admin"],
    ["consent", "set", "u1", "--channel", "sms", "--purpose", "advertising", "--granted"],
    ["import", "users", "FILE"],
], ids=lambda c: " ".join(c[:2]))
def test_commands_on_a_folder_without_a_workspace_say_to_run_nudge_init(tmp_path: Path, command: list[str]) -> None:
    users = write(tmp_path / "users.csv", "user_id,email\nu1,a@naver.com\n")
    cli = Nudge(tmp_path / "nowhere")
    result = cli(*[str(users) if arg == "FILE" else arg for arg in command])
    assert result.exit_code == 1
    assert "no workspace at" in said(result) and "run `nudge init" in said(result)
    assert not (tmp_path / "nowhere").exists()


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("given_as", [
    "option",
    "env",
])
def test_a_workspace_on_postgresql_records_consent_there(tmp_path: Path, given_as: str) -> None:
    url = _postgres_or_skip()
    if given_as == "option":
        cli = Nudge(tmp_path / "ws")
        out = cli.json("init", "--database-url", url)
    else:
        cli = Nudge(tmp_path / "ws", NUDGE_DATABASE_URL=url)
        out = cli.json("init")
    server = sa.engine.make_url(url)
    assert out["state_db"].startswith(server.drivername) and out["state_db"].endswith(url.rpartition("@")[2])
    assert not server.password or server.password not in out["state_db"]
    assert out["write_key"].startswith("nk_write_")

    cli.ok(*GRANT_SMS)
    shown = cli.json("users", "show", "u1")
    assert [(h["change"], h["at"], h["source"]) for h in shown["consent_history"]] == [
        ("granted", "2026-11-01T01:00:00+00:00", "signup_form")]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT profile_id, source FROM consent_records")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in stored] == [("u1", "signup_form")]
    assert not (tmp_path / "ws" / "state.db").exists()
