"""Each rule of the chain, through `Workspace.check_for` (a dry run) and `Workspace.send` (a gate)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FakeClock

from nudgekit.channels.sms.message import SmsMessage
from nudgekit.policy.control import held_out
from nudgekit.policy.label import look_alikes
from nudgekit.workspace import Workspace

from .helpers import NOON_KST, SENDER, open_shop, person, reasons


@pytest.fixture
def shop(tmp_path: Path, state_url: str) -> Workspace:
    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST))
    yield ws
    ws.close()


def test_advertising_without_consent_is_skipped_and_informational_is_not(shop: Workspace) -> None:
    person(shop, "u1")
    ad = shop.check_for("sms", "u1", text="겨울 세일 시작", ad=True)
    assert (ad.action, ad.reason) == ("skip", "no_consent")
    info = shop.check_for("sms", "u1", text="주문하신 상품이 출발했습니다.")
    assert (info.action, info.reason) == ("send", "send")
    assert reasons(info)["consent"] == "not_needed"


def test_a_withdrawal_wins_over_an_earlier_grant(shop: Workspace) -> None:
    person(shop, "u1", consent=("sms",))
    shop.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="sms_reply",
                     at=NOON_KST - timedelta(minutes=1))
    ruling = shop.check_for("sms", "u1", text="겨울 세일", ad=True)
    assert ruling.reason == "consent_withdrawn"
    assert "sms_reply" in ruling.decisions[1].en


def test_push_needs_advertising_consent_not_the_os_permission(shop: Workspace) -> None:
    shop.identify("u1", {"push_tokens": [{"token": "f" * 64, "platform": "android"}]})
    shop.track("push_permission_changed", "u1", {"enabled": True})
    shop.flush()
    assert shop.check_for("push", "u1", title="세일", text="오늘만", ad=True).reason == "no_consent"
    shop.set_consent("u1", channel="push", purpose="advertising", granted=True, source="in_app")
    assert shop.check_for("push", "u1", title="세일", text="오늘만", ad=True).sends


def test_purchase_exception_needs_the_setting_a_recent_order_and_the_same_goods(
        tmp_path: Path, state_url: str) -> None:
    clock = FakeClock(NOON_KST)
    ws = open_shop(tmp_path / "ws", state_url, clock, purchase_exception=True)
    person(ws, "buyer")
    ws.track("order_completed", "buyer", {"revenue": 39000, "products": [{"category": "Shoes"}]},
             timestamp=(NOON_KST - timedelta(days=100)).isoformat())
    ws.flush()
    same = ws.check_for("sms", "buyer", text="새 운동화 입고", ad=True, goods=["shoes"])
    assert same.sends and reasons(same)["consent"] == "recent_purchase"
    assert "purchase exception" in same.decisions[1].en
    assert ws.check_for("sms", "buyer", text="새 가방 입고", ad=True, goods=["bags"]).reason == "no_consent"
    assert ws.check_for("sms", "buyer", text="새 운동화", ad=True).reason == "no_consent"  # goods not named
    clock.advance(days=90)  # the order is now 190 days old
    assert ws.check_for("sms", "buyer", text="새 운동화", ad=True, goods=["shoes"]).reason == "no_consent"
    ws.close()


def test_purchase_exception_never_overrides_a_refusal(tmp_path: Path, state_url: str) -> None:
    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST), purchase_exception=True)
    person(ws, "buyer")
    ws.track("order_completed", "buyer", {"category": "shoes"}, timestamp=(NOON_KST - timedelta(days=3)).isoformat())
    ws.set_consent("buyer", channel="sms", purpose="advertising", granted=False, source="optout_080_call",
                   at=NOON_KST - timedelta(days=1))
    assert ws.check_for("sms", "buyer", text="운동화", ad=True, goods=["shoes"]).reason == "consent_withdrawn"
    ws.close()


def test_purchase_exception_is_off_by_default(shop: Workspace) -> None:
    person(shop, "buyer")
    shop.track("order_completed", "buyer", {"category": "shoes"}, timestamp=(NOON_KST - timedelta(days=3)).isoformat())
    shop.flush()
    assert shop.check_for("sms", "buyer", text="운동화", ad=True, goods=["shoes"]).reason == "no_consent"


def test_suppressed_and_unreachable_people_get_nothing_whatever_the_purpose(shop: Workspace) -> None:
    person(shop, "nophone", phone=None)
    assert shop.check_for("sms", "nophone", text="배송 안내").reason == "no_address"
    person(shop, "bounced", phone=None, email="gone@example.com")
    from nudgekit.store.state import Suppression

    with shop.sessions.begin() as session:
        session.add(Suppression(channel="email", address="gone@example.com", reason="hard_bounce",
                                detail="550 5.1.1", at=NOON_KST))
    ruling = shop.check_for("email", "bounced", subject="주문 확인", text="감사합니다")
    assert ruling.reason == "suppressed" and "hard_bounce" in ruling.decisions[2].en


def test_the_control_group_is_stable_about_the_percentage_and_never_holds_out_test_users(
        tmp_path: Path, state_url: str) -> None:
    people = [f"user-{i}" for i in range(20_000)]
    share = sum(held_out(p, 5.0, "seed") for p in people) / len(people)
    assert 0.045 < share < 0.055
    assert {p for p in people if held_out(p, 5.0, "seed")} <= {p for p in people if held_out(p, 10.0, "seed")}
    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST), control_group_percent=5.0)
    inside = next(p for p in people if held_out(p, 5.0, "nudgekit"))
    person(ws, inside, consent=("sms",))
    ad = ws.check_for("sms", inside, text="세일", ad=True)
    assert ad.reason == "control_group"
    assert ws.check_for("sms", inside, text="주문 출발 안내").sends  # informational reaches them
    ws.change_list("test_users", _listed(tmp_path, inside))
    tester = ws.check_for("sms", inside, text="세일", ad=True)
    assert tester.sends and tester.test_user and reasons(tester)["control_group"] == "test_user"
    ws.close()


def _listed(tmp_path: Path, *users: str) -> Path:
    path = tmp_path / "list.csv"
    path.write_text("user_id\n" + "\n".join(users) + "\n", encoding="utf-8")
    return path


def test_the_label_sender_name_and_080_line_are_added_and_decide_sms_or_lms(shop: Workspace) -> None:
    person(shop, "u1", consent=("sms",))
    short = shop.check_for("sms", "u1", text="겨울 세일", ad=True)
    assert short.sends and reasons(short)["label"] == "label_added"
    assert short.candidate.message.text == "(광고)넛지샵\n겨울 세일\n무료거부 080-123-4567"
    assert short.candidate.checked.type == "SMS"
    # 40 Hangul = 80 bytes: fits an SMS alone, not with the label, name and opt-out line
    longer = shop.check_for("sms", "u1", text="가" * 40, ad=True)
    assert longer.sends and longer.candidate.checked.type == "LMS"
    assert "now LMS" in longer.decisions[4].en
    lms = shop.check_for("sms", "u1", text="긴 안내", subject="겨울 세일", ad=True)
    assert lms.candidate.message.subject == "(광고)겨울 세일"
    done = shop.check_for("sms", "u1", text="(광고)넛지샵\n세일\n무료거부 080-123-4567", ad=True)
    assert reasons(done)["label"] == "labelled"


@pytest.mark.parametrize("label", ["(광/고)", "(광 고)", "(광.고)", "(광_고)", "(광,고)", '("광고")', "[광고]",
                                   "(대출광고)", "*광고", "【광고】", "(AD)", "[ad]", "광.고"])
def test_look_alike_labels_are_refused_not_fixed(label: str) -> None:
    found = look_alikes(SmsMessage(text=f"{label} 겨울 세일", ad=True))
    assert found and found[0][0] == "text"


def test_the_exact_label_and_ordinary_words_are_not_look_alikes() -> None:
    assert look_alikes(SmsMessage(text="(광고)넛지샵 광고 모델 모집 중! 아이디어 공모", ad=True)) == []


def test_a_look_alike_stops_the_message_with_the_reason(shop: Workspace) -> None:
    person(shop, "u1", consent=("sms",))
    ruling = shop.check_for("sms", "u1", text="[광고] 겨울 세일", ad=True)
    assert ruling.reason == "label_look_alike" and "[광고]" in ruling.decisions[4].en


def test_email_gets_the_subject_label_and_an_unsubscribe_footer(shop: Workspace) -> None:
    person(shop, "u1", phone=None, email="u1@example.com", consent=("email",))
    url = "https://shop.example/u/abc"
    ruling = shop.check_for("email", "u1", subject="겨울 세일", html="<html><body><p>세일</p></body></html>", ad=True,
                            unsubscribe_url=url)
    assert ruling.sends
    message = ruling.candidate.message
    assert message.subject == "(광고) 겨울 세일"
    assert f'href="{url}"' in message.html and message.html.endswith("</body></html>")
    assert shop.check_for("email", "u1", subject="세일", text="본문", ad=True).reason == "no_unsubscribe_link"


def test_push_gets_the_label_and_the_in_app_opt_out_path(shop: Workspace) -> None:
    shop.identify("u1", {"push_tokens": [{"token": "a" * 64, "platform": "android"}]})
    shop.flush()
    shop.set_consent("u1", channel="push", purpose="advertising", granted=True, source="in_app")
    ruling = shop.check_for("push", "u1", title="겨울 세일", text="오늘만 30%", ad=True)
    assert ruling.candidate.message.title == "(광고) 겨울 세일"
    assert ruling.candidate.message.text == "오늘만 30%\n수신거부: 마이 > 설정 > 알림"


def test_alimtalk_never_carries_advertising(shop: Workspace) -> None:
    person(shop, "u1", consent=("kakao",))
    shop.add_kakao_template("ORDER1", text="#{name}님 주문이 접수되었습니다.", status="approved")
    ruling = shop.check_for("alimtalk", "u1", template="ORDER1", variables={"name": "민지"}, ad=True)
    assert ruling.reason == "ad_on_alimtalk"


def test_informational_copy_that_reads_like_a_promotion_is_flagged(shop: Workspace) -> None:
    person(shop, "u1")
    ruling = shop.check_for("sms", "u1", text="주문이 출발했어요. 다음 주문 10% 할인 쿠폰도 드려요")
    assert ruling.sends and ruling.warnings
    assert "쿠폰" in ruling.warnings[0].en and ruling.warnings[0].rule == "purpose"


def test_brand_message_fallback_is_dropped_without_sms_consent(shop: Workspace) -> None:
    person(shop, "u1", consent=("kakao",))
    ruling = shop.check_for("brand_message", "u1", text="겨울 세일")
    assert ruling.sends and reasons(ruling)["consent"] == "consented_no_fallback"
    assert ruling.candidate.message.fallback is False and ruling.candidate.checked.fallback is None
    shop.set_consent("u1", channel="sms", purpose="advertising", granted=True, source="signup_form")
    with_sms = shop.check_for("brand_message", "u1", text="겨울 세일")
    assert reasons(with_sms)["consent"] == "consented" and with_sms.candidate.checked.fallback is not None


def test_quiet_hours_and_send_windows_defer_to_local_time(tmp_path: Path, state_url: str) -> None:
    ws = open_shop(tmp_path / "ws", state_url, FakeClock(NOON_KST), quiet_hours="11:00-13:00")
    person(ws, "u1", consent=("sms",))
    ruling = ws.check_for("sms", "u1", text="세일", ad=True)  # 12:00 KST
    assert (ruling.action, ruling.reason) == ("defer", "quiet_hours")
    assert ruling.until == datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 13:00 KST
    assert ws.check_for("sms", "u1", text="배송 출발").sends  # quiet hours keep only advertising out
    window = ws.check_for("sms", "u1", text="배송 출발", window="14:00-18:00")
    assert window.reason == "send_window" and window.until == datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    ws.close()


def test_a_campaign_budget_is_spent_atomically_and_given_back(shop: Workspace) -> None:
    for i in range(3):
        person(shop, f"u{i}", phone=f"010-1234-000{i}", consent=("sms",))
    sent = [shop.send("sms", f"u{i}", text="세일", ad=True, campaign="c", budget_krw=25) for i in range(3)]
    assert [s.ruling.reason for s in sent] == ["send", "send", "over_budget"]  # 12 KRW each
    assert "spent 24 of its 25 KRW" in sent[2].ruling.decisions[-1].en


def test_the_prepaid_balance_stops_messages_it_cannot_pay_for(shop: Workspace) -> None:
    person(shop, "u1")
    shop.top_up(20)
    assert shop.check_for("sms", "u1", text="배송 출발").sends  # the sandbox sends nothing and costs nothing
    from nudgekit.policy import chain, people
    from nudgekit.vocabulary import MessageChannel, PolicyStage

    with shop.sessions() as session:
        state = dataclasses.replace(shop._policy_state(session, PolicyStage.CHECK), charges=lambda channel: True)
        candidate = shop._candidate(state, MessageChannel.SMS, {"text": "가" * 60}, {})  # an LMS: 39 KRW
        ruling = chain.evaluate(candidate, people.load(session, shop.settings, "u1"), NOON_KST, state)
    assert ruling.reason == "no_balance" and "20 KRW left" in ruling.decisions[-1].en


def test_every_gate_is_recorded_and_explained(shop: Workspace) -> None:
    person(shop, "u1")
    skipped = shop.send("sms", "u1", text="세일", ad=True, campaign="winter")
    assert not skipped.sent
    shop.set_consent("u1", channel="sms", purpose="advertising", granted=True, source="settings_screen")
    sent = shop.send("sms", "u1", text="세일", ad=True, campaign="winter")
    assert sent.sent
    passes = shop.explain(user="u1", campaign="winter")
    assert [(p["action"], p["reason"]) for p in passes] == [("send", "send"), ("skip", "no_consent")]
    assert [d["rule"] for d in passes[0]["decisions"]][:3] == ["purpose", "consent", "suppression"]
    assert shop.explain(user="u1", campaign="other") == []
    assert shop.explain(message_id=sent.ruling.candidate.message_id)[0]["reason"] == "send"


def test_informational_copy_that_reads_as_a_promotion_is_warned_before_anyone_is_chosen(tmp_path: Path) -> None:
    """The preflight a campaign runs on its messages (and `nudge message check`): a warning, not a refusal."""
    with Workspace.init(tmp_path / "ws", sender=SENDER)[0] as ws:
        promo = ws.check_message("push", title="주문 안내", text="배송이 시작되었습니다. 다음 주문 10% 할인 쿠폰!")
        assert promo.ok and [w.code for w in promo.warnings] == ["reads_as_advertising"]
        assert '("10% 할인", "쿠폰")' in promo.warnings[0].en
        email = ws.check_message("email", subject="영수증", html="<p>결제 완료</p><p>FREE SHIPPING on your next order</p>")
        assert [w.code for w in email.warnings] == ["reads_as_advertising"]
        assert ws.check_message("push", title="주문 안내", text="배송이 시작되었습니다.").warnings == []
        marked = ws.check_message("push", title="(광고) 쿠폰", text="10% 할인\n수신거부: 마이 > 설정 > 알림", ad=True)
        assert "reads_as_advertising" not in [w.code for w in marked.warnings]
