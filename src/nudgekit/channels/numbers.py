"""Korean sender numbers (발신번호) and free opt-out numbers (080), as carriers and providers accept them.

Only pre-registered numbers the sender owns may send (전기통신사업법 제84조의2); 15YY/16YY/18YY
representative numbers have exactly 8 digits, and forwarding numbers (050X) are refused (CHANNEL_RULES C).
"""

from __future__ import annotations

import functools
import re

import phonenumbers

SEPARATORS = re.compile(r"[\s\-.()]")
REPRESENTATIVE = re.compile(r"1[568]\d{2}")


def digits_of(number: str) -> str:
    """The number as carriers want it: digits only, +82 written as the domestic 0."""
    plain = SEPARATORS.sub("", number)
    if plain.startswith("+82"):
        plain = "0" + plain[3:].removeprefix("0")
    if not plain.isdigit():
        raise ValueError(f'"{number}" is not a phone number: use digits, e.g. 0212345678 or 1588-1234')
    return plain


def sender_number(number: str) -> str:
    """A number that may be registered as a sender, in digits; ValueError saying why not."""
    plain = digits_of(number)
    if REPRESENTATIVE.match(plain):
        if len(plain) != 8:
            raise ValueError(f'"{number}": a {plain[:2]}YY representative number has 8 digits, e.g. 1588-1234')
        return plain
    if plain.startswith("050"):
        raise ValueError(f'"{number}": 050 forwarding numbers cannot be sender numbers (carriers refuse them)')
    if not plain.startswith("0") or not 9 <= len(plain) <= 11:
        raise ValueError(f'"{number}" is not a Korean phone number (e.g. 0212345678, 01012345678, 1588-1234)')
    if not phonenumbers.is_valid_number(phonenumbers.parse(plain, "KR")):
        raise ValueError(f'"{number}" is not a Korean phone number in use (check the area code and length)')
    return plain


def optout_number(number: str) -> str:
    """A free opt-out number: 080 and 7 or 8 more digits."""
    plain = digits_of(number)
    if not plain.startswith("080") or len(plain) not in (10, 11):
        raise ValueError(f'"{number}" is not a free 080 number (080 and 7 or 8 digits, e.g. 080-123-4567)')
    return plain


@functools.lru_cache(maxsize=256)
def spelled(number: str) -> str:
    """Digits with the usual hyphens, as they are written in a message: 080-123-4567, 02-1234-5678."""
    if REPRESENTATIVE.match(number):
        return f"{number[:4]}-{number[4:]}"
    parsed = phonenumbers.parse(number, "KR")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL).replace(" ", "-")
