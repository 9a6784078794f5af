"""Which channels exist and how each checks a message: one explicit table (an unknown channel fails loudly)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from nudgekit.channels.check import Checked
from nudgekit.channels.sms import message as sms
from nudgekit.config import Settings
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import MessageChannel


@dataclass(frozen=True)
class ChannelSpec:
    model: type[BaseModel]
    check: Callable[[Any, Settings], Checked]


CHANNELS: dict[MessageChannel, ChannelSpec] = {
    MessageChannel.SMS: ChannelSpec(sms.SmsMessage, lambda m, s: sms.check(m, s.sender, s.prices)),
}


def check_message(channel: MessageChannel, fields: dict[str, Any], settings: Settings) -> Checked:
    """Check a message given as plain fields (CLI options, API JSON). A field of the wrong shape is a
    FieldError; everything a provider would refuse is in the result's problems."""
    spec = CHANNELS.get(channel)
    if spec is None:
        built = ", ".join(c.value for c in CHANNELS)
        raise FieldError("channel", f"checking {channel.value} messages is not built yet (built: {built})")
    try:
        message = spec.model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise FieldError.first_of(exc) from None
    return spec.check(message, settings)
