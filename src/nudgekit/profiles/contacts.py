"""Contact points checked at the edge: phone to E.164, email syntax, language tag, time zone."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError


class FieldError(ValueError):
    """A value we refuse, with the field it came in and a reason a marketer can act on."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def first_of(cls, exc: ValidationError, prefix: str = "") -> FieldError:
        """The first problem pydantic found, as a FieldError named `prefix` + its location."""
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        return cls(prefix + where, first["msg"].removeprefix("Value error, "))


MAX_ID_LENGTH = 255


def check_user_id(value: str, field: str = "user_id") -> None:
    if not value or not value.strip():
        raise FieldError(field, "a user id cannot be empty")
    if len(value) > MAX_ID_LENGTH:
        raise FieldError(field, f"a user id is at most {MAX_ID_LENGTH} characters; this one has {len(value)}")


def normalize_phone(value: object, region: str, field: str = "phone") -> str:
    return phonenumbers.format_number(parse_phone(value, region, field), phonenumbers.PhoneNumberFormat.E164)


def parse_phone(value: object, region: str, field: str = "phone") -> phonenumbers.PhoneNumber:
    """The number, if it is a valid phone number (FieldError naming the field if not)."""
    text = str(value).strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise FieldError(field, f'"{text}" is not a phone number ({exc._msg})') from exc
    if not phonenumbers.is_valid_number(number):
        raise FieldError(
            field,
            f'"{text}" is not a valid phone number for region {region}; '
            "write it like 010-1234-5678 or +82 10-1234-5678",
        )
    return number


def normalize_email(value: object, field: str = "email") -> str:
    text = str(value).strip()
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise FieldError(field, f'"{text}" is not a valid email address: {exc}') from exc


_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def normalize_language(value: object, field: str = "language") -> str:
    """BCP 47-ish tags: "ko", "ko-KR", "en_us" -> "en-US"."""
    text = str(value).strip()
    if not _LANGUAGE.match(text):
        raise FieldError(field, f'"{text}" is not a language tag; use e.g. ko, ko-KR or en-US')
    first, *rest = re.split(r"[-_]", text)
    parts = [first.lower()] + [p.upper() if len(p) == 2 else p for p in rest]
    return "-".join(parts)


def normalize_timezone(value: object, field: str = "timezone") -> str:
    text = str(value).strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise FieldError(field, f'"{text}" is not a time zone; use an IANA name like Asia/Seoul') from exc
    return text


def to_bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "yes", "y", "1", "t", "o", "동의"}:
        return True
    if text in {"false", "no", "n", "0", "f", "x", "거부", "미동의"}:
        return False
    raise FieldError(field, f'"{value}" is not yes/no; use true or false')
