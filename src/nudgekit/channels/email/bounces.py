"""Bounces that arrive later, as mail: delivery status notifications (DSN, RFC 3464) and spam complaints
(ARF, RFC 5965) read from the mailbox the envelope sender points at (`[smtp] return_path`).

A relay that takes a message (250 at DATA) may still fail to deliver it hours later; it then mails a report
to the envelope sender. Reading those reports is how an address that no longer exists gets suppressed when
the SMTP conversation itself said nothing wrong.

What counts (the same line as the SMTP reply classifier, `smtp.classify`):

- `Action: failed` with status 5.1.x (bad mailbox, bad domain) or 5.2.1 (mailbox disabled): a hard bounce,
  the address is suppressed;
- any other failure (5.2.2 mailbox full, 5.7.x blocked as spam, no status at all): recorded, not suppressed:
  the address may work, the problem may be ours;
- `delayed`, `delivered`, `relayed`, `expanded`: nothing to do;
- an ARF report with feedback type `abuse` (the person pressed "spam"): the address is suppressed as a
  complaint; other feedback types are recorded only.

:TRICKY: anyone can mail the bounce address. A report only acts when it returns our message id
(`X-Nudge-Message-Id` in the original headers) and that message went to the address it names; the rest are
listed as not acted on. A forger would need a real message id and its recipient.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from nudgekit.channels import feedback, receipts
from nudgekit.channels.email.message import MESSAGE_ID_HEADER
from nudgekit.channels.provider import Delivery, Outcome, Receipt, Verdict
from nudgekit.store.state import DirectSend
from nudgekit.vocabulary import EventName, MessageChannel

_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")
SENDER_PROBLEMS = frozenset({("1", "7"), ("1", "8")})
"""X.1.7 / X.1.8: our own sender address is bad — nothing wrong with the recipient's."""
MAX_REPORTS = 20
"""A mail naming more recipients than this is not a bounce of ours (we send one recipient per message)."""


@dataclass(frozen=True)
class Report:
    """One recipient's line in a delivery report, or one complaint."""

    kind: str
    """bounce or complaint."""
    recipient: str
    action: str
    """failed, delayed, delivered, relayed, expanded; complaints: the feedback type (abuse, fraud ...)."""
    status: str | None
    """The enhanced status code (5.1.1), when the report gives one."""
    diagnostic: str
    message_id: str | None
    """Our message id, from the original headers the report returned."""

    @property
    def hard(self) -> bool:
        """Whether the address itself is dead (or its owner complained): it is suppressed."""
        if self.kind == "complaint":
            return self.action == "abuse"
        status = _STATUS.match(self.status or "")
        if self.action != "failed" or status is None or status.group(1) != "5":
            return False
        subject = (status.group(2), status.group(3))
        return (subject[0] == "1" and subject not in SENDER_PROBLEMS) or subject == ("2", "1")

    @property
    def reason(self) -> str:
        return "complaint" if self.kind == "complaint" else "hard_bounce"

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "recipient": self.recipient, "action": self.action, "status": self.status,
                "diagnostic": self.diagnostic, "message_id": self.message_id, "hard": self.hard}


def parse(raw: bytes) -> list[Report]:
    """The reports one mail carries; [] for mail that is not a delivery report or complaint (an
    out-of-office reply, a person writing back, something unreadable)."""
    try:
        return _parse(raw.replace(b"\x00", b""))
    except (ValueError, TypeError, AttributeError, LookupError, IndexError):
        return []


def _parse(raw: bytes) -> list[Report]:
    mail = message_from_bytes(raw, policy=policy.compat32)
    if mail.get_content_type() != "multipart/report":
        return []
    kind = (mail.get_param("report-type") or "").lower()
    parts = list(mail.walk())
    original = _original_headers(parts)
    message_id = _decoded(original.get(MESSAGE_ID_HEADER)) or None
    if kind == "delivery-status":
        found = list(_bounces(mail, parts, message_id))
    elif kind == "feedback-report":
        found = list(_complaint(parts, original, message_id))
    else:
        return []
    return found if len(found) <= MAX_REPORTS else []


def _bounces(mail: Message, parts: list[Message], message_id: str | None) -> Iterator[Report]:
    status_part = next((p for p in parts if p.get_content_type() in ("message/delivery-status",
                                                                      "message/global-delivery-status")), None)
    found = False
    for block in _field_blocks(status_part):
        address = _address(block.get("Original-Recipient")) or _address(block.get("Final-Recipient"))
        if not address:
            continue
        found = True
        yield Report("bounce", address, _unfold(block.get("Action")).lower(),
                     _status(_unfold(block.get("Status"))), _unfold(block.get("Diagnostic-Code")), message_id)
    if not found:  # some mail systems send an empty status part and name the address in a header
        for _, address in getaddresses([str(v) for v in mail.get_all("X-Failed-Recipients") or []]):
            if "@" in address:
                yield Report("bounce", address.lower(), "failed", None, "", message_id)


def _complaint(parts: list[Message], original: Message, message_id: str | None) -> Iterator[Report]:
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    blocks = list(_field_blocks(feedback))
    fields = blocks[0] if blocks else Message()
    named = fields.get_all("Original-Rcpt-To") or original.get_all("To") or []
    recipients = [a for _, a in getaddresses([str(v) for v in named]) if "@" in a]
    kind = _unfold(fields.get("Feedback-Type")).lower() or "abuse"
    for address in recipients:
        yield Report("complaint", address.lower(), kind, None, _unfold(fields.get("User-Agent")), message_id)


