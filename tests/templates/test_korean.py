"""The Korean filters against cases as Koreans write them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from nudgekit.templates import korean

# word, 을/를, 은/는, 으로/로, 이에요/예요 — as a Korean reader would write them after the word
CASES = [
    ("사과", "사과를", "사과는", "사과로", "사과예요"),          # ends in a vowel
    ("민수", "민수를", "민수는", "민수로", "민수예요"),
    ("책", "책을", "책은", "책으로", "책이에요"),              # ends in ㄱ
    ("지민", "지민을", "지민은", "지민으로", "지민이에요"),
    ("서울", "서울을", "서울은", "서울로", "서울이에요"),       # ㄹ: 로, not 으로
    ("연필", "연필을", "연필은", "연필로", "연필이에요"),
    ("쿠팡", "쿠팡을", "쿠팡은", "쿠팡으로", "쿠팡이에요"),
    ("3개", "3개를", "3개는", "3개로", "3개예요"),              # the counter, not the number, is read last
    ("11번가", "11번가를", "11번가는", "11번가로", "11번가예요"),
    ("3", "3을", "3은", "3으로", "3이에요"),                    # 삼
    ("2", "2를", "2는", "2로", "2예요"),                        # 이
    ("1", "1을", "1은", "1로", "1이에요"),                      # 일 (ㄹ)
    ("6", "6을", "6은", "6으로", "6이에요"),                    # 육
    ("8", "8을", "8은", "8로", "8이에요"),                      # 팔
    ("10", "10을", "10은", "10으로", "10이에요"),               # 십
    ("100", "100을", "100은", "100으로", "100이에요"),          # 백
    ("1,000", "1,000을", "1,000은", "1,000으로", "1,000이에요"),  # 천
    ("20000", "20000을", "20000은", "20000으로", "20000이에요"),  # 이만
    ("300000000", "300000000을", "300000000은", "300000000으로", "300000000이에요"),  # 삼억
    ("1000000000000", "1000000000000를", "1000000000000는", "1000000000000로", "1000000000000예요"),  # 일조
    ("0", "0을", "0은", "0으로", "0이에요"),                    # 영
    ("3.5", "3.5를", "3.5는", "3.5로", "3.5예요"),              # 삼 점 오
    ("30%", "30%를", "30%는", "30%로", "30%예요"),              # 퍼센트
    ("5kg", "5kg을", "5kg은", "5kg으로", "5kg이에요"),          # 킬로그램
    ("2L", "2L를", "2L는", "2L로", "2L예요"),                   # 리터
    ("iPhone", "iPhone을", "iPhone은", "iPhone으로", "iPhone이에요"),  # 아이폰
    ("Nike", "Nike를", "Nike는", "Nike로", "Nike예요"),          # 나이키
    ("apple", "apple을", "apple은", "apple로", "apple이에요"),   # 애플 (ㄹ)
    ("Google", "Google을", "Google은", "Google로", "Google이에요"),  # 구글
    ("game", "game을", "game은", "game으로", "game이에요"),      # 게임
    ("shop", "shop을", "shop은", "shop으로", "shop이에요"),      # 샵
    ("app", "app을", "app은", "app으로", "app이에요"),           # 앱
    ("book", "book을", "book은", "book으로", "book이에요"),      # 북
    ("click", "click을", "click은", "click으로", "click이에요"),  # 클릭
    ("chat", "chat을", "chat은", "chat으로", "chat이에요"),      # 챗
    ("Samsung", "Samsung을", "Samsung은", "Samsung으로", "Samsung이에요"),  # 삼성
    ("coupon", "coupon을", "coupon은", "coupon으로", "coupon이에요"),  # 쿠폰
    ("pizza", "pizza를", "pizza는", "pizza로", "pizza예요"),      # 피자
    ("store", "store를", "store는", "store로", "store예요"),      # 스토어
    ("card", "card를", "card는", "card로", "card예요"),           # 카드
    ("news", "news를", "news는", "news로", "news예요"),           # 뉴스
    ("set", "set를", "set는", "set로", "set예요"),                # 세트
    ("KakaoTalk", "KakaoTalk을", "KakaoTalk은", "KakaoTalk으로", "KakaoTalk이에요"),  # 카카오톡
    ("NAVER", "NAVER를", "NAVER는", "NAVER로", "NAVER예요"),      # 네이버: a word, not letters
    ("URL", "URL을", "URL은", "URL로", "URL이에요"),              # 유알엘
    ("ATM", "ATM을", "ATM은", "ATM으로", "ATM이에요"),            # 에이티엠
    ("KT", "KT를", "KT는", "KT로", "KT예요"),                     # 케이티
    ("LG", "LG를", "LG는", "LG로", "LG예요"),                     # 엘지
    ("HTML", "HTML을", "HTML은", "HTML로", "HTML이에요"),         # 에이치티엠엘
    ("갤럭시 S24", "갤럭시 S24를", "갤럭시 S24는", "갤럭시 S24로", "갤럭시 S24예요"),  # 이십사
    ("민수(VIP)", "민수(VIP)를", "민수(VIP)는", "민수(VIP)로", "민수(VIP)예요"),  # the word outside the brackets
    ("“특가”", "“특가”를", "“특가”는", "“특가”로", "“특가”예요"),   # closing quotes are not read
    ("ㅋ", "ㅋ을", "ㅋ은", "ㅋ으로", "ㅋ이에요"),                  # 키읔
]


@pytest.mark.parametrize(("word", "eul", "eun", "euro", "ieyo"), CASES)
def test_particles_follow_the_word_as_it_is_read(word: str, eul: str, eun: str, euro: str, ieyo: str) -> None:
    assert korean.josa(word, "을") == eul
    assert korean.josa(word, "를") == eul
    assert korean.josa(word, "은/는") == eun
    assert korean.josa(word, "(으)로") == euro
    assert korean.josa(word, "이에요") == ieyo


@pytest.mark.parametrize(("word", "wanted", "expected"), [
    ("민수", "이/가", "민수가"), ("지민", "가", "지민이"), ("사과", "와", "사과와"), ("책", "와", "책과"),
    ("민수", "아", "민수야"), ("지민", "야", "지민아"), ("친구", "이랑", "친구랑"), ("동생", "랑", "동생이랑"),
    ("커피", "이나", "커피나"), ("빵", "나", "빵이나"), ("넛지", "이라는", "넛지라는"), ("쿠폰", "라고", "쿠폰이라고"),
])
def test_every_pair_the_filter_knows(word: str, wanted: str, expected: str) -> None:
    assert korean.josa(word, wanted) == expected


@pytest.mark.parametrize(("word", "wanted", "expected"), [
    ("😀", "을", "😀을(를)"), ("", "은", "은(는)"), ("😀", "으로", "😀(으)로"), ("!!", "이랑", "!!(이)랑"),
    ("😀", "이에요", "😀이에요(예요)"),
])
def test_a_word_nothing_reads_gets_both_forms(word: str, wanted: str, expected: str) -> None:
    assert korean.josa(word, wanted) == expected


def test_an_unknown_particle_says_which_ones_exist() -> None:
    with pytest.raises(ValueError, match="을/를"):
        korean.josa("책", "에게")


@pytest.mark.parametrize(("value", "ko", "en"), [
    (12900, "12,900원", "₩12,900"), ("12900", "12,900원", "₩12,900"), ("1,200,000", "1,200,000원", "₩1,200,000"),
    (0, "0원", "₩0"), (-5000, "-5,000원", "₩-5,000"), (9999.5, "10,000원", "₩10,000"), (129.4, "129원", "₩129"),
])
def test_won(value: object, ko: str, en: str) -> None:
    assert korean.won(value) == ko
    assert korean.won(value, locale="en") == en


@pytest.mark.parametrize("value", ["abc", "", None, True, "nan", "inf"])
def test_won_refuses_what_is_not_money(value: object) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        korean.won(value)


def test_nim_adds_the_honorific_once_and_refuses_an_empty_name() -> None:
    assert korean.nim("민수") == "민수님"
    assert korean.nim(" 김민수 ") == "김민수님"
    assert korean.nim("민수님") == "민수님"
    with pytest.raises(ValueError, match="empty"):
        korean.nim("  ")


SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    (date(2026, 11, 22), {}, "11월 22일 (일)"),
    ("2026-11-23", {}, "11월 23일 (월)"),
    (date(2026, 11, 22), {"year": True}, "2026년 11월 22일 (일)"),
    (date(2026, 11, 22), {"weekday": False}, "11월 22일"),
    (datetime(2026, 11, 22, 6, 30, tzinfo=UTC), {"time": True}, "11월 22일 (일) 오후 3시 30분"),  # in Seoul
    ("2026-11-21T15:00:00Z", {"time": True}, "11월 22일 (일) 밤 12시"),
    (datetime(2026, 11, 22, 3, 0, tzinfo=UTC), {"time": True}, "11월 22일 (일) 낮 12시"),
    (datetime(2026, 11, 22, 9, 5), {"time": True}, "11월 22일 (일) 오전 9시 5분"),  # no zone: as written
])
def test_korean_dates(value: object, kwargs: dict[str, bool], expected: str) -> None:
    assert korean.korean_date(value, SEOUL, **kwargs) == expected


def test_english_dates_and_bad_dates() -> None:
    assert korean.english_date(date(2026, 11, 22)) == "Sun, Nov 22"
    assert korean.english_date(datetime(2026, 11, 22, 6, 30, tzinfo=UTC), SEOUL, year=True, time=True) == \
        "Sun, Nov 22, 2026 3:30 PM"
    with pytest.raises(ValueError, match="not a date"):
        korean.korean_date("next tuesday")
    with pytest.raises(ValueError, match="not a date"):
        korean.korean_date(42)
