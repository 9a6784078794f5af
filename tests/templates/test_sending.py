"""Templates in sending: every person's message rendered from their profile before the policy chain, a
person whose data is missing skipped with the reason on record (never "None님"), the rendered text what the
worker sends and what the label and byte count judge, the template's version on each row; preview shows
exactly that without recording anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import FakeClock, LiveServer
from policy.helpers import SENDER
from sqlalchemy import func, select
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.store.state import OutboxMessage, PolicyEvaluation
from nudgekit.templates.personal import NotRendered
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

CART = {"name": "cart", "channel": "sms", "message": {
    "ad": True, "text": "{{ user.name|nim }}, 담아 두신 {{ event.properties.item|이 }} 기다려요. "
                        "{{ event.properties.price|won }}\n{% include 'footer' %}"},
    "languages": {"en": {"text": "{{ user.name }}, your {{ event.properties.item }} is waiting: "
                                 "{{ event.properties.price|won }}"}}}
FOOTER = {"name": "footer", "kind": "snippet", "text": "{{ workspace.brand }} 고객센터"}
EVENT = {"event": "Product Added", "properties": {"item": "운동화", "price": 89000}}


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: FakeClock) -> Workspace:
    ws, _ = Workspace.init(tmp_path / "ws", database_url=state_url, clock=clock, sender=SENDER,
                           policy={"control_group_percent": 0.0})
    people = {"u1": {"name": "민수"}, "u2": {"name": "Jane", "language": "en-US"}, "u3": {"name": "None"},
              "u4": {}}
    for i, (user, traits) in enumerate(people.items()):
        ws.identify(user, {**traits, "phone": f"010-4000-000{i}"})
    ws.flush()
    for user in people:
        ws.set_consent(user, channel="sms", purpose="advertising", granted=True, source="signup_form",
                       at=datetime(2026, 1, 5, tzinfo=UTC))
    ws.save_template(FOOTER)
    ws.save_template(CART)
    return ws


def rows(ws: Workspace, campaign: str) -> dict[str, OutboxMessage]:
    with ws.sessions() as session:
        return {r.profile_id or r.key: r for r in session.scalars(
            select(OutboxMessage).where(OutboxMessage.campaign == campaign))}


def test_a_campaign_renders_each_persons_message_and_skips_those_whose_data_is_missing(shop: Workspace) -> None:
    queued = shop.queue("cart-1", "sms", ["u1", "u2", "u3", "u4", "ghost"], from_template="cart", event=EVENT)
    found = rows(shop, "cart-1")

    assert queued.as_dict()["queued"] == 2
    assert queued.as_dict()["skipped"] == {"missing_data": 2, "no_person": 1}
    # the row keeps the rendered text; the label and opt-out line are added at handover
    assert found["u1"].fields["text"] == "민수님, 담아 두신 운동화가 기다려요. 89,000원\n넛지샵 고객센터"
    assert found["u2"].fields["text"] == "Jane, your 운동화 is waiting: KRW 89,000"  # en-US takes en; no ₩ in SMS
    assert found["u1"].template == found["u2"].template == "cart@1"
    assert found["u1"].source == {"template": "cart", "event": EVENT}
    for who in ("u3", "u4"):  # the SDK's "None" counts as missing, as an absent name does
        assert (found[who].state, found[who].reason, found[who].detail) == (
            "skipped", "missing_data", "text: user.name is missing")
    assert found["cart-1/-/ghost/1"].reason == "no_person"
    with shop.sessions() as session:  # the rendered message is what the chain judged at the QUEUE gate
        judged = session.scalar(select(func.count()).select_from(PolicyEvaluation).where(
            PolicyEvaluation.message_id.in_([found["u1"].message_id, found["u2"].message_id])))
    assert judged == 2


def test_queueing_again_adds_nothing_and_the_worker_sends_the_rendered_text(shop: Workspace) -> None:
    shop.queue("cart-2", "sms", ["u1"], from_template="cart", event=EVENT)
    again = shop.queue("cart-2", "sms", ["u1"], from_template="cart", event=EVENT)
    shop.work()
    sent = shop.outbox(channel="sms", limit=5)

    assert again.as_dict()["existing"] == 1 and len(sent) == 1
    assert sent[0]["message"]["text"] == ("(광고) 민수님, 담아 두신 운동화가 기다려요. 89,000원\n넛지샵 고객센터\n"
                                          "무료거부 080-123-4567")
    assert sent[0]["type"] == "SMS"  # 90 bytes as the carriers count them: the most an SMS holds


def test_inline_fields_with_tags_are_templates_too(shop: Workspace) -> None:
    result = shop.queue("hello", "sms", ["u1", "u4"], text="{{ user.name|default('고객')|nim }}, 안녕하세요. "
                        "{{ user.stage|default('new') }}")
    found = rows(shop, "hello")
    assert result.as_dict()["queued"] == 2
    assert found["u1"].fields["text"] == "민수님, 안녕하세요. new" and found["u4"].fields["text"].startswith("고객님")
    assert found["u1"].template is None and found["u1"].source["fields"]["text"].startswith("{{ user.name")


def test_a_message_that_renders_too_big_for_its_channel_is_skipped_not_sent(shop: Workspace) -> None:
    shop.identify("u1", {"name": "민" * 1500})
    shop.flush()
    shop.queue("long", "sms", ["u1"], text="{{ user.name|nim }}")
    found = rows(shop, "long")["u1"]
    assert found.state == "skipped" and found.reason == "message_refused"


def test_a_template_for_another_channel_or_with_fields_given_twice_is_refused_before_any_row(
        shop: Workspace) -> None:
    with pytest.raises(ValueError, match="is a sms template, not push"):
        shop.queue("x", "push", ["u1"], from_template="cart")
    with pytest.raises(ValueError, match="not both"):
        shop.queue("x", "sms", ["u1"], from_template="cart", text="hi")
    with pytest.raises(ValueError, match="no template called 'nope'"):
        shop.queue("x", "sms", ["u1"], from_template="nope")
    with pytest.raises(ValueError, match="has no version 9"):
        shop.queue("x", "sms", ["u1"], from_template="cart", template_version=9)
    with pytest.raises(ValueError, match="cannot be read"):
        shop.queue("x", "sms", ["u1"], text="{{ user.name ")
    assert rows(shop, "x") == {}


def test_a_pinned_version_sends_that_version(shop: Workspace) -> None:
    shop.save_template({**CART, "message": {**CART["message"], "text": "새 문구 {{ user.name|nim }}"}})
    shop.queue("pinned", "sms", ["u1"], from_template="cart", template_version=1, event=EVENT)
    shop.queue("latest", "sms", ["u1"], from_template="cart", event=EVENT)
    assert rows(shop, "pinned")["u1"].template == "cart@1"
    assert rows(shop, "latest")["u1"].template == "cart@2" and "새 문구 민수님" in rows(shop, "latest")["u1"].fields["text"]


def test_a_one_person_send_says_what_is_missing(shop: Workspace) -> None:
    with pytest.raises(NotRendered) as caught:
        shop.check_for("sms", "u4", text="{{ user.name|nim }} 님")
    assert caught.value.unrendered.reason == "missing_data" and caught.value.field == "text"
    ruling = shop.check_for("sms", "u1", from_template="cart", event=EVENT)
    assert ruling.sends and ruling.candidate.message.text.startswith("(광고) 민수님")


def test_preview_shows_what_goes_out_with_type_bytes_and_cost_and_records_nothing(shop: Workspace) -> None:
    found = shop.preview("u1", template="cart", event=EVENT)
    english = shop.preview("u2", template="cart", event=EVENT)
    missing = shop.preview("u4", template="cart", event=EVENT)
    with shop.sessions() as session:
        recorded = session.scalar(select(func.count()).select_from(PolicyEvaluation))

    assert found["rendered"]["text"].startswith("민수님, 담아 두신")
    assert found["goes_out"]["text"].startswith("(광고) 민수님") and found["goes_out"]["text"].endswith(
        "무료거부 080-123-4567")
    assert found["check"]["type"] == "SMS" and found["check"]["cost_krw"] == 12.0
    assert found["check"]["sizes"]["text"]["value"] == len(found["goes_out"]["text"].encode("cp949"))
    assert found["policy"]["action"] == "send" and found["language"] == "ko" and found["template"] == "cart@1"
    assert english["language"] == "en" and english["goes_out"]["text"].startswith("(광고)넛지샵\nJane, your")
    assert missing["rendered"] is None and missing["unrendered"] == {
        "reason": "missing_data", "field": "text", "detail": "user.name is missing"}
    assert recorded == 0


def test_a_sample_shows_the_variety_and_what_would_be_skipped(shop: Workspace) -> None:
    sample = shop.preview_sample(10, seed=3, template="cart", event=EVENT)
    again = shop.preview_sample(10, seed=3, template="cart", event=EVENT)
    assert sample["population"] == 4 and sample["sampled"] == 4
    assert sample["outcomes"] == {"rendered": 2, "missing_data": 2}
    assert [p["user"] for p in sample["previews"]] == [p["user"] for p in again["previews"]]


def test_the_transactional_api_renders_a_saved_template_and_replays_it(tmp_path: Path, state_url: str) -> None:
    home = tmp_path / "api"
    ws, _ = Workspace.init(home, database_url=state_url)
    write_section(home, "sender", SENDER)
    write_section(home, "policy", {"control_group_percent": 0.0})
    ws.close()
    ws = Workspace.open(home, database_url=state_url)
    ws.identify("u1", {"name": "민수", "phone": "010-4000-0001"})
    ws.identify("u2", {"phone": "010-4000-0002"})
    ws.flush()
    ws.save_template({"name": "shipped", "channel": "sms", "message": {
        "text": "{{ user.name|nim }}, 주문 {{ event.properties.order_id }} 상품이 {{ event.timestamp|date }}에 "
                "출발했어요"}})
    _, key = ws.keys.create(KeyScope.ADMIN, "backend", ws.clock())
    event = {"event": "Order Shipped", "properties": {"order_id": "A-100"}, "timestamp": "2026-11-22T06:00:00Z"}
    body = {"channel": "sms", "userId": "u1", "template": "shipped", "event": event}
    with LiveServer(ws) as server, httpx.Client(base_url=server.url, auth=(key, ""), timeout=10) as client:
        first = client.post("/api/v1/messages", json=body, headers={"Idempotency-Key": "A-100/shipped"})
        again = client.post("/api/v1/messages", json=body, headers={"Idempotency-Key": "A-100/shipped"})
        other = client.post("/api/v1/messages", json={**body, "event": {**event, "properties": {"order_id": "B"}}},
                            headers={"Idempotency-Key": "A-100/shipped"})
        nameless = client.post("/api/v1/messages", json={**body, "userId": "u2"})
        both = client.post("/api/v1/messages", json={**body, "message": {"text": "x"}})
        unknown = client.post("/api/v1/messages", json={**body, "template": "nope"})
    sent = ws.outbox(channel="sms", limit=5)
    ws.close()

    assert first.status_code == 200 and first.json()["state"] == "sent" and first.json()["template"] == "shipped@1"
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert other.status_code == 422
    assert nameless.status_code == 200 and nameless.json()["state"] == "skipped"
    assert nameless.json()["reason"] == "missing_data"
    assert both.status_code == 400 and unknown.status_code == 400 and "nope" in unknown.text
    assert [m["message"]["text"] for m in sent] == ["민수님, 주문 A-100 상품이 11월 22일 (일)에 출발했어요"]


def test_the_cli_saves_a_folder_and_previews_as_a_newcomer_would(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    ws, _ = Workspace.init(home)
    write_section(home, "sender", SENDER)
    ws.identify("u1", {"name": "민수", "phone": "010-4000-0001"})
    ws.flush()
    ws.close()
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "a_cart.yaml").write_text(json.dumps(CART, ensure_ascii=False), encoding="utf-8")
    (folder / "z_footer.yaml").write_text(json.dumps(FOOTER, ensure_ascii=False), encoding="utf-8")
    (folder / "broken.yaml").write_text("name: broken\nchannel: push\nmessage:\n  title: '{{ x '\n", encoding="utf-8")
    runner = CliRunner(env={"NUDGE_HOME": str(home), "COLUMNS": "200"})

    saved = runner.invoke(app, ["template", "save", str(folder), "--json"])
    shown = runner.invoke(app, ["preview", "cart", "--user", "u1", "--event", json.dumps(EVENT)])
    as_json = runner.invoke(app, ["preview", "cart", "--user", "u1", "--event", json.dumps(EVENT), "--json"])
    missing = runner.invoke(app, ["preview", "cart", "--user", "u1", "--json"])
    listed = runner.invoke(app, ["template", "list", "--json"])

    assert saved.exit_code == 1  # the footer is saved before the template that includes it; the broken one named
    results = {r.get("name", Path(r["file"]).stem): r for r in json.loads(saved.stdout)}
    assert results["footer"]["version"] == 1 and results["cart"]["version"] == 1
    assert "line 1" in results["broken"]["error"]
    assert shown.exit_code == 0 and "(광고) 민수님, 담아 두신 운동화가" in shown.stdout and "SMS" in shown.stdout
    assert json.loads(as_json.stdout)["check"]["sizes"]["text"]["value"] == 90
    assert missing.exit_code == 1 and json.loads(missing.stdout)["unrendered"]["detail"] == "event is missing"
    assert sorted(t["name"] for t in json.loads(listed.stdout)) == ["cart", "footer"]
