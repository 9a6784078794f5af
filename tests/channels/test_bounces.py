"""Bounces that arrive later as mail: emails sent through a real SMTP server (aiosmtpd) with the envelope
sender set to the bounce mailbox, then delivery reports in the shapes the big mail systems send (Postfix's
text/rfc822-headers, Exchange's message/rfc822, an empty status part with X-Failed-Recipients), delayed
reports, complaints (ARF), forged bounces and ordinary replies, read from Maildir, mbox and .eml files."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nudgekit.channels.email.bounces import parse
from nudgekit.cli import app
from nudgekit.config import write_section
from nudgekit.store.state import DirectSend, Suppression
from nudgekit.testing.smtp import FakeSmtp, Received
from nudgekit.workspace import Workspace

BOUNCES = "bounces@mail.nudge.example"


@pytest.fixture
def relay() -> Iterator[FakeSmtp]:
    with FakeSmtp() as server:
        yield server


@pytest.fixture
def ws(tmp_path: Path, relay: FakeSmtp) -> Iterator[Workspace]:
    workspace, _ = Workspace.init(tmp_path / "ws")
    home = workspace.settings.home
    workspace.close()
    write_section(home, "providers", {"email": "smtp"})
    write_section(home, "smtp", {"host": "127.0.0.1", "port": relay.port, "security": "none",
                                 "return_path": BOUNCES})
    workspace = Workspace.open(home)
    workspace.set_sender(name="뉴지샵", email_from="news@nudge.example")
    yield workspace
    workspace.close()


def headers_of(got: Received) -> str:
    return got.raw.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n", "\n")


def postfix_dsn(got: Received, status: str = "5.1.1", action: str = "failed",
                diagnostic: str = "550 5.1.1 <{to}>: Recipient address rejected: User unknown") -> bytes:
    to = got.rcpt_tos[0]
    return f"""Return-Path: <>
From: MAILER-DAEMON@mx.relay.example (Mail Delivery System)
To: {BOUNCES}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B1.relay"

--B1.relay
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.relay.example. Your message could not be delivered.

--B1.relay
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.relay.example
X-Postfix-Queue-ID: 7C1D2E3F
Arrival-Date: Tue, 24 Nov 2026 12:00:00 +0900 (KST)

Final-Recipient: rfc822; {to}
Original-Recipient: rfc822;{to.upper()}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.{to.split("@")[1]}
Diagnostic-Code: smtp; {diagnostic.format(to=to)}
 (in reply to RCPT TO command)

--B1.relay
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{headers_of(got)}

--B1.relay--
""".replace("\n", "\r\n").encode()


def exchange_dsn(got: Received) -> bytes:
    to = got.rcpt_tos[0]
    original = got.raw.decode().replace("\r\n", "\n")
    return f"""From: postmaster@outlook.example
To: {BOUNCES}
Subject: Undeliverable: hello
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="EX-1"

--EX-1
Content-Type: multipart/alternative; boundary="EX-2"

--EX-2
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups: {to}

--EX-2--

--EX-1
Content-Type: message/delivery-status

Reporting-MTA: dns;EX01.outlook.example
Received-From-MTA: dns;mx.nudge.example
Arrival-Date: Tue, 24 Nov 2026 03:00:00 +0000

Final-Recipient: rfc822;{to}
Action: failed
Status: 5.2.1
Diagnostic-Code: smtp;550 5.2.1 RESOLVER.ADR.RecipientDisabled; mailbox disabled

--EX-1
Content-Type: message/rfc822

{original}
--EX-1--
""".encode()


def empty_status_dsn(to: str, original: Received | None = None) -> bytes:
    returned = headers_of(original) if original else "From: news@nudge.example"
    return f"""From: Mail Delivery Subsystem <mailer-daemon@mail.example>
To: {BOUNCES}
Subject: Delivery Status Notification (Failure)
X-Failed-Recipients: {to}
Content-Type: multipart/report; boundary="G1"; report-type=delivery-status

--G1
Content-Type: text/plain; charset="UTF-8"

** Message not delivered **

--G1
Content-Type: message/delivery-status


--G1
Content-Type: message/rfc822

{returned}

----- Message truncated -----
--G1--
""".encode()


def global_dsn(got: Received, to: str, status: str) -> bytes:
    """A report in the internationalised form (RFC 6533): UTF-8 addresses, status part global."""
    return (f"""From: postmaster@mail.example
To: {BOUNCES}
Content-Type: multipart/report; report-type=delivery-status; boundary="GL"

--GL
Content-Type: text/plain; charset=utf-8

배달 실패
--GL
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mx.mail.example

Final-Recipient: utf-8; {to}
Action: failed
Status: {status}
Diagnostic-Code: smtp; 550 {status} 받는 사람 없음

