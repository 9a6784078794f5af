"""Which channels exist and how each checks a message: one explicit table (an unknown channel fails loudly)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers
from pydantic import BaseModel, ValidationError

from nudgekit.channels.check import Checked
from nudgekit.channels.email import message as email
from nudgekit.channels.inapp import message as inapp
from nudgekit.channels.kakao import alimtalk, brand
from nudgekit.channels.kakao.templates import Template
from nudgekit.channels.push import message as push
from nudgekit.channels.sms import message as sms
from nudgekit.channels.webhook import message as webhook
from nudgekit.config import Settings
from nudgekit.profiles.contacts import FieldError, check_user_id, normalize_email, parse_phone
from nudgekit.vocabulary import MessageChannel


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at besides the message: the settings, the AlimTalk template registry, and the
    moment of sending (None: sending hours are not checked)."""

    settings: Settings
    template: Callable[[str], Template | None] = lambda code: None
    now: datetime | None = None


@dataclass(frozen=True)
class ChannelSpec:
    model: type[BaseModel]
    check: Callable[[Any, CheckContext], Checked]
    recipient: Callable[[str, Settings], str]
    """The recipient's address in its stored form (E.164 phone, normalised email, URL); FieldError if unusable."""


def _phone(value: str, settings: Settings) -> str:
    """Text messages and Kakao messages go to Korean mobile numbers: the providers' domestic APIs, the
    carriers' SMS / LMS / MMS and the price table are Korean (a landline cannot take an LMS or an AlimTalk)."""
    parsed = parse_phone(value, settings.phone_region, "to")
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.region_code_for_number(parsed) != "KR" or phonenumbers.number_type(parsed) not in (
            phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise FieldError("to", f"{number} is not a Korean mobile number (010-…): text messages and Kakao messages "
                         "go to Korean mobile phones only / 문자와 카카오 메시지는 국내 휴대폰 번호로만 보낼 수 있습니다")
    return number


def _url(value: str, settings: Settings) -> str:
    return value


def _token(value: str, settings: Settings) -> str:
    token = value.strip()
    if not token or len(token) > 4096 or any(c.isspace() for c in token):
        raise FieldError("to", "a push token is one word of at most 4,096 characters")
    return token


def _person(value: str, settings: Settings) -> str:
    """In-app messages and cards go to a user id, or to an anonymous visitor as `anon:<anonymousId>`."""
    person = value.strip()
    check_user_id(person, "to")
    return person


CHANNELS: dict[MessageChannel, ChannelSpec] = {
    MessageChannel.PUSH: ChannelSpec(push.PushMessage, lambda m, c: push.check(m, c.settings.prices), _token),
    MessageChannel.INAPP: ChannelSpec(inapp.InappMessage, lambda m, c: inapp.check_inapp(m, c.settings.prices),
                                      _person),
    MessageChannel.CARD: ChannelSpec(inapp.CardMessage, lambda m, c: inapp.check_card(m, c.settings.prices), _person),
    MessageChannel.ALIMTALK: ChannelSpec(
        alimtalk.AlimtalkMessage,
        lambda m, c: alimtalk.check(m, c.template(m.template), c.settings.sender, c.settings.prices), _phone),
    MessageChannel.BRAND_MESSAGE: ChannelSpec(
        brand.BrandMessage, lambda m, c: brand.check(m, c.settings.sender, c.settings.prices, c.now), _phone),
    MessageChannel.SMS: ChannelSpec(sms.SmsMessage, lambda m, c: sms.check(m, c.settings.sender, c.settings.prices),
                                    _phone),
    MessageChannel.EMAIL: ChannelSpec(email.EmailMessage,
                                      lambda m, c: email.check(m, c.settings.sender, c.settings.prices),
                                      lambda v, s: normalize_email(v, "to")),
    MessageChannel.WEBHOOK: ChannelSpec(webhook.WebhookMessage,
                                        lambda m, c: webhook.check(m, c.settings.webhook, c.settings.prices), _url),
}


def parse_message(channel: MessageChannel, fields: dict[str, Any]) -> BaseModel:
    """The channel's message model from plain fields (CLI options, API JSON); a field of the wrong shape, or
    one the channel does not have, is a FieldError."""
    spec = CHANNELS[channel]
    try:
        return spec.model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        errors = exc.errors()  # a field the channel does not have first: most often a typo of one it needs
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        if first["type"] == "extra_forbidden":
            raise FieldError(str(first["loc"][0]), f"{channel.value} messages have no such field") from None
        if first["type"] == "missing" and len(first["loc"]) == 1:
            raise FieldError(str(first["loc"][0]), f"{channel.value} messages need it") from None
        raise FieldError.first_of(exc) from None


def recipient(channel: MessageChannel, value: str, settings: Settings) -> str:
    return CHANNELS[channel].recipient(value, settings)


def check_parsed(channel: MessageChannel, message: BaseModel, context: CheckContext) -> Checked:
    return CHANNELS[channel].check(message, context)


def check_message(channel: MessageChannel, fields: dict[str, Any], context: CheckContext) -> Checked:
    """Check a message given as plain fields: everything a provider would refuse is in the result's problems."""
    return check_parsed(channel, parse_message(channel, fields), context)
