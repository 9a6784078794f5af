"""Kakao AlimTalk and Brand Message: checked as Kakao would before any provider call — the approved template
and its variables, Brand Message hours, formats, images, buttons and targeting — with the text message each
falls back to, the one-Brand-Message-a-day claim, and the template registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FakeClock
from PIL import Image
from typer.testing import CliRunner

from nudgekit.channels.kakao import brand, templates
from nudgekit.channels.kakao.alimtalk import AlimtalkMessage
from nudgekit.channels.kakao.alimtalk import check as check_alimtalk
from nudgekit.channels.kakao.brand import BrandMessage
from nudgekit.channels.kakao.templates import Template, fill_text, variables_of
from nudgekit.cli import app
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import TemplateStatus
from nudgekit.workspace import Workspace

SENDER = SenderSettings(name="건강상점", sms_numbers=["0212345678"], optout_080="0801234567",
                        kakao_sender_key="KA01PF-test")
ORDER = Template("ORDER_OK", "주문 접수", "#{이름}님, 주문(#{주문번호})이 접수되었습니다.\n결제 금액: #{금액}원",
                 TemplateStatus.APPROVED)
VALUES = {"이름": "홍길동", "주문번호": "A-1", "금액": "39,000"}


def kst(hour: int, minute: int = 0) -> datetime:
    """A moment on 2026-11-24 at this Korean wall-clock time."""
    return datetime(2026, 11, 24, hour, minute, tzinfo=brand.KOREA).astimezone(UTC)


def alimtalk(template: Template | None = ORDER, sender: SenderSettings = SENDER, **fields: object) -> list[str]:
    message = AlimtalkMessage.model_validate({"template": "ORDER_OK", "variables": VALUES, **fields})
    return [p.code for p in check_alimtalk(message, template, sender, PriceSettings()).problems]


def test_variables_are_found_and_filled() -> None:
    assert variables_of(ORDER.content) == ["이름", "주문번호", "금액"]
    assert fill_text("#{a}와 #{a}, #{b}", {"a": "1"}) == ("1와 1, #{b}", ["b"])


def test_an_alimtalk_must_equal_its_approved_template_filled_in() -> None:
    assert alimtalk() == []
    assert alimtalk(text="홍길동님, 주문(A-1)이 접수되었습니다.\r\n결제 금액: 39,000원") == []
    assert alimtalk(text="홍길동님, 주문(A-1)이 접수됐습니다.\n결제 금액: 39,000원") == ["text_differs_from_template"]
    assert alimtalk(text="홍길동님, 주문(A-1)이 접수되었습니다.") == ["text_differs_from_template"]
    assert alimtalk(variables={"이름": "홍길동"}) == ["missing_variable", "missing_variable"]
    assert alimtalk(template=None) == ["unknown_template"]
    rejected = Template("ORDER_OK", "x", ORDER.content, TemplateStatus.REJECTED, comment="광고성 문구 포함")
    assert alimtalk(template=rejected) == ["template_not_approved"]
    assert alimtalk(ad=True) == ["alimtalk_is_informational"]
    assert alimtalk(variables={**VALUES, "이름": "가" * 1000}, fallback=False) == ["too_long"]
    assert alimtalk(sender=SenderSettings(sms_numbers=["0212345678"])) == ["no_kakao_channel"]


def test_the_difference_from_the_template_is_shown_where_it_starts() -> None:
    message = AlimtalkMessage(template="ORDER_OK", variables=VALUES,
                              text="홍길동님, 주문(A-2)이 접수되었습니다.\n결제 금액: 39,000원")
    problem = check_alimtalk(message, ORDER, SENDER, PriceSettings()).problems[0]
    assert "character 12" in problem.en and "A-2" in problem.en and "A-1" in problem.en


def test_an_alimtalk_falls_back_to_its_own_text_with_the_button_link() -> None:
    template = Template("ORDER_OK", "x", ORDER.content, TemplateStatus.APPROVED, (templates.KakaoButton(
        type="WL", name="주문 보기", url_mobile="https://shop.example/o/#{주문번호}"),))
    checked = check_alimtalk(AlimtalkMessage(template="ORDER_OK", variables=VALUES), template, SENDER, PriceSettings())
    assert checked.ok and checked.rendered["text"].startswith("홍길동님, 주문(A-1)")
    assert checked.fallback is not None and checked.fallback.checked.type == "SMS"
    assert checked.fallback.checked.sizes["text"].value == 84
    assert checked.fallback.message.text.endswith("https://shop.example/o/A-1")
    assert not checked.fallback.message.ad
    plain = check_alimtalk(AlimtalkMessage(template="ORDER_OK", variables=VALUES, fallback_text="주문 접수 완료"),
                           ORDER, SENDER, PriceSettings())
    assert plain.fallback.checked.type == "SMS" and plain.fallback.checked.cost_krw == 12.0
    none = check_alimtalk(AlimtalkMessage(template="ORDER_OK", variables=VALUES, fallback=False), ORDER, SENDER,
                          PriceSettings())
    assert none.fallback is None


def test_a_fallback_that_would_be_refused_refuses_the_alimtalk() -> None:
    no_number = SenderSettings(kakao_sender_key="KA01PF-test")
    assert alimtalk(sender=no_number) == ["no_sender_number"]
    checked = check_alimtalk(AlimtalkMessage(template="ORDER_OK", variables=VALUES, fallback_text="🎉 접수"), ORDER,
                             SENDER, PriceSettings())
    assert [(p.field, p.code) for p in checked.problems] == [("fallback.text", "unsupported_characters")]
    assert checked.problems[0].ko.startswith("대체 문자:")
    assert alimtalk(sender=no_number, fallback=False) == []


def brand_codes(now: datetime | None = None, sender: SenderSettings = SENDER, **fields: object) -> list[str]:
    message = BrandMessage.model_validate({"text": "겨울 세일 최대 30%", **fields})
    return [p.code for p in brand.check(message, sender, PriceSettings(), now).problems]


def test_brand_messages_go_out_only_from_0800_to_2050_korean_time() -> None:
    assert brand_codes(kst(8, 0)) == [] and brand_codes(kst(20, 49)) == []
    assert brand_codes(kst(7, 59)) == ["outside_sending_hours"]
    assert brand_codes(kst(20, 50)) == ["outside_sending_hours"]
    assert brand_codes(kst(23, 30)) == ["outside_sending_hours"]
    assert brand.next_opening(kst(23, 30)) == datetime(2026, 11, 25, 8, 0, tzinfo=brand.KOREA)
    assert brand.next_opening(kst(6, 0)) == datetime(2026, 11, 24, 8, 0, tzinfo=brand.KOREA)
    assert brand.next_opening(kst(12, 0)) == kst(12, 0)


def test_brand_message_lengths_buttons_and_targeting() -> None:
    assert brand_codes(text="가" * 1300, fallback_text="세일") == []
    assert brand_codes(text="가" * 1301, fallback_text="세일") == ["too_long"]
    assert brand_codes(text="가" * 1300) == ["too_long"]  # the fallback LMS holds 2,000 bytes
    assert brand_codes(text=" ", fallback=False) == ["empty"]
    button = {"type": "WL", "name": "보러 가기", "url_mobile": "https://shop.example/sale"}
    assert brand_codes(buttons=[button] * 5) == []
    assert brand_codes(buttons=[button] * 6) == ["too_many_buttons"]
    assert brand_codes(buttons=[{**button, "name": "지금 바로 할인 상품 보러 가기"}]) == ["button_name_too_long"]
    assert brand_codes(buttons=[{"type": "WL", "name": "보기"}]) == ["button_without_link"]
    assert brand_codes(buttons=[{"type": "AL", "name": "앱", "scheme_ios": "shop://"}]) == ["app_link_incomplete"]
    assert brand_codes(buttons=[{"type": "BK", "name": "문의", "url_mobile": "https://x.example"}]) == \
        ["button_takes_no_link"]
    assert brand_codes(targeting="M") == ["targeting_not_allowed"]
    qualified = SENDER.model_copy(update={"kakao_targeting": ["I", "M", "N"]})
    assert brand_codes(targeting="N", sender=qualified) == []
    assert brand_codes(targeting="N", sender=qualified.model_copy(update={"optout_080": None}), fallback=False) == \
        ["no_optout_080"]


def picture(path: Path, size: tuple[int, int], kind: str = "JPEG") -> Path:
    Image.new("RGB", size, (200, 80, 40)).save(path, kind)
    return path


def test_brand_message_images(tmp_path: Path) -> None:
    assert brand_codes(format="image", image=picture(tmp_path / "a.jpg", (800, 400))) == []
    assert brand_codes(format="image", image=picture(tmp_path / "b.png", (600, 800), "PNG")) == []
    assert brand_codes(format="image", image=picture(tmp_path / "c.jpg", (400, 300))) == ["image_too_narrow"]
    assert brand_codes(format="image", image=picture(tmp_path / "d.jpg", (900, 300))) == ["image_ratio"]
    assert brand_codes(format="image", image=picture(tmp_path / "e.gif", (800, 400), "GIF")) == ["image_format"]
    assert brand_codes(format="image") == ["image_missing"]
    assert brand_codes(image=tmp_path / "a.jpg") == ["image_needs_format"]
    assert brand_codes(format="wide", image=picture(tmp_path / "w.jpg", (800, 600))) == []
    assert brand_codes(format="wide", image=tmp_path / "b.png") == ["image_ratio"]
    assert brand_codes(format="wide", text="가" * 77, image=tmp_path / "w.jpg", fallback=False) == ["too_long"]
    button = {"type": "WL", "name": "보기", "url_mobile": "https://shop.example"}
    assert brand_codes(format="wide", image=tmp_path / "w.jpg", buttons=[button] * 3) == ["too_many_buttons"]
    (tmp_path / "n.jpg").write_bytes(b"not an image")
    assert brand_codes(format="image", image=tmp_path / "n.jpg") == ["not_an_image"]
    assert brand_codes(format="image", image=tmp_path / "missing.jpg") == ["image_unreadable"]


def test_a_brand_message_falls_back_as_a_lawful_advertising_text_message() -> None:
    message = BrandMessage(text="겨울 세일 최대 30%", buttons=[{"type": "WL", "name": "보기",
                                                         "url_mobile": "https://shop.example/sale"}])
    checked = brand.check(message, SENDER, PriceSettings())
    fallback = checked.fallback
    assert checked.ok and fallback is not None and fallback.message.ad
    assert fallback.message.text == "(광고)건강상점\n겨울 세일 최대 30%\nhttps://shop.example/sale\n무료거부 080-123-4567"
    written = BrandMessage(text="x", fallback_text="(광고) 건강상점 세일\n무료수신거부 080-123-4567",
                           fallback_subject="세일 안내")
    kept = brand.check(written, SENDER, PriceSettings()).fallback
    assert kept.message.text == "(광고) 건강상점 세일\n무료수신거부 080-123-4567"
    assert kept.message.subject == "(광고)세일 안내" and kept.checked.type == "LMS"
    no_080 = brand.check(message, SENDER.model_copy(update={"optout_080": None}), PriceSettings())
    assert {p.code for p in no_080.problems} == {"no_optout_080", "optout_line_missing"}


# -- through the workspace: registry, sandbox sends, the one-a-day claim ----------------------------------


@pytest.fixture
def kakao_ws(ws: Workspace) -> Workspace:
    ws.set_sender(name="건강상점", sms_numbers=["0212345678"], optout_080="0801234567", kakao_sender_key="KA01PF-t")
    ws.add_kakao_template("ORDER_OK", text=ORDER.content, name="주문 접수", status="approved")
    return ws


def test_the_template_registry(kakao_ws: Workspace, clock: FakeClock) -> None:
    ws = kakao_ws
    ws.add_kakao_template("PENDING_ONE", text="#{이름}님 안녕하세요")
    assert [(t.code, t.status) for t in ws.kakao_templates()] == [("ORDER_OK", "approved"), ("PENDING_ONE", "pending")]
    assert [t.code for t in ws.kakao_templates("approved")] == ["ORDER_OK"]
    with pytest.raises(FieldError, match="at most 40 variables"):
        ws.add_kakao_template("MANY", text=" ".join(f"#{{v{i}}}" for i in range(41)))
    with pytest.raises(FieldError, match="template code"):
        ws.add_kakao_template("has space", text="x")
    with pytest.raises(FieldError) as exc:
        ws.add_kakao_template("B", text="x", buttons=[{"type": "WL", "name": "x"}])
    assert exc.value.field == "buttons[1]"
    with ws.sessions.begin() as session:
        report = templates.sync(session, [
            Template("ORDER_OK", "주문 접수", ORDER.content, TemplateStatus.APPROVED, source="solapi"),
            Template("NEW_ONE", "새 템플릿", "안녕하세요", TemplateStatus.INSPECTING, source="solapi")],
            "solapi", clock())
    assert report.added == ["NEW_ONE"] and report.changed == ["ORDER_OK: text or buttons changed"]
    with ws.sessions.begin() as session:
        report = templates.sync(session, [
            Template("NEW_ONE", "새 템플릿", "안녕하세요", TemplateStatus.REJECTED, comment="문구 수정 필요",
                     source="solapi")], "solapi", clock())
    assert report.changed == ["NEW_ONE: inspecting -> rejected"] and report.removed == ["ORDER_OK"]
    assert {t.code for t in ws.kakao_templates()} == {"NEW_ONE", "PENDING_ONE"}
    assert ws.remove_kakao_template("PENDING_ONE") and not ws.remove_kakao_template("PENDING_ONE")


def test_an_alimtalk_through_the_sandbox_records_what_the_person_reads(kakao_ws: Workspace) -> None:
    result = kakao_ws.send_now("alimtalk", "010-1234-5678", template="ORDER_OK", variables=VALUES)
    assert result.sent and result.provider == "sandbox"
    recorded = kakao_ws.outbox(channel="alimtalk")[0]
    assert recorded["to"] == "+821012345678"
    assert recorded["message"]["rendered"]["text"] == "홍길동님, 주문(A-1)이 접수되었습니다.\n결제 금액: 39,000원"
    assert recorded["message"]["rendered"]["fallback"]["type"] == "SMS"
    refused = kakao_ws.send_now("alimtalk", "010-1234-5678", template="ORDER_OK", variables={"이름": "홍길동"})
    assert not refused.sent and refused.outcome is None and len(kakao_ws.outbox()) == 1


def test_someone_unreachable_on_kakao_gets_the_fallback_straight_away(kakao_ws: Workspace) -> None:
    ws = kakao_ws
    ws.identify("u1", {"phone": "010-2222-3333"})
    with ws.sessions.begin() as session:
        from nudgekit.store.state import Profile

        session.get(Profile, "u1").kakao_reachable = False
    result = ws.send_now("alimtalk", "01022223333", profile_id="u1", template="ORDER_OK", variables=VALUES)
    assert result.sent and result.outcome is None and "unreachable on Kakao" in result.note
    assert result.fallback.outcome.sent and result.fallback.provider == "sandbox"
    [sms] = ws.outbox()
    assert sms["channel"] == "sms" and sms["type"] == "SMS" and sms["message"]["text"].startswith("홍길동님")
    assert sms["message_id"].endswith(":sms")
    silent = ws.send_now("alimtalk", "01022223333", profile_id="u1", template="ORDER_OK", variables=VALUES,
                         fallback=False)
    assert not silent.sent and "no fallback" in silent.note


def test_one_brand_message_per_recipient_per_korean_day(kakao_ws: Workspace, clock: FakeClock) -> None:
    ws = kakao_ws
    clock.now = kst(10, 0)
    first = ws.send_now("brand_message", "010-1234-5678", text="겨울 세일", message_id="b-1")
    assert first.sent
    again = ws.send_now("brand_message", "010-1234-5678", text="겨울 세일", message_id="b-1")
    assert again.sent and again.outcome.detail == "already recorded"
    other = ws.send_now("brand_message", "010-1234-5678", text="다른 광고", message_id="b-2")
    assert not other.sent and "one a day" in other.note
    assert ws.send_now("brand_message", "010-9999-0000", text="다른 광고", message_id="b-3").sent
    clock.now = kst(20, 55)
    late = ws.send_now("brand_message", "010-5555-0000", text="겨울 세일", message_id="b-4")
    assert not late.sent and late.checked.problems[0].code == "outside_sending_hours"
    clock.now = datetime(2026, 11, 25, 8, 0, tzinfo=brand.KOREA)
    assert ws.send_now("brand_message", "010-1234-5678", text="다른 광고", message_id="b-2").sent


def test_kakao_from_the_command_line(kakao_ws: Workspace, clock: FakeClock) -> None:
    home = kakao_ws.settings.home
    kakao_ws.close()
    runner = CliRunner()

    def nudge(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, [*args, "--home", str(home)])

    added = nudge("kakao", "templates", "add", "SHIP", "--text", "#{이름}님, 상품이 출발했습니다.", "--status", "approved",
                  "--button", '{"type":"DS","name":"배송 조회"}', "--json")
    assert added.exit_code == 0 and json.loads(added.stdout)["variables"] == ["이름"]
    listed = json.loads(nudge("kakao", "templates", "list", "--json").stdout)
    assert [t["code"] for t in listed] == ["ORDER_OK", "SHIP"]
    checked = nudge("message", "check", "--channel", "alimtalk", "--template", "SHIP", "--var", "이름=홍길동", "--json")
    assert checked.exit_code == 0 and json.loads(checked.stdout)["rendered"]["text"] == "홍길동님, 상품이 출발했습니다."
    wrong = nudge("message", "check", "--channel", "alimtalk", "--template", "SHIP", "--var", "이름=홍길동",
                  "--text", "홍길동님, 상품 출발!")
    assert wrong.exit_code == 1 and "differs from the approved template" in wrong.output
    assert "--var: write name=value" in nudge("message", "check", "--channel", "alimtalk", "--template", "SHIP",
                                              "--var", "이름").output
    sent = nudge("message", "send", "--channel", "alimtalk", "--to", "01012345678", "--template", "SHIP", "--var",
                 "이름=홍길동")
    assert sent.exit_code == 0 and "accepted by sandbox" in sent.output
    brand_check = nudge("message", "check", "--channel", "brand_message", "--text", "세일", "--targeting", "M", "--json")
    assert {p["code"] for p in json.loads(brand_check.stdout)["problems"]} >= {"targeting_not_allowed"}
    sync = nudge("kakao", "templates", "sync")
    assert sync.exit_code == 2 and "[providers] alimtalk = 'sandbox'" in sync.output
    assert nudge("kakao", "templates", "remove", "NOPE").exit_code == 1


def test_an_image_with_absurdly_many_pixels_is_refused_not_a_crash(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    picture(tmp_path / "big.png", (200, 200), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert brand_codes(format="image", image=tmp_path / "big.png") == ["image_too_big"]
    from nudgekit.channels.sms.message import SmsMessage
    from nudgekit.channels.sms.message import check as check_sms

    checked = check_sms(SmsMessage(text="사진", images=[tmp_path / "big.png"]), SENDER, PriceSettings())
    assert "image_too_big" in [p.code for p in checked.problems]


def test_the_ad_fallback_names_the_sender_and_ends_with_the_optout_line() -> None:
    def fallback(text: str, **fields: object) -> str:
        message = BrandMessage.model_validate({"text": "x", "fallback_text": text, **fields})
        return brand.check(message, SENDER, PriceSettings()).fallback.message.text

    assert fallback("(광고) 봄 세일") == "(광고)건강상점\n봄 세일\n무료거부 080-123-4567"
    button = {"type": "WL", "name": "보기", "url_mobile": "https://shop.example/s"}
    assert fallback("봄 세일\n무료거부 080-123-4567", buttons=[button]) == \
        "(광고)건강상점\n봄 세일\nhttps://shop.example/s\n무료거부 080-123-4567"
    blank = brand.check(BrandMessage(text="x", fallback_text="   "), SENDER, PriceSettings())
    assert ("fallback.text", "empty") in [(p.field, p.code) for p in blank.problems]


def test_a_message_id_is_bounded(kakao_ws: Workspace) -> None:
    with pytest.raises(FieldError, match="1 to 200"):
        kakao_ws.send_now("sms", "010-1234-5678", text="x", message_id="m" * 201)


def test_button_link_variables_are_required_and_the_filled_links_checked() -> None:
    template = Template("TRACK", "배송 조회", "#{이름}님, 상품이 출발했습니다.", TemplateStatus.APPROVED, (
        templates.KakaoButton(type="WL", name="배송 조회", url_mobile="https://#{택배사}/t/#{송장}"),))
    assert template.variables == ["이름", "택배사", "송장"]

    def codes(values: dict[str, str]) -> list[tuple[str, str]]:
        checked = check_alimtalk(AlimtalkMessage(template="TRACK", variables=values), template, SENDER, PriceSettings())
        return [(p.field, p.code) for p in checked.problems]

    assert codes({"이름": "민지", "택배사": "track.example", "송장": "123"}) == []
    assert codes({"이름": "민지", "택배사": "track.example"}) == [("variables.송장", "missing_variable")]
    assert codes({"이름": "민지", "택배사": "", "송장": "123"}) == [("buttons[1]", "bad_url")]
    filled = check_alimtalk(AlimtalkMessage(template="TRACK", variables={"이름": "민지", "택배사": "t.example",
                                                                         "송장": "9"}), template, SENDER, PriceSettings())
    assert filled.rendered["buttons"][0]["url_mobile"] == "https://t.example/t/9"
    assert not filled.warnings


def test_the_label_added_to_an_ad_fallback_subject_is_named_when_it_overflows() -> None:
    checked = brand.check(BrandMessage(text="x", fallback_text="봄 세일 " * 30, fallback_subject="가" * 20), SENDER,
                          PriceSettings())
    [problem] = [p for p in checked.problems if p.code == "subject_too_long"]
    assert problem.field == "fallback.subject" and "(광고)" in problem.en and "17 Hangul" in problem.en


def test_a_sender_name_carriers_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot carry: 😀"):
        SenderSettings(name="건강상점 😀")
    assert SenderSettings(name="  ").name is None
