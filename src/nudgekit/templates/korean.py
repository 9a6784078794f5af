"""Korean for templates: the particle (조사) that fits the word before it, won amounts, the 님 honorific and
dates as Korean messages write them.

A particle pair (은/는, 이/가, 을/를, 과/와, 으로/로 ...) is chosen by whether the word, as it is read aloud,
ends in a final consonant (받침) — and, for 으로/로, whether that consonant is ㄹ. Hangul is read from the
syllable itself; numbers as Koreans read them in Sino-Korean (3 삼, 10 십, 1,000 천, 20,000 이만); capitalised
abbreviations letter by letter (URL 유알엘); other Latin words by how their ending is usually written in Hangul
(iPhone 아이폰, shop 샵, apple 애플, Nike 나이키).

:TRICKY: English spelling does not settle every reading (set 세트 but robot 로봇); the rules take the common
loanword form, `READINGS` keeps the exceptions worth knowing, and a word nothing reads (an emoji, empty text)
gets both forms, "을(를)", as Korean software has always done.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

NONE, GIYEOK, NIEUN, DIGEUT, RIEUL, MIEUM, BIEUP, SIOT, IEUNG = 0, 1, 4, 7, 8, 16, 17, 19, 21
"""Final consonants (종성) by their index in a Hangul syllable; NONE: the syllable ends in a vowel."""

PAIRS: tuple[tuple[str, str], ...] = (
    ("은", "는"), ("이", "가"), ("을", "를"), ("과", "와"), ("으로", "로"), ("이에요", "예요"),
    ("아", "야"), ("이랑", "랑"), ("이나", "나"), ("이라고", "라고"), ("이라는", "라는"), ("이며", "며"),
)
"""Each particle as written after a final consonant, then after a vowel."""
_PAIR_OF = {form: pair for pair in PAIRS for form in pair}

DIGITS = (IEUNG, RIEUL, NONE, MIEUM, NONE, NONE, GIYEOK, RIEUL, RIEUL, NONE)
"""영 일 이 삼 사 오 육 칠 팔 구."""
PLACES = ((16, IEUNG), (12, NONE), (8, GIYEOK), (4, NIEUN), (3, NIEUN), (2, GIYEOK), (1, BIEUP))
"""Trailing zeros -> the unit read last: 경, 조, 억, 만, 천, 백, 십."""
SOUNDING = {"l": RIEUL, "m": MIEUM, "n": NIEUN}
"""Latin letters that end a word in a final consonant (mall 몰, cream 크림, coupon 쿠폰; game 게임 too)."""
LETTERS = {**SOUNDING, "r": RIEUL}
"""Latin letters read by name (엘, 엠, 엔, 알); every other letter's name ends in a vowel."""
READINGS = {
    "check": NONE, "set": NONE, "kit": NONE, "hit": NONE, "bit": NONE, "seat": NONE, "boat": NONE,
    "good": SIOT, "bag": GIYEOK, "big": GIYEOK, "talk": GIYEOK, "walk": NONE, "milk": NONE, "type": BIEUP,
    "jeep": NONE, "theme": NONE,
}
"""Latin words (lower-case; the last part of a joined name too: "KakaoTalk") the spelling rules read wrongly."""
SYMBOLS = {"%": NONE, "℃": NONE, "°": NONE, "+": NONE, "&": NONE, "#": NONE}
"""Signs read as words: 퍼센트, 도, 플러스, 앤드, 샵."""
UNITS = {"g": MIEUM, "kg": MIEUM, "mg": MIEUM}
"""Units after a number read with a final consonant (그램); the others (km 킬로미터, ml 밀리리터, GB 기가바이트)
end in a vowel."""
VOWELS = set("aeiou")
_TRAILING = re.compile(r"(\s|[)\]}>\"'”’」』〉》.,!?~…·:;*]|\([^()]*\))+$")
_NUMBER = re.compile(r"(\d[\d,]*)(\.\d+)?$")
_LATIN = re.compile(r"[A-Za-z]+$")
_UNIT = re.compile(r"\d\s*([A-Za-z]{1,2})$")
_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
WEEKDAYS_KO = "월화수목금토일"
WEEKDAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
"""Written out, not strftime's %a/%b, which follow the process's locale (a server set to ko_KR)."""


