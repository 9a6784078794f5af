"""Text messages: bytes counted as Korean carriers count them, SMS / LMS / MMS chosen at the boundaries, and
every refusal a carrier or provider would give, with its reason, before anything is sent."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from nudgekit.channels.sms.message import SmsMessage, carrier_bytes, check
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.vocabulary import SmsType

SENDER = SenderSettings(name="뉴지샵", sms_numbers=["02-1234-5678", "1588-1234"], optout_080="080-111-2222")
PRICES = PriceSettings(sms=11, lms=33, mms=99)
AD_TAIL = "\n무료거부 080-111-2222"


def checked(text: str, **fields: object):  # type: ignore[no-untyped-def]
    return check(SmsMessage(text=text, **fields), SENDER, PRICES)


def codes(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.code for p in result.problems]


@pytest.mark.parametrize(("text", "size", "kind"), [
    ("가" * 45, 90, SmsType.SMS),            # 45 Hangul: exactly an SMS
    ("가" * 45 + "a", 91, SmsType.LMS),      # one ASCII byte over
    ("a" * 90, 90, SmsType.SMS),
    ("a" * 91, 91, SmsType.LMS),
    ("가" * 44 + "ab", 90, SmsType.SMS),
    ("가" * 1000, 2000, SmsType.LMS),        # exactly an LMS
    ("줄\r\n" * 30, 90, SmsType.SMS),         # CRLF is sent as one LF: 3 bytes a line
])
def test_the_type_follows_the_carrier_byte_count(text: str, size: int, kind: SmsType) -> None:
    result = checked(text)
    assert (result.sizes["text"].value, result.type, result.ok) == (size, kind.value, True)
    assert result.cost_krw == {SmsType.SMS: 11, SmsType.LMS: 33}[kind]


def test_one_byte_over_an_lms_is_refused_with_how_much_to_cut() -> None:
    result = checked("가" * 1000 + "!")
    assert codes(result) == ["too_long"]
    assert "by 1 bytes" in result.problems[0].en and "1바이트" in result.problems[0].ko


@given(st.text(alphabet=st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + ["가", "힝", "ㄱ", "한", "\n"]),
               max_size=200))
def test_ascii_is_one_byte_and_korean_two(text: str) -> None:
    assert carrier_bytes(text).bytes == sum(1 if ord(c) < 0x80 else 2 for c in text)


def test_emoji_and_other_scripts_are_refused_and_named() -> None:
    result = checked("오늘만 할인 😀🎁 ✓ مرحبا")
    assert codes(result) == ["unsupported_characters"]
    assert "😀" in result.problems[0].en and "🎁" in result.problems[0].ko


def test_hangul_outside_ks_x_1001_is_sent_with_a_warning() -> None:
    result = checked("똠방각하 뷁")
    assert result.ok and result.sizes["text"].value == 11
    assert [w.code for w in result.warnings] == ["uncommon_hangul"]
    assert "똠" in result.warnings[0].en and "뷁" in result.warnings[0].en and "방" not in result.warnings[0].en


def test_a_subject_makes_an_lms_and_has_its_own_limit() -> None:
    assert checked("짧은 글", subject="공지").type == "LMS"
    long_subject = checked("본문", subject="가" * 21)
    assert codes(long_subject) == ["subject_too_long"] and long_subject.sizes["subject"].value == 42
    assert codes(checked("본문", subject="제목", type="SMS")) == ["sms_has_no_subject"]


def test_a_forced_sms_that_is_too_long_says_so() -> None:
    result = checked("가" * 46, type="SMS")
    assert codes(result) == ["too_long_for_sms"] and "by 2 bytes" in result.problems[0].en


def _jpeg(path: Path, size: tuple[int, int], *, noise: bool = False, kind: str = "JPEG") -> Path:
    image = Image.new("RGB", size, (200, 30, 30))
    if noise:  # incompressible pixels make a large file
        rng = random.Random(7)
        image = Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    buffer = io.BytesIO()
    image.save(buffer, kind, quality=95)
    path.write_bytes(buffer.getvalue())
    return path


def test_images_make_an_mms_within_the_limits(tmp_path: Path) -> None:
    result = checked("사진을 보세요", images=[_jpeg(tmp_path / "a.jpg", (640, 480))])
    assert (result.type, result.ok, result.cost_krw) == ("MMS", True, 99)
    assert 0 < result.sizes["images"].value < 300_000


def test_each_image_rule_is_checked(tmp_path: Path) -> None:
    png = _jpeg(tmp_path / "a.png", (100, 100), kind="PNG")
    wide = _jpeg(tmp_path / "wide.jpg", (1200, 800))
    heavy = _jpeg(tmp_path / "heavy.jpg", (600, 600), noise=True)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = checked("사진", images=[png, wide, heavy, text, tmp_path / "missing.jpg"])
    assert codes(result) == ["too_many_images", "image_not_jpeg", "image_too_big", "image_too_large",
                             "not_an_image", "image_unreadable"]
    assert [p.field for p in result.problems][1:] == ["images[1]", "images[2]", "images[3]", "images[4]", "images[5]"]


def test_three_images_that_add_up_past_800_kb_are_refused(tmp_path: Path) -> None:
    images = [_jpeg(tmp_path / f"{i}.jpg", (480, 480), noise=True) for i in range(3)]
    sizes = [p.stat().st_size for p in images]
    assert all(s <= 300_000 for s in sizes) and sum(sizes) > 800_000, sizes
    assert codes(checked("사진", images=images)) == ["images_too_large"]


def test_images_on_an_lms_and_an_mms_without_images_are_refused(tmp_path: Path) -> None:
    assert codes(checked("글", images=[_jpeg(tmp_path / "a.jpg", (10, 10))], type="LMS")) == ["images_need_mms"]
    assert codes(checked("글", type="MMS")) == ["mms_without_image"]


def test_only_registered_sender_numbers_may_send() -> None:
    assert checked("안내", sender_number="1588-1234").ok
    assert checked("안내", sender_number="+82 2 1234 5678").ok
    unregistered = checked("안내", sender_number="02-9999-8888")
    assert codes(unregistered) == ["unregistered_sender_number"]
    assert "02-1234-5678, 1588-1234" in unregistered.problems[0].en
    assert codes(checked("안내", sender_number="0505-123-4567")) == ["bad_sender_number"]
    nobody = check(SmsMessage(text="안내"), SenderSettings(), PRICES)
    assert codes(nobody) == ["no_sender_number"]


def test_advertising_needs_the_exact_label_and_the_workspace_080_line() -> None:
    assert checked("(광고) 뉴지샵 겨울 세일" + AD_TAIL, ad=True).ok
    assert checked("(광고)뉴지샵 세일\n무료수신거부 0801112222", ad=True).ok
    assert checked("(광고)뉴지샵 세일\n[무료 수신거부]080-111-2222", ad=True).ok  # NHN's own form
    late = checked("(광고)뉴지샵 세일\n무료거부 080 111 2222\n2026", ad=True)  # the line ends at the number ...
    assert codes(late) == ["optout_line_not_last"] and "2026" not in late.problems[0].en  # ... and must come last
    assert codes(checked(" \n(광고) 뉴지샵 세일" + AD_TAIL, ad=True)) == ["ad_label_not_first"]
    for variant in ("[광고]", "(광 고)", "(광/고)", "광고", "(AD)"):
        assert codes(checked(f"{variant} 세일" + AD_TAIL, ad=True)) == ["ad_label_missing"], variant
    assert codes(checked("(광고) 세일", ad=True)) == ["optout_line_missing"]
    assert codes(checked("(광고) 세일\n수신거부 080-111-2222", ad=True)) == ["optout_line_missing"]  # 무료 is required
    wrong = checked("(광고) 세일\n무료거부 080-999-0000", ad=True)
    assert codes(wrong) == ["optout_number_mismatch"] and "080-111-2222" in wrong.problems[0].en
    no_080 = check(SmsMessage(text="(광고) 세일" + AD_TAIL, ad=True), SenderSettings(sms_numbers=["0212345678"]),
                   PRICES)
    assert codes(no_080) == ["no_optout_080"]


def test_an_advertising_lms_carries_the_label_in_its_subject_too() -> None:
    body = "(광고) 뉴지샵 세일" + AD_TAIL
    assert checked(body, subject="(광고) 겨울 세일", ad=True).ok
    assert codes(checked(body, subject="겨울 세일", ad=True)) == ["ad_label_missing"]
    assert checked("정보성 안내", subject="겨울 안내").ok  # informational: no label needed


def test_every_problem_is_said_in_english_and_korean(tmp_path: Path) -> None:
    result = checked("😀" + "가" * 1200, subject="가" * 30, ad=True, sender_number="02-0000-0000")
    assert len(result.problems) >= 5
    for p in result.problems:
        assert p.en and p.ko and any("가" <= ch <= "힣" for ch in p.ko), p
