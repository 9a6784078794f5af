import pytest

from nudgekit.profiles.contacts import FieldError, normalize_email, normalize_language, normalize_phone


@pytest.mark.parametrize("raw, e164", [
    ("010-1234-5678", "+821012345678"),
    ("01012345678", "+821012345678"),
    ("+82 10 1234 5678", "+821012345678"),
    ("02-312-3456", "+8223123456"),
    ("+1 415 555 2671", "+14155552671"),
])
def test_phone_numbers_become_e164_with_korea_as_default(raw: str, e164: str) -> None:
    assert normalize_phone(raw, "KR") == e164


@pytest.mark.parametrize("raw", ["010-1234", "hello", "+82 10", "12"])
def test_invalid_phone_numbers_are_refused_with_a_hint(raw: str) -> None:
    with pytest.raises(FieldError) as caught:
        normalize_phone(raw, "KR", "traits.phone")
    assert caught.value.field == "traits.phone" and raw in caught.value.reason


def test_email_is_checked_and_normalised() -> None:
    assert normalize_email("minji@Naver.COM") == "minji@naver.com"
    with pytest.raises(FieldError, match="not a valid email"):
        normalize_email("minji@@naver")


@pytest.mark.parametrize("raw, tag", [("ko", "ko"), ("ko_kr", "ko-KR"), ("en-US", "en-US"), ("zh-Hant-TW", "zh-Hant-TW")])
def test_language_tags_are_normalised(raw: str, tag: str) -> None:
    assert normalize_language(raw) == tag
