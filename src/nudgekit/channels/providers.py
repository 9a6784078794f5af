"""Which providers exist and how each is opened from the settings: one explicit table, keyed by the names
`[providers]` in nudge.toml uses (config.PROVIDER_NAMES lists the same names so settings fail at load)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from nudgekit.channels.email.smtp import SmtpProvider
from nudgekit.channels.inapp.inbox import InboxProvider
from nudgekit.channels.nhncloud import NhnCloudProvider
from nudgekit.channels.provider import Provider
from nudgekit.channels.push.apns import ApnsProvider, is_apns_token
from nudgekit.channels.push.fcm import FcmProvider
from nudgekit.channels.sandbox import SandboxProvider
from nudgekit.channels.solapi import SolapiProvider
from nudgekit.channels.webhook.provider import WebhookProvider
from nudgekit.config import Settings
from nudgekit.vocabulary import MessageChannel


@dataclass(frozen=True)
class Context:
    settings: Settings
    sessions: sessionmaker[Session]
    clock: Callable[[], datetime]


PROVIDERS: dict[str, Callable[[Context], Provider]] = {
    "sandbox": lambda c: SandboxProvider(c.sessions, c.clock),
    "inbox": lambda c: InboxProvider(c.sessions, c.clock),
    "smtp": lambda c: SmtpProvider(c.settings.smtp, c.settings.sender, c.clock),
    "webhook": lambda c: WebhookProvider(c.settings.webhook, c.clock),
    "fcm": lambda c: FcmProvider(c.settings.fcm.model_copy(update={
        "service_account_file": _in_home(c.settings, c.settings.fcm.service_account_file)})),
    "apns": lambda c: ApnsProvider(c.settings.apns.model_copy(update={
        "key_file": _in_home(c.settings, c.settings.apns.key_file),
        "ca_file": _in_home(c.settings, c.settings.apns.ca_file)}), clock=c.clock,
        token_cache=c.settings.home / ".cache" / "apns-token.json"),
    "solapi": lambda c: SolapiProvider(c.settings.solapi, c.settings.sender, clock=c.clock),
    "nhncloud": lambda c: NhnCloudProvider(c.settings.nhncloud, c.settings.sender, clock=c.clock),
}


def _in_home(settings: Settings, path: Path | None) -> Path | None:
    """A file named in nudge.toml is found relative to the workspace."""
    return settings.home / path if path is not None and not path.is_absolute() else path


def route(settings: Settings, channel: MessageChannel, to: str | None = None) -> str:
    """The provider name `[providers]` sets for the channel (and, for push, for this kind of token)."""
    if channel == MessageChannel.PUSH and settings.providers.push_apns and to is not None and is_apns_token(to):
        return settings.providers.push_apns
    name = getattr(settings.providers, channel.value, None)
    if name is None:
        raise ValueError(f"{channel.value} messages are not sent through a provider")
    return name


def open_for(channel: MessageChannel, context: Context, to: str | None = None) -> Provider:
    """The provider `[providers]` names for the channel, opened; refuses one that cannot carry the channel."""
    name = route(context.settings, channel, to)
    provider = PROVIDERS[name](context)
    if channel not in provider.capabilities.channels:
        raise ValueError(f"[providers] {channel.value} = {name!r}, but {name} cannot send {channel.value} messages")
    return provider


T = TypeVar("T")


def run_once(provider: Any, call: Callable[[Any], Awaitable[T]]) -> T:
    """Run one call on an opened provider from synchronous code, and close the provider whatever happens."""
    async def run() -> T:
        try:
            return await call(provider)
        finally:
            await provider.aclose()

    return asyncio.run(run())