--GL
Content-Type: text/rfc822-headers

{headers_of(got)}

--GL--
""").encode() + b"X-Junk: \xff\xfe\x00\r\n"


def complaint(to: str, message_id: str, kind: str = "abuse") -> bytes:
    return f"""From: feedback@isp.example
To: {BOUNCES}
Subject: complaint about message from 192.0.2.1
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"

--ARF
Content-Type: text/plain

This is an email abuse report.

--ARF
Content-Type: message/feedback-report

Feedback-Type: {kind}
User-Agent: SomeISP-FBL/1.0
Version: 1
Original-Rcpt-To: <{to}>

--ARF
Content-Type: text/rfc822-headers

From: news@nudge.example
To: {to}
X-Nudge-Message-Id: {message_id}

--ARF--
""".encode()


def test_parse_reads_each_shape() -> None:
    (report,) = parse(empty_status_dsn("lost@mail.example"))
    assert (report.recipient, report.action, report.status, report.hard) == ("lost@mail.example", "failed", None,
                                                                             False)
    (abuse,) = parse(complaint("Kim@Example.com", "m9"))
    assert (abuse.kind, abuse.recipient, abuse.action, abuse.message_id, abuse.hard) == (
        "complaint", "kim@example.com", "abuse", "m9", True)
    assert parse(b"From: kim@example.com\r\nSubject: out of office\r\n\r\nI am away.\r\n") == []
    assert parse(b"\x00\xff not mail at all") == []
    eight_bit = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=Q\n\n--Q\n"
                 b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822; X@Y.example\nAction: failed\n"
                 b"Status: 5.1.8\nDiagnostic-Code: smtp; 553 \xb9\xdf\xbd\xc5\xc0\xda \xff\x00\n--Q--\n")
    (sender_problem,) = parse(eight_bit)
    assert (sender_problem.recipient, sender_problem.status, sender_problem.hard) == ("x@y.example", "5.1.8", False)
    many = "".join(f"\nFinal-Recipient: rfc822; p{i}@x.example\nAction: failed\nStatus: 5.1.1\n" for i in range(30))
    assert parse(("Content-Type: multipart/report; report-type=delivery-status; boundary=Q\n\n--Q\n"
                  f"Content-Type: message/delivery-status\n\nReporting-MTA: dns; x\n{many}--Q--\n").encode()) == []


def test_a_later_bounce_suppresses_the_address_and_closes_the_message(ws: Workspace, relay: FakeSmtp,
                                                                      tmp_path: Path) -> None:
    ws.identify("u1", {"email": "gone@example.org"})
    sent = ws.send_now("email", "gone@example.org", profile_id="u1", message_id="welcome-1", subject="안녕",
                       text="환영합니다")
    assert sent.outcome.sent
    (got,) = relay.received
    assert got.mail_from == BOUNCES  # the envelope sender is the bounce mailbox; From stays the brand's
    assert got.message["From"].addresses[0].addr_spec == "news@nudge.example"
    assert got.message["X-Nudge-Message-Id"] == "welcome-1"

    result = ws.read_bounces([("dsn", postfix_dsn(got))])
    (report,) = result["reports"]
    assert (report["status"], report["message_id"], report["hard"], report["acted"]) == ("5.1.1", "welcome-1",
                                                                                         True, True)
    assert report["learned"] == "email address suppressed (hard_bounce)"
    assert result["suppressed"] == ["gone@example.org"]
    with ws.sessions() as session:
        row = session.get(DirectSend, "welcome-1")
        assert (row.delivery, row.delivery_code) == ("failed", "5.1.1")
        assert "User unknown" in row.delivery_detail
        assert session.get(Suppression, ("email", "gone@example.org")).reason == "hard_bounce"
    again = ws.send_now("email", "gone@example.org", subject="안녕", text="다시")
    assert again.outcome is None and "suppressed" in again.note
    events = [e["event"] for e in ws.profile("u1")["recent_events"]]
    assert events.count("message_failed") == 1
    # the same report read twice changes nothing
    twice = ws.read_bounces([("dsn", postfix_dsn(got))])
    assert twice["suppressed"] == [] and twice["reports"][0]["learned"] == "already recorded"
    assert [e["event"] for e in ws.profile("u1")["recent_events"]].count("message_failed") == 1


def test_soft_failures_delays_and_strangers_suppress_nothing(ws: Workspace, relay: FakeSmtp) -> None:
    for to in ("full@example.org", "slow@example.org", "spam@example.org"):
        assert ws.send_now("email", to, subject="안녕", text="본문").outcome.sent
    full, slow, blocked = relay.received
    result = ws.read_bounces([
        ("full", postfix_dsn(full, "5.2.2", diagnostic="552 5.2.2 Mailbox full")),
        ("slow", postfix_dsn(slow, "4.4.1", action="delayed", diagnostic="connection timed out")),
        ("spam", postfix_dsn(blocked, "5.7.1", diagnostic="550 5.7.1 Message rejected as spam")),
        ("forged", empty_status_dsn("ceo@bank.example")),
        ("forged-known", empty_status_dsn("full@example.org")),
        ("reply", b"From: kim@example.com\r\nSubject: Re: hi\r\n\r\nthanks\r\n")])
    assert result["suppressed"] == [] and result["not_reports"] == ["reply"]
    by_mail = {r["mail"]: r for r in result["reports"]}
    assert by_mail["full"]["acted"] and not by_mail["full"]["hard"]
    assert not by_mail["slow"]["acted"]
    assert by_mail["forged"]["learned"].startswith("not acted on")
    # a report naming an address we did email, but none of our messages, is not trusted either
    assert by_mail["forged-known"]["learned"].startswith("not acted on") and not by_mail["forged-known"]["acted"]
    with ws.sessions() as session:
        assert session.query(Suppression).count() == 0
        delivery = {r.recipient: r.delivery for r in session.query(DirectSend)}
    assert delivery == {"full@example.org": "failed", "slow@example.org": None, "spam@example.org": "failed"}


def test_maildir_mbox_and_eml_through_the_cli(ws: Workspace, relay: FakeSmtp, tmp_path: Path) -> None:
    ws.identify("u2", {"email": "angry@example.net"})
    for to, profile in (("disabled@example.com", None), ("lost@example.com", None), ("angry@example.net", "u2")):
        assert ws.send_now("email", to, profile_id=profile, message_id=f"m-{to}", subject="안녕",
                           text="본문").outcome.sent
    home = ws.settings.home
    disabled, _, _ = relay.received
    ws.close()
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(exchange_dsn(disabled))
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    box.add(empty_status_dsn("lost@example.com", relay.received[1]))
    box.flush()
    eml = tmp_path / "complaint.eml"
    eml.write_bytes(complaint("angry@example.net", "m-angry@example.net"))
    runner = CliRunner()
    out = runner.invoke(app, ["email", "bounces", str(tmp_path / "Maildir"), str(tmp_path / "bounces.mbox"), str(eml),
                              "--home", str(home), "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)
    assert answer["mails"] == 3
    assert answer["suppressed"] == ["angry@example.net", "disabled@example.com"]
    reasons = {r["recipient"]: r["learned"] for r in answer["reports"]}
    assert reasons["angry@example.net"] == "email address suppressed (complaint)"
    assert reasons["lost@example.com"] == "recorded"  # failed without a status: closed, not suppressed
    with Workspace.open(home) as again:
        assert "message_complained" in [e["event"] for e in again.profile("u2")["recent_events"]]
    table = runner.invoke(app, ["email", "bounces", str(eml), "--home", str(home)])
    assert table.exit_code == 0 and "0 addresses suppressed" in table.output
    missing = runner.invoke(app, ["email", "bounces", str(tmp_path / "nope"), "--home", str(home)])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_global_reports_later_reports_and_other_complaints(ws: Workspace, relay: FakeSmtp) -> None:
    ws.identify("u1", {"email": "jimin@example.kr"})
    for to in ("jimin@example.kr", "hop@example.org", "fbl@example.org"):
        assert ws.send_now("email", to, profile_id="u1" if to.startswith("jimin") else None, message_id=f"m-{to}",
                           subject="안녕", text="본문").outcome.sent
    jimin, hop, fbl = relay.received
    result = ws.read_bounces([("global", global_dsn(jimin, "jimin@example.kr", "5.1.1")),
                              ("relayed", postfix_dsn(hop, "2.0.0", action="relayed", diagnostic="relayed")),
                              ("fail-after", postfix_dsn(hop, "5.1.1")),
                              ("not-spam", complaint("fbl@example.org", "m-fbl@example.org", "not-spam"))])
    learned = {r["mail"]: r["learned"] for r in result["reports"]}
    assert learned["global"] == "email address suppressed (hard_bounce)"
    assert learned["relayed"] == "nothing to do: relayed"
    assert learned["fail-after"] == "email address suppressed (hard_bounce)"
    assert learned["not-spam"] == "recorded only: feedback type not-spam"
    assert result["suppressed"] == ["hop@example.org", "jimin@example.kr"]
    with ws.sessions() as session:
        assert session.get(DirectSend, "m-hop@example.org").delivery == "failed"
        assert session.get(Suppression, ("email", "fbl@example.org")) is None
    # a "delivered" report read after the failure does not turn it back
    ws.read_bounces([("late", postfix_dsn(hop, "2.0.0", action="delivered", diagnostic="ok"))])
    with ws.sessions() as session:
        assert session.get(DirectSend, "m-hop@example.org").delivery == "failed"
