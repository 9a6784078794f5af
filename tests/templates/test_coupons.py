"""Coupon codes from a pool: each message takes its own code in the transaction that queues it, in load
order; a message that does not go out gives its code back; a pool that runs dry skips the rest as
`no_coupon` rather than sending without a code; preview shows the next codes and takes none."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import FakeClock, LiveServer
from policy.helpers import SENDER
from sqlalchemy import select
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import CouponCode, OutboxMessage
from nudgekit.templates.personal import NotRendered
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

WELCOME = {"name": "welcome", "channel": "sms", "message": {
    "ad": True, "text": "{{ user.name|nim }}, 가입 축하 쿠폰 {{ coupon.welcome }} 을 드려요"}}


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: FakeClock) -> Workspace:
    ws, _ = Workspace.init(tmp_path / "ws", database_url=state_url, clock=clock, sender=SENDER,
                           policy={"control_group_percent": 0.0})
    for i in range(1, 7):
        ws.identify(f"u{i}", {"name": f"고객{i}", "phone": f"010-4000-000{i}"})
    ws.flush()
    for i in range(1, 6):  # u6 never agreed to advertising
        ws.set_consent(f"u{i}", channel="sms", purpose="advertising", granted=True, source="signup_form",
                       at=datetime(2026, 1, 5, tzinfo=UTC))
    ws.load_coupons("welcome", [f"WELCOME-{n:03d}" for n in range(1, 5)])
    ws.save_template(WELCOME)
    return ws


def holders(ws: Workspace) -> dict[str, str | None]:
    """code -> the profile whose message holds it."""
    with ws.sessions() as session:
        return {c.code: c.profile_id for c in session.scalars(select(CouponCode).order_by(CouponCode.id))}


def rows(ws: Workspace, campaign: str) -> dict[str, OutboxMessage]:
    with ws.sessions() as session:
        return {r.key.split("/")[2]: r for r in session.scalars(
            select(OutboxMessage).where(OutboxMessage.campaign == campaign))}


def test_each_message_takes_its_own_code_in_load_order_and_a_skipped_one_takes_none(shop: Workspace) -> None:
    queued = shop.queue("welcome-1", "sms", ["u1", "u2", "u6"], from_template="welcome")
    found = rows(shop, "welcome-1")
    again = shop.queue("welcome-1", "sms", ["u1", "u2", "u6"], from_template="welcome")

    assert queued.as_dict()["queued"] == 2 and queued.as_dict()["skipped"] == {"no_consent": 1}
    # codes go in load order to the messages in the order they were asked for
    assert found["u1"].fields["text"] == "고객1님, 가입 축하 쿠폰 WELCOME-001 을 드려요"
    assert found["u2"].fields["text"] == "고객2님, 가입 축하 쿠폰 WELCOME-002 을 드려요"
    held = holders(shop)
    assert sorted(v for v in held.values() if v) == sorted([found["u1"].profile_id, found["u2"].profile_id])
    assert held["WELCOME-003"] is None  # u6 was rendered (and took a code) but skipped: the code went back
    assert again.as_dict()["existing"] == 3 and holders(shop) == held  # queueing again takes nothing more
    assert shop.coupon_pools()[0] | {"last_loaded": None, "last_taken": None} == {
        "pool": "welcome", "codes": 4, "free": 2, "taken": 2, "last_loaded": None, "last_taken": None}
    shop.work()
    sent = shop.outbox(channel="sms", limit=5)
    assert sorted(m["message"]["text"].split("쿠폰 ")[1][:11] for m in sent) == ["WELCOME-001", "WELCOME-002"]


def test_a_pool_that_runs_dry_skips_the_rest_as_no_coupon(shop: Workspace) -> None:
    result = shop.queue("welcome-2", "sms", ["u1", "u2", "u3", "u4", "u5"], from_template="welcome")
    found = rows(shop, "welcome-2")

    assert result.as_dict()["queued"] == 4 and result.as_dict()["skipped"] == {"no_coupon": 1}
    user, dry = next((u, r) for u, r in found.items() if r.state == "skipped")
    assert dry.detail.startswith("text: coupon.welcome: the coupon pool 'welcome' has no free code left")
    codes = [r.fields["text"].split("쿠폰 ")[1][:11] for r in found.values() if r.state == "queued"]
    assert sorted(codes) == [f"WELCOME-00{n}" for n in range(1, 5)]  # four people, four different codes

    shop.load_coupons("welcome", ["WELCOME-005"])
    shop.queue("welcome-3", "sms", [user], from_template="welcome")
    assert "WELCOME-005" in next(iter(rows(shop, "welcome-3").values())).fields["text"]


def test_a_message_that_does_not_go_out_gives_its_code_back(shop: Workspace) -> None:
    shop.queue("welcome-4", "sms", ["u1", "u2"], from_template="welcome")
    shop.queue("welcome-5", "sms", ["u3"], from_template="welcome")
    assert sum(1 for v in holders(shop).values() if v) == 3

    shop.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="settings_screen")
    shop.control_send("welcome-5", "cancel")
    shop.work()
    found = rows(shop, "welcome-4")

    assert found["u1"].state == "skipped" and found["u2"].state == "sent"
    held = {code: who for code, who in holders(shop).items() if who}
    assert list(held.values()) == [found["u2"].profile_id]  # u1 withdrew before handover, welcome-5 cancelled
    assert shop.coupon_pools()[0]["free"] == 3


def test_preview_shows_the_next_codes_and_takes_none(shop: Workspace) -> None:
    one = shop.preview("u1", template="welcome")
    sample = shop.preview_sample(3, seed=1, template="welcome")

    assert one["coupons"] == {"welcome": "WELCOME-001"} and "WELCOME-001" in one["goes_out"]["text"]
    assert sorted(p["coupons"]["welcome"] for p in sample["previews"]) == ["WELCOME-001", "WELCOME-002",
                                                                            "WELCOME-003"]
    assert shop.coupon_pools()[0]["taken"] == 0
    ruling = shop.check_for("sms", "u2", from_template="welcome")  # a dry run takes none either
    assert "WELCOME-001" in ruling.candidate.message.text and shop.coupon_pools()[0]["taken"] == 0


def test_a_one_person_send_takes_a_code_and_gives_it_back_when_the_chain_says_no(shop: Workspace) -> None:
    went = shop.send("sms", "u1", from_template="welcome")
    refused = shop.send("sms", "u6", from_template="welcome")  # no consent

    assert went.ruling.sends and "WELCOME-001" in went.ruling.candidate.message.text
    assert not refused.ruling.sends
    assert {c: w for c, w in holders(shop).items() if w} == {"WELCOME-001": shop.resolve("u1")}
    assert shop.find_coupon("WELCOME-001")[0]["message_id"] == went.ruling.candidate.message_id
    shop.load_coupons("empty", ["ONLY-1"])
    shop.send("sms", "u2", text="쿠폰 {{ coupon.empty }}", ad=True)
    with pytest.raises(NotRendered) as caught:
        shop.send("sms", "u3", text="쿠폰 {{ coupon.empty }}", ad=True)
    assert caught.value.unrendered.reason == "no_coupon"


def test_codes_are_checked_as_they_are_loaded(shop: Workspace, tmp_path: Path) -> None:
    file = tmp_path / "codes.csv"
    file.write_text("쿠폰번호,금액\nSPRING-1,5000\n\nSPRING-2,5000\nSPRING 3,5000\nSPRING-1,5000\n" + "x" * 65 + "\n",
                    encoding="cp949")
    loaded = shop.load_coupons("spring", file)
    again = shop.load_coupons("spring", ["SPRING-2", "SPRING-4"])

    assert (loaded.added, loaded.repeated, loaded.already, loaded.free) == (2, 1, 0, 2)
    assert [(b["line"], b["why"]) for b in loaded.bad] == [
        (5, "the code has a space or an invisible character in it"), (7, "the code is longer than 64 characters")]
    assert (again.added, again.already) == (1, 1)
    for bad in ("Spring", "1st", "spring-sale", ""):
        with pytest.raises(FieldError, match="cannot be a pool's name"):
            shop.load_coupons(bad, ["A"])
    assert shop.find_coupon("SPRING-2")[0]["message_id"] is None and shop.find_coupon("NOPE") == []


def test_a_template_naming_a_pool_with_no_codes_is_refused_and_an_unused_snippet_takes_none(
        shop: Workspace) -> None:
    with pytest.raises(FieldError, match="no coupon pool called 'vip'"):
        shop.save_template({"name": "vip", "channel": "sms", "message": {"text": "{{ coupon.vip }}"}})
    with pytest.raises(FieldError, match="no coupon pool called 'vip'"):
        shop.queue("vip", "sms", ["u1"], text="{{ coupon.vip }}")
    shop.save_template({"name": "gift", "kind": "snippet", "text": "선물 코드 {{ coupon.welcome }}"})
    shop.save_template({"name": "plain", "channel": "sms", "message": {"ad": True, "text": "{{ user.name }} 안녕"}})
    shop.save_template({"name": "gifted", "channel": "sms", "message": {
        "ad": True, "text": "{{ user.name }} {% include 'gift' %}"}})
    shop.queue("plain", "sms", ["u1"], from_template="plain")
    assert shop.coupon_pools()[0]["taken"] == 0  # the snippet that reads the pool is not part of `plain`
    shop.queue("gifted", "sms", ["u1"], from_template="gifted")
    assert "선물 코드 WELCOME-001" in rows(shop, "gifted")["u1"].fields["text"]


def test_two_sends_at_once_never_give_one_code_twice(tmp_path: Path, state_url: str) -> None:
    ws, _ = Workspace.init(tmp_path / "ws", database_url=state_url, sender=SENDER,
                           policy={"control_group_percent": 0.0})
    users = [f"p{i:03d}" for i in range(120)]
    for user in users:
        ws.identify(user, {"name": "고객", "phone": f"010-5{int(user[1:]):03d}-0000"})
    ws.flush()
    ws.load_coupons("sale", [f"S{n:04d}" for n in range(100)])
    errors: list[BaseException] = []

    def send(name: str, who: list[str]) -> None:
        try:
            ws.queue(name, "sms", who, text="쿠폰 {{ coupon.sale }}")
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(f"sale-{i}", users[i::2])) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with ws.sessions() as session:
        texts = [r.fields["text"] for r in session.scalars(select(OutboxMessage).where(
            OutboxMessage.state == "queued"))]
        skipped = [r.reason for r in session.scalars(select(OutboxMessage).where(OutboxMessage.state == "skipped"))]
    ws.close()

    assert errors == []
    assert len(texts) == 100 and len(set(texts)) == 100  # every code once
    assert skipped == ["no_coupon"] * 20


def test_codes_load_over_the_api_and_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    ws, _ = Workspace.init(home)
    _, key = ws.keys.create(KeyScope.ADMIN, "backend", ws.clock())
    with LiveServer(ws) as server, httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as client:
        added = client.post("/api/v1/coupons/winter", json={"codes": ["W-1", "W-2", "W 3", "W-1"]})
        bad_name = client.post("/api/v1/coupons/Winter", json={"codes": ["W-1"]})
        empty = client.post("/api/v1/coupons/winter", json={"codes": []})
        listed = client.get("/api/v1/coupons")
    ws.close()
    (tmp_path / "more.txt").write_text("W-3\nW-4\nW-2\n", encoding="utf-8")
    runner = CliRunner(env={"NUDGE_HOME": str(home), "COLUMNS": "200"})
    loaded = runner.invoke(app, ["coupon", "load", "winter", str(tmp_path / "more.txt"), "--json"])
    shown = runner.invoke(app, ["coupon", "list"])
    found = runner.invoke(app, ["coupon", "find", "W-4", "--json"])
    missing = runner.invoke(app, ["coupon", "find", "NOPE"])

    assert added.status_code == 200 and added.json()["added"] == 2 and added.json()["repeated"] == 1
    assert added.json()["bad"] == [{"line": 3, "code": "W 3", "why": "the code has a space or an invisible "
                                                                       "character in it"}]
    assert bad_name.status_code == 400 and "pool" in bad_name.text
    assert empty.status_code == 400 and "codes" in empty.text
    assert listed.json()[0]["pool"] == "winter" and listed.json()[0]["free"] == 2
    assert loaded.exit_code == 0 and json.loads(loaded.stdout) == {
        "pool": "winter", "added": 2, "already": 1, "repeated": 0, "bad": [], "free": 4}
    assert shown.exit_code == 0 and "winter" in shown.stdout
    assert json.loads(found.stdout)[0]["pool"] == "winter"
    assert missing.exit_code == 1 and "no pool has the code" in missing.stdout
