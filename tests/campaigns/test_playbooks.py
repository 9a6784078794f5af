"""The playbooks shipped in examples/playbooks (src/nudgekit/demo/playbooks), each applied as shipped and driven
step by step on a controllable clock with deterministic people: who gets which message when, and who does
not."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from delivery.helpers import drain
from sqlalchemy import select

from campaigns.helpers import CONSENTED, NOON_KST, open_shop, shoppers
from nudgekit.demo import LINKS, PLAYBOOKS
from nudgekit.store.state import LifecycleTransition, OutboxMessage
from nudgekit.workspace import Workspace

PROBIOTICS = {"sku": "P-PROBIO-30", "name": "프로바이오틱스 30일분", "price": 32900}


@pytest.fixture
def shop(tmp_path: Path, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}", clock, links=LINKS)
    shoppers(ws, 6)  # u000, u002, u004 have push tokens; everyone consented to SMS and push advertising
    for user in ("u000", "u001"):
        ws.set_consent(user, channel="kakao", purpose="advertising", granted=True, source="signup_form",
                       at=CONSENTED)
    for user in ("u000", "u001", "u002", "u003", "u004", "u005"):
        ws.track("signed_up", user, {}, timestamp=NOON_KST - timedelta(days=40))
    ws.flush()
    ws.load_coupons("welcome", [f"WELCOME-{i:04d}" for i in range(20)])
    ws.load_coupons("winback", [f"WINBACK-{i:04d}" for i in range(20)])
    yield ws
    ws.close()


def apply(ws: Workspace, tmp_path: Path, name: str) -> dict[str, Any]:
    """Apply the shipped playbook as it is; it must pass preflight."""
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    shutil.copy(PLAYBOOKS / f"{name}.yaml", folder / f"{name}.yaml")
    entry = next(e for e in ws.apply_campaigns(folder)["campaigns"] if e["name"] == name)
    assert not entry["blocked"], entry
    return entry


def sent(ws: Workspace, journey: str) -> list[tuple[str, str | None, str, str]]:
    """(person, step, channel, state) of every message the journey queued, in order."""
    with ws.sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.campaign == journey)
                               .order_by(OutboxMessage.created_at, OutboxMessage.profile_id)).all()
        return [(r.profile_id, r.variant, r.channel, r.state) for r in rows]


def fields_of(ws: Workspace, journey: str, person: str, step: str) -> dict[str, Any]:
    with ws.sessions() as session:
        row = session.scalars(select(OutboxMessage).where(
            OutboxMessage.campaign == journey, OutboxMessage.profile_id == person,
            OutboxMessage.variant == step)).one()
        return dict(row.fields)


def later(ws: Workspace, clock: Any, **delta: float) -> None:
    clock.advance(**delta)
    ws.tick_campaigns()


def test_every_shipped_playbook_passes_plan_on_a_small_shop(shop: Workspace) -> None:
    shop.track("product_viewed", "u000", {"sku": "P-OMEGA3-90", "name": "오메가3 90일분"})  # back_in_stock's audience
    shop.flush()
    result = shop.plan_campaigns(PLAYBOOKS)
    assert result["blocked"] == [] and result["ignored"] == []
    assert {c["name"] for c in result["campaigns"]} == {
        "signup_prompt", "welcome", "viewed_and_left", "cart_abandoned", "checkout_abandoned", "repurchase_due",
        "back_in_stock", "points_expiring", "basket_coupon",
        "new_onboarding", "power_thanks", "resurrected_welcome_back", "churn_winback", "uninstall_reach",
        "consent_reconfirmation", "consent_result"}


def test_an_anonymous_visitor_gets_the_sign_up_prompt_and_signing_up_ends_it(shop: Workspace, tmp_path: Path,
                                                                            clock: Any) -> None:
    apply(shop, tmp_path, "signup_prompt")
    shop.track("product_viewed", None, PROBIOTICS, anonymous_id="visitor-1")  # never identified before
    shop.track("product_viewed", "u001", PROBIOTICS)  # a member (signed up long ago): never prompted
    shop.flush()
    later(shop, clock, minutes=1)
    assert sent(shop, "signup_prompt") == []
    later(shop, clock, minutes=2)
    prompts = sent(shop, "signup_prompt")
    assert [(step, channel) for _, step, channel, _ in prompts] == [("prompt", "inapp")]
    visitor = prompts[0][0]
    assert visitor == "anon:visitor-1" and shop.resolve("visitor-1") == visitor
    assert "프로바이오틱스 30일분" in fields_of(shop, "signup_prompt", visitor, "prompt")["text"]
    shop.track("product_viewed", None, PROBIOTICS, anonymous_id="visitor-1")  # within the week: no new prompt
    shop.flush()
    later(shop, clock, minutes=5)
    assert len(sent(shop, "signup_prompt")) == 1


def test_welcome_sends_the_coupon_at_once_and_nudges_only_those_who_did_not_look(shop: Workspace, tmp_path: Path,
                                                                               clock: Any) -> None:
    apply(shop, tmp_path, "welcome")
    for user in ("u000", "u001", "u002", "u003"):
        shop.track("signed_up", user, {"method": "kakao"})
    shop.flush()
    welcomed = sent(shop, "welcome")  # each by the first channel that reaches them: push, Kakao, text
    assert {(p, s, c) for p, s, c, _ in welcomed} == {("u000", "welcome", "push"), ("u001", "welcome", "brand_message"),
                                                      ("u002", "welcome", "push"), ("u003", "welcome", "sms")}
    assert "WELCOME-" in fields_of(shop, "welcome", "u000", "welcome")["text"]
    clock.advance(hours=5)
    shop.track("product_viewed", "u000", PROBIOTICS)  # u000 looked around
    shop.track("order_completed", "u002", {"order_id": "O-1", "revenue": 32900})  # u002 bought: out
    shop.flush()
    later(shop, clock, days=1)
    assert len(sent(shop, "welcome")) == 4
    later(shop, clock, days=1, hours=4)  # 19:00 two days later, in Seoul
    nudged = [(p, s) for p, s, _, _ in sent(shop, "welcome") if s == "nudge"]
    assert nudged == [("u001", "nudge"), ("u003", "nudge")]
    assert shop.journey_entries("welcome", "u002")[0]["exit_reason"] == "exit_event:order_completed"
    shop.track("signed_up", "u001", {})  # once ever
    shop.flush()
    assert len(shop.journey_entries("welcome", "u001")) == 1


def test_viewed_and_left_leads_with_reviews_when_they_come_back(shop: Workspace, tmp_path: Path,
                                                               clock: Any) -> None:
    apply(shop, tmp_path, "viewed_and_left")
    for user in ("u000", "u001", "u002"):
        shop.track("product_viewed", user, PROBIOTICS)
    shop.flush()
    clock.advance(minutes=20)
    shop.track("added_to_cart", "u002", PROBIOTICS)  # did not leave
    shop.flush()
    later(shop, clock, hours=1)
    assert sent(shop, "viewed_and_left") == []  # nobody is back yet
    later(shop, clock, days=2)
    shop.track("app_opened", "u000", {})
    shop.flush()
    later(shop, clock, minutes=1)
    assert [(p, s, c) for p, s, c, _ in sent(shop, "viewed_and_left")] == [("u000", "reviews", "inapp")]
    assert fields_of(shop, "viewed_and_left", "u000", "reviews")["buttons"][0]["url"].startswith(
        "https://healthyday.example/products/P-PROBIO-30")
    later(shop, clock, days=6)  # u001 never came back within the week
    assert shop.journey_entries("viewed_and_left", "u001")[0]["state"] == "finished"
    assert len(sent(shop, "viewed_and_left")) == 1
    assert shop.journey_entries("viewed_and_left", "u002")[0]["exit_reason"] == "exit_event:added_to_cart"


def test_cart_abandoned_pushes_after_an_hour_then_kakao_next_morning(shop: Workspace, tmp_path: Path,
                                                                    clock: Any) -> None:
    apply(shop, tmp_path, "cart_abandoned")
    shop.track("added_to_cart", "u000", {**PROBIOTICS, "quantity": 1})
    shop.track("added_to_cart", "u001", {**PROBIOTICS, "quantity": 1})
    shop.track("added_to_cart", "u002", {**PROBIOTICS, "quantity": 1})
    shop.flush()
    later(shop, clock, minutes=30)
    shop.track("checkout_started", "u002", {"cart_value": 32900})  # moved on to checkout
    shop.flush()
    later(shop, clock, minutes=31)
    assert [(p, s, c) for p, s, c, _ in sent(shop, "cart_abandoned")] == [("u000", "push", "push"),
                                                                          ("u001", "push", "push")]
    assert [st for p, _, _, st in sent(shop, "cart_abandoned") if p == "u001"] == ["skipped"]  # no push token
    later(shop, clock, hours=20)  # 09:01 next day
    assert len(sent(shop, "cart_abandoned")) == 2
    later(shop, clock, hours=1)  # 10:01
    kakao = {(p, c) for p, s, c, _ in sent(shop, "cart_abandoned") if s == "kakao"}
    assert kakao == {("u000", "brand_message"), ("u001", "brand_message")}
    fields = fields_of(shop, "cart_abandoned", "u000", "kakao")
    assert "https://healthyday.example/cart" in fields["fallback_text"]  # the LMS where Kakao cannot reach them
    assert shop.journey_entries("cart_abandoned", "u002")[0]["exit_reason"] == "exit_event:checkout_started"


def test_checkout_abandoned_and_an_order_in_between(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    apply(shop, tmp_path, "checkout_abandoned")
    shop.track("checkout_started", "u000", {"cart_value": 65800})
    shop.track("checkout_started", "u002", {"cart_value": 32900})
    shop.flush()
    later(shop, clock, minutes=31)
    assert "65,800원" in fields_of(shop, "checkout_abandoned", "u000", "push")["text"]
    shop.track("order_completed", "u000", {"order_id": "O-2", "revenue": 65800})
    shop.flush()
    later(shop, clock, days=1)  # 12:31 next day: past 11:00
    texts = [(p, s) for p, s, _, _ in sent(shop, "checkout_abandoned") if s == "text"]
    assert texts == [("u002", "text")]


def test_repurchase_due_27_days_after_an_order_with_the_30_day_probiotics(shop: Workspace, tmp_path: Path,
                                                                         clock: Any) -> None:
    apply(shop, tmp_path, "repurchase_due")
    shop.track("order_completed", "u000", {"order_id": "O-3", "revenue": 32900,
                                           "products": [{"sku": "P-PROBIO-30", "price": 32900, "quantity": 1}]})
    shop.track("order_completed", "u001", {"order_id": "O-4", "revenue": 29900,
                                           "products": [{"sku": "P-PROTEIN-14", "price": 29900, "quantity": 1}]})
    shop.flush()
    later(shop, clock, days=26, hours=21)  # 09:00 on day 27 (Seoul): not yet 10:00
    assert sent(shop, "repurchase_due") == []
    later(shop, clock, hours=1, minutes=1)
    assert [(p, s, c) for p, s, c, _ in sent(shop, "repurchase_due")] == [("u000", "kakao", "brand_message")]
    assert "고객0님" in fields_of(shop, "repurchase_due", "u000", "kakao")["text"]
    later(shop, clock, days=1)
    assert len(sent(shop, "repurchase_due")) == 1


def moved(ws: Workspace, clock: Any, person: str, to: str, frm: str | None) -> None:
    """A lifecycle transition as `nudge lifecycle run` stores it."""
    with ws.sessions.begin() as session:
        session.add(LifecycleTransition(profile_id=person, from_stage=frm, to_stage=to, at=clock.now,
                                        detected_at=clock.now, source="run"))


def test_new_onboarding_teaches_then_picks_or_quizzes(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    apply(shop, tmp_path, "new_onboarding")
    moved(shop, clock, "u000", "new", None)
    moved(shop, clock, "u001", "new", None)
    moved(shop, clock, "u002", "current", "new")  # not new: never onboarded
    later(shop, clock, hours=22, minutes=1)  # 10:01 next day
    assert sent(shop, "new_onboarding") == []
    later(shop, clock, hours=1)  # 11:01
    assert {(p, s) for p, s, _, _ in sent(shop, "new_onboarding")} == {("u000", "howto"), ("u001", "howto")}
    shop.track("product_viewed", "u000", PROBIOTICS)
    shop.flush()
    later(shop, clock, days=3)
    after = {(p, s) for p, s, _, _ in sent(shop, "new_onboarding") if s != "howto"}
    assert after == {("u000", "pick"), ("u001", "quiz")}


def test_power_users_are_thanked_once_a_quarter(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    apply(shop, tmp_path, "power_thanks")
    moved(shop, clock, "u001", "power", "current")
    later(shop, clock, minutes=1)  # 12:01: today's noon has passed, so tomorrow's
    assert sent(shop, "power_thanks") == []
    later(shop, clock, days=1)
    assert [(p, s, c) for p, s, c, _ in sent(shop, "power_thanks")] == [("u001", "thanks", "brand_message")]
    moved(shop, clock, "u001", "power", "current")  # back to power within 90 days: not thanked again
    later(shop, clock, days=2)
    assert len(sent(shop, "power_thanks")) == 1


def test_resurrected_people_are_welcomed_back_in_the_app(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    apply(shop, tmp_path, "resurrected_welcome_back")
    moved(shop, clock, "u003", "resurrected", "churn")
    later(shop, clock, seconds=1)
    assert [(p, s, c) for p, s, c, _ in sent(shop, "resurrected_welcome_back")] == [
        ("u003", "welcome_back", "inapp")]
    drain(shop, clock)
    assert [m["title"] for m in shop.inbox(user_id="u003")] == ["고객3님, 다시 만나 반가워요"]


def test_churn_winback_offers_a_coupon_then_a_last_call_unless_they_come_back(shop: Workspace, tmp_path: Path,
                                                                              clock: Any) -> None:
    apply(shop, tmp_path, "churn_winback")
    for person in ("u000", "u001", "u003"):
        moved(shop, clock, person, "churn", "current")
    later(shop, clock, days=1)  # noon next day
    offers = {(p, c) for p, s, c, _ in sent(shop, "churn_winback") if s == "offer"}
    assert offers == {("u000", "push"), ("u001", "brand_message"), ("u003", "sms")}
    assert "WINBACK-" in fields_of(shop, "churn_winback", "u003", "offer")["text"]
    shop.track("app_opened", "u000", {})  # u000 is back
    shop.flush()
    later(shop, clock, days=7)
    calls = {(p, c) for p, s, c, _ in sent(shop, "churn_winback") if s == "last_call"}
    assert calls == {("u001", "brand_message"), ("u003", "sms")}
    assert shop.journey_entries("churn_winback", "u000")[0]["exit_reason"] == "exit_event:app_opened"


def test_uninstalled_people_are_reached_by_kakao_or_text_not_push(shop: Workspace, tmp_path: Path,
                                                                 clock: Any) -> None:
    apply(shop, tmp_path, "uninstall_reach")
    moved(shop, clock, "u000", "uninstall", "current")  # push token, Kakao consent: Kakao
    moved(shop, clock, "u002", "uninstall", "current")  # push token, no Kakao consent: text
    moved(shop, clock, "u004", "uninstall", "current")
    shop.tick_campaigns()  # they enter
    clock.advance(hours=3)
    shop.track("app_installed", "u004", {})  # came back before the message
    shop.flush()
    later(shop, clock, days=1)
    assert {(p, c) for p, _, c, _ in sent(shop, "uninstall_reach")} == {("u000", "brand_message"), ("u002", "sms")}


OMEGA = {"sku": "P-OMEGA3-90", "name": "오메가3 90일분", "price": 45900}


def test_back_in_stock_goes_first_to_those_who_viewed_or_wished_for_it(shop: Workspace, tmp_path: Path,
                                                                       clock: Any) -> None:
    shop.track("product_viewed", "u000", OMEGA, timestamp=clock.now - timedelta(days=3))
    shop.track("wishlist_added", "u002", OMEGA, timestamp=clock.now - timedelta(days=45))
    shop.track("product_viewed", "u004", OMEGA, timestamp=clock.now - timedelta(days=40))  # too long ago
    shop.track("product_viewed", "u003", PROBIOTICS)  # another product
    shop.track("product_viewed", "u001", OMEGA)  # no push token: push cannot reach them
    shop.flush()
    entry = apply(shop, tmp_path, "back_in_stock")
    assert entry["run"]["audience"] == 3
    got = {(p, c, st) for p, _, c, st in sent(shop, "back_in_stock")}
    assert got == {("u000", "push", "queued"), ("u002", "push", "queued"), ("u001", "push", "skipped")}
    with shop.sessions() as session:
        options = session.scalars(select(OutboxMessage.options).where(
            OutboxMessage.campaign == "back_in_stock", OutboxMessage.state == "queued")).all()
    assert [o["priority"] for o in options] == [10, 10]  # ahead of other campaigns under a frequency cap
    assert "고객0님이 기다리던 상품" in fields_of(shop, "back_in_stock", "u000", None)["text"]


def test_points_expiring_is_an_informational_notice_seven_days_ahead(shop: Workspace, tmp_path: Path,
                                                                      clock: Any) -> None:
    shop.identify("u005", {"points": 4200, "points_expire_at": "2026-12-04"})
    shop.identify("u003", {"points": 800, "points_expire_at": "2026-12-20"})
    shop.identify("u001", {"points": 0, "points_expire_at": "2026-12-04"})  # nothing to lose
    shop.set_consent("u005", channel="sms", purpose="advertising", granted=False, source="sms_reply",
                     at=clock.now)  # no advertising consent: a notice still goes
    shop.flush()
    apply(shop, tmp_path, "points_expiring")
    later(shop, clock, days=2, hours=21)  # 09:00 on 27 November in Seoul: 7 days before 4 December, not 10:00
    assert sent(shop, "points_expiring") == []
    later(shop, clock, hours=1, minutes=1)
    assert [(p, s, c, st) for p, s, c, st in sent(shop, "points_expiring")] == [("u005", "notice", "sms", "queued")]
    text = fields_of(shop, "points_expiring", "u005", "notice")["text"]
    assert "4,200원" in text and not text.startswith("(광고)")


def test_basket_coupon_fits_what_each_buyer_usually_spends(shop: Workspace, tmp_path: Path, clock: Any) -> None:
    orders = {"u000": [70000, 80000], "u001": [30000, 45000], "u002": [19900], "u003": []}
    for person, amounts in orders.items():
        for i, revenue in enumerate(amounts):
            shop.track("order_completed", person, {"order_id": f"{person}-{i}", "revenue": revenue},
                       timestamp=clock.now - timedelta(days=10 + i))
    shop.flush()
    entry = apply(shop, tmp_path, "basket_coupon")
    assert entry["applied"]["entered"]["entered"] == 3  # the buyers of the last 90 days
    later(shop, clock, days=1)  # the next noon
    got = {(p, s) for p, s, _, _ in sent(shop, "basket_coupon")}
    assert got == {("u000", "coupon_10000"), ("u001", "coupon_5000"), ("u002", "coupon_3000")}