def _field_blocks(part: Message | None) -> Iterator[Message]:
    """The header blocks of a delivery-status or feedback-report part (per message, then per recipient)."""
    if part is None:
        return
    payload = part.get_payload(decode=False)
    if isinstance(payload, list):  # the parser split the blocks ...
        for block in payload:
            yield block
            rest = block.get_payload(decode=True)  # bytes as they came
            if isinstance(rest, bytes) and rest.strip():  # ... or took them for one message (global-delivery-status)
                yield from _blocks_of(rest)
        return
    yield from _blocks_of(part.get_payload(decode=True) or b"")


def _blocks_of(text: bytes) -> Iterator[Message]:
    for chunk in re.split(rb"\r?\n\s*\r?\n", text):
        if chunk.strip():
            yield BytesHeaderParser().parsebytes(chunk.strip() + b"\n")


def _original_headers(parts: list[Message]) -> Message:
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                return inner[0]
        if kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return Message()


def _address(field: object) -> str | None:
    """`rfc822; someone@example.com` -> the address, lower-cased (suppressions ignore case)."""
    if not field:
        return None
    kind, _, address = _unfold(field).partition(";")
    if not address:
        kind, address = "rfc822", kind
    if kind.strip().lower() not in ("rfc822", "utf-8"):
        return None
    address = _unfold(address).strip("<> ")
    return address.lower() if "@" in address else None


def _status(field: str | None) -> str | None:
    match = _STATUS.match(field or "")
    return ".".join(match.groups()) if match else None


def _unfold(value: object) -> str:
    """A header value as one line of text; raw 8-bit bytes (a global report's UTF-8 address, a diagnostic
    in a local charset) come as a Header object and are read as UTF-8, anything unreadable replaced."""
    if isinstance(value, Header):
        value = "".join(part.decode("utf-8" if charset in (None, "unknown-8bit") else charset, "replace")
                        if isinstance(part, bytes) else part for part, charset in decode_header(value))
    return " ".join(str(value or "").split())


def _decoded(value: object) -> str:
    """A header we wrote, as we wrote it: unfolded and RFC 2047 encoded words decoded."""
    text = re.sub(r"\r?\n(?=[ \t])", "", str(value or ""))
    try:
        return str(make_header(decode_header(text))).strip()
    except (ValueError, LookupError, UnicodeDecodeError):
        return text.strip()


@dataclass(frozen=True)
class Applied:
    """What one report did."""

    acted: bool
    learned: str
    event: dict[str, Any] | None = None
    """The person's event to store once the session commits."""


def apply(session: Session, report: Report, now: datetime) -> Applied:
    """Write one report onto the email it names (see the module docstring for what each report does)."""
    row = session.get(DirectSend, report.message_id, with_for_update=True) if report.message_id else None
    if row is None or row.channel != MessageChannel.EMAIL.value or row.recipient.lower() != report.recipient:
        return Applied(False, "not acted on: it names no message we sent to this address")
    if report.kind == "complaint":
        if not report.hard:
            return Applied(False, f"recorded only: feedback type {report.action}")
        outcome = Outcome(Verdict.INVALID_RECIPIENT, report.action, "the person reported the email as spam")
        learned = feedback.remember(session, MessageChannel.EMAIL, row.recipient, row.profile_id, outcome, now,
                                    reason=report.reason)
        if learned is None:
            return Applied(False, "already recorded")
        return Applied(True, learned, receipts.person_event(row, EventName.MESSAGE_COMPLAINED,
                                                            f"complaint:{row.attempts}", now,
                                                            {"feedback_type": report.action}))
    if report.action == "delivered" and row.delivery != Delivery.FAILED.value:
        receipt = Receipt(Delivery.DELIVERED, Outcome(Verdict.ACCEPTED, report.status, "delivered"))
    elif report.action == "failed":
        verdict = Verdict.INVALID_RECIPIENT if report.hard else Verdict.PERMANENT
        receipt = Receipt(Delivery.FAILED, Outcome(verdict, report.status or "failed",
                                                   report.diagnostic or "the mail system gave up"))
    else:  # delayed (still trying), relayed / expanded (passed on), delivered after a failure
        return Applied(False, f"nothing to do: {report.action or 'no action'}")
    closed, event = receipts.apply(session, row, receipt, now)
    learned = closed.learned if closed else None
    if report.hard and learned is None:  # suppress even when an earlier report closed the message
        learned = feedback.remember(session, MessageChannel.EMAIL, row.recipient, row.profile_id,
                                    receipt.outcome, now)
    return Applied(closed is not None or learned is not None,
                   learned or ("recorded" if closed else "already recorded"), event)


def mails(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """Every mail in the paths: a Maildir folder, an mbox file, a folder of .eml files, or one .eml file.
    Yields (where it came from, the raw mail)."""
    for path in paths:
        if path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            box = mailbox.Maildir(path, create=False)
            for key in box.iterkeys():
                yield f"{path}:{key}", box.get_bytes(key)
        elif path.is_dir():
            for file in sorted(path.rglob("*.eml")):
                yield str(file), file.read_bytes()
        elif _is_mbox(path):
            box = mailbox.mbox(path, create=False)
            for key in box.iterkeys():
                yield f"{path}:{key}", box.get_bytes(key)
        else:
            yield str(path), path.read_bytes()


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(5) == b"From "