def final(word: object) -> int | None:
    """The final consonant of the word as read aloud (NONE when it ends in a vowel), or None when nothing
    in it can be read."""
    text = _TRAILING.sub("", str(word))
    if not text:
        return None
    last = text[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28
    if "ㄱ" <= last <= "ㅎ":  # a lone consonant, read by its name (기역, 리을 ...)
        return RIEUL if last == "ㄹ" else GIYEOK
    if "ㅏ" <= last <= "ㅣ":
        return NONE
    if last in SYMBOLS:
        return SYMBOLS[last]
    if number := _NUMBER.search(text):
        return _number_final(number.group(1), number.group(2))
    if unit := _UNIT.search(text):
        return UNITS.get(unit.group(1).lower(), NONE)
    if latin := _LATIN.search(text):
        return _latin_final(latin.group(0))
    return None


def _number_final(whole: str, fraction: str | None) -> int:
    if fraction:
        return DIGITS[int(fraction[-1])]
    digits = whole.replace(",", "")
    if int(digits) == 0:
        return IEUNG
    zeros = len(digits) - len(digits.rstrip("0"))
    if zeros == 0:
        return DIGITS[int(digits[-1])]
    return next(sound for at_least, sound in PLACES if zeros >= at_least)


def _latin_final(word: str) -> int:
    if word.isupper() and (len(word) <= 3 or not VOWELS & set(word.lower())):
        return LETTERS.get(word[-1].lower(), NONE)  # spelled out: URL, SMS, HTML
    lower = word.lower()
    parts = _PARTS.findall(word)
    for candidate in (lower, parts[-1].lower() if parts else lower):
        if candidate in READINGS:
            return READINGS[candidate]
    return _spelling_final(lower)


def _spelling_final(w: str) -> int:
    last, before = w[-1], w[-2] if len(w) > 1 else ""
    if w.endswith("ng"):
        return IEUNG
    if last == "e" and before and before not in VOWELS:
        return SOUNDING.get(before, NONE)  # game 게임, phone 폰, apple 애플
    if last in SOUNDING:
        return SOUNDING[last]
    if w.endswith("ck") or (last == "c" and before in VOWELS):
        return GIYEOK  # click 클릭, music 뮤직
    if before in VOWELS or (last == before and len(w) > 2 and w[-3] in VOWELS):  # a short vowel before it
        return {"k": GIYEOK, "p": BIEUP, "b": BIEUP, "t": SIOT}.get(last, NONE)  # book 북, shop 샵, app 앱, chat 챗
    return NONE


def particle(word: object, wanted: str) -> str:
    """The form of the particle `wanted` (either form, or both: "을", "를", "을/를", "을(를)") that follows
    `word`."""
    key = re.sub(r"[\s/()]", "", wanted)
    pair = _PAIR_OF.get(key) or next((p for p in PAIRS if key in (p[0] + p[1], p[1] + p[0])), None)
    if pair is None:
        known = ", ".join(f"{a}/{b}" for a, b in PAIRS)
        raise ValueError(f"{wanted!r} is not a particle this filter knows (it knows {known})")
    after_consonant, after_vowel = pair
    sound = final(word)
    if sound is None:
        if after_consonant.endswith(after_vowel):  # (으)로, (이)랑, (이)나
            return f"({after_consonant[:-len(after_vowel)]}){after_vowel}"
        return f"{after_consonant}({after_vowel})"  # 을(를), 이에요(예요)
    if after_consonant == "으로":
        return "로" if sound in (NONE, RIEUL) else "으로"
    return after_vowel if sound == NONE else after_consonant


def josa(word: object, wanted: str) -> str:
    """The word with its particle: josa("iPhone", "을") -> "iPhone을", josa("3개", "를") -> "3개를"."""
    return f"{word}{particle(word, wanted)}"


def amount(value: object) -> Decimal:
    """A money amount from a number or numeric text ("12900", "12,900"), or ValueError saying why not."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an amount of money")
    try:
        found = Decimal(str(value).replace(",", "").strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount of money") from None
    if not found.is_finite():
        raise ValueError(f"{value!r} is not an amount of money")
    return found


def won(value: object, *, locale: str = "ko", text_message: bool = False) -> str:
    """12900 -> "12,900원" (in English "₩12,900", or "KRW 12,900" in a text message: the carriers' character
    set has no ₩); won have no smaller unit, so amounts round to whole won."""
    whole = int(amount(value).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    if locale == "ko":
        return f"{whole:,}원"
    return f"KRW {whole:,}" if text_message else f"₩{whole:,}"


def nim(name: object) -> str:
    """The name with the honorific 님 (not twice); ValueError for an empty name — "님" alone is the empty
    greeting this exists to prevent."""
    text = str(name).strip()
    if not text:
        raise ValueError("the name is empty")
    return text if text.endswith("님") else f"{text}님"


def when(value: object, zone: ZoneInfo | None = None) -> datetime | date:
    """A date or moment from a date, datetime or ISO text; a moment with a zone is shown in `zone`."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text or " " in text \
                else date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a date") from None
    if isinstance(value, datetime):
        return value.astimezone(zone) if zone is not None and value.tzinfo is not None else value
    if isinstance(value, date):
        return value
    raise ValueError(f"{value!r} is not a date")


def korean_date(value: object, zone: ZoneInfo | None = None, *, year: bool = False, weekday: bool = True,
                time: bool = False) -> str:
    """"11월 22일 (일)", with year "2026년 11월 22일 (일)", with time "11월 22일 (일) 오후 3시 30분"."""
    moment = when(value, zone)
    text = f"{moment.year}년 " if year else ""
    text += f"{moment.month}월 {moment.day}일"
    if weekday:
        text += f" ({WEEKDAYS_KO[moment.weekday()]})"
    if time and isinstance(moment, datetime):
        text += " " + korean_time(moment)
    return text


def korean_time(moment: datetime) -> str:
    """"오전 9시", "오후 3시 30분", "낮 12시", "밤 12시"."""
    hour, minute = moment.hour, moment.minute
    if hour == 12:
        text = "낮 12시"
    elif hour == 0:
        text = "밤 12시"
    else:
        text = f"{'오전' if hour < 12 else '오후'} {hour if hour < 12 else hour - 12}시"
    return f"{text} {minute}분" if minute else text


def english_date(value: object, zone: ZoneInfo | None = None, *, year: bool = False, weekday: bool = True,
                 time: bool = False) -> str:
    """"Sun, Nov 22", with year "Sun, Nov 22, 2026", with time "... 3:30 PM"."""
    moment = when(value, zone)
    text = f"{WEEKDAYS_EN[moment.weekday()]}, " if weekday else ""
    text += f"{MONTHS_EN[moment.month - 1]} {moment.day}"
    if year:
        text += f", {moment.year}"
    if time and isinstance(moment, datetime):
        text += f" {(moment.hour % 12) or 12}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    return text
