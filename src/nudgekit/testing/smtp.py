"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives and answers as relays do."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class FakeSmtp:
    """`refuse` maps a recipient to the reply its RCPT gets (e.g. "550 5.1.1 No such user"); `data_reply`
    replaces the 250 after DATA; `data_delay` holds the DATA reply that many seconds (a slow relay)."""

    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    data_delay: float = 0.0
    login: tuple[str, str] | None = None
    received: list[Received] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _controller: Controller | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_reply:
            return self.data_reply
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return f"250 2.0.0 Ok: queued as FAKE{next(self._ids):05d}"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self.login
        return AuthResult(success=ok, handled=False)

    def start(self) -> FakeSmtp:
        extra: dict[str, Any] = {}
        if self.login:
            extra = {"authenticator": self._authenticate, "auth_require_tls": False}
        with socket.socket() as probe:  # aiosmtpd checks its own start by connecting, so it needs a real port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=port, **extra)
        self._controller.start()
        return self

    @property
    def port(self) -> int:
        assert self._controller is not None
        return int(self._controller.port)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def __enter__(self) -> FakeSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
