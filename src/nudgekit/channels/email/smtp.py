"""Email through an SMTP relay (aiosmtplib): one connection per batch, one transaction per message.

The SMTP reply is classified by the stage it came at and its code (RFC 5321) with the enhanced status code
(RFC 3463) when the server gives one:

- refused at RCPT with 5.1.x / 5.2.1 (no such user, bad domain, mailbox disabled), or a bare 550/551/553 ->
  invalid recipient: a hard bounce, the address is suppressed (not 5.1.7 / 5.1.8: those are about our own
  sender address);
- 4.7.x, 4.2.1 or 421/450 mentioning rate -> rate limited; any other 4xx -> retryable;
- any other 5xx (policy 5.7.x, content refused at DATA) -> permanent;
- the connection lost or timed out *after* the message data was sent -> uncertain (the relay may have queued
  it; sending again risks a duplicate).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy

import aiosmtplib

from nudgekit.channels.email.message import EmailMessage, to_mime
from nudgekit.channels.provider import Capabilities, Envelope, Outcome, Verdict
from nudgekit.config import SenderSettings, SmtpSettings
from nudgekit.vocabulary import MessageChannel

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def classify(code: int, text: str, *, at_recipient: bool) -> Verdict:
    """One SMTP reply as a verdict (see the module docstring)."""
    if 200 <= code < 300:
        return Verdict.ACCEPTED
    enhanced = _ENHANCED.match(text)
    subject = (int(enhanced.group(2)), int(enhanced.group(3))) if enhanced else None
    if 400 <= code < 500:
        throttled = subject is not None and (subject[0] == 7 or subject == (2, 1))
        if throttled or (code in (421, 450, 451) and re.search(r"(?i)rate|too (many|fast|quickly)", text)):
            return Verdict.RATE_LIMITED
        return Verdict.RETRYABLE
    if at_recipient and (
        (subject is not None and ((subject[0] == 1 and subject[1] not in (7, 8)) or subject == (2, 1)))
        or (subject is None and code in (550, 551, 553))
    ):
        return Verdict.INVALID_RECIPIENT
    return Verdict.PERMANENT


class SmtpProvider:
    name = "smtp"

    def __init__(self, settings: SmtpSettings, sender: SenderSettings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.sender = sender
        self.clock = clock
        self.capabilities = Capabilities(channels=frozenset({MessageChannel.EMAIL}),
                                         batch_size=settings.messages_per_connection)

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(hostname=s.host, port=s.port, username=s.username, password=s.password,
                               timeout=s.timeout_seconds, use_tls=s.security == "tls",
                               start_tls=True if s.security == "starttls" else False)

    async def send(self, batch: list[Envelope]) -> list[Outcome]:
        client = self._client()
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            return [Outcome(Verdict.PERMANENT, str(exc.code), f"login refused: {exc.message}")] * len(batch)
        except aiosmtplib.SMTPResponseException as exc:
            verdict = classify(exc.code, exc.message, at_recipient=False)
            return [Outcome(verdict, str(exc.code), f"connecting: {exc.message}")] * len(batch)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return [Outcome(Verdict.RETRYABLE, None, f"cannot reach {self.settings.host}:{self.settings.port}: "
                            f"{exc}")] * len(batch)
        outcomes: list[Outcome] = []
        try:
            for envelope in batch:
                if not client.is_connected:
                    outcomes.append(Outcome(Verdict.RETRYABLE, None, "not attempted: the connection was lost"))
                    continue
                outcomes.append(await self._one(client, envelope))
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return outcomes

    async def _one(self, client: aiosmtplib.SMTP, envelope: Envelope) -> Outcome:
        message = envelope.message
        assert isinstance(message, EmailMessage)
        mime = to_mime(message, envelope.to, self.sender, message_id=envelope.message_id, now=self.clock())
        stage = "MAIL"
        try:
            await client.mail(self.settings.return_path or mime["From"].addresses[0].addr_spec)
            stage = "RCPT"
            await client.rcpt(envelope.to)
            stage = "DATA"
            reply = await client.data(mime.as_bytes(policy=policy.SMTP))
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            verdict = classify(exc.code, exc.message, at_recipient=stage == "RCPT")
            return Outcome(verdict, str(exc.code), f"{stage}: {exc.message}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            if stage == "DATA":
                return Outcome(Verdict.UNCERTAIN, None, f"the connection ended while the relay had the message: {exc}")
            return Outcome(Verdict.RETRYABLE, None, f"{stage}: {exc}")
        queued = re.search(r"(?i)queued as\s+(\S+)", reply.message)
        return Outcome(Verdict.ACCEPTED, str(reply.code), reply.message,
                       provider_message_id=queued.group(1) if queued else mime["Message-ID"])

    async def aclose(self) -> None:
        return None


async def _reset(client: aiosmtplib.SMTP) -> None:
    """End a refused transaction so the next message on this connection starts clean."""
    if client.is_connected:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
