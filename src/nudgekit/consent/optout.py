"""The ways a person withdraws advertising consent besides the app and the admin API (CHANNEL_RULES A3, A7):

- the unsubscribe link in advertising email, and the RFC 8058 one-click POST mail providers make from its
  `List-Unsubscribe` header: a signed link per person and channel, so it needs no login and cannot be
  forged for somebody else;
- the 080 free opt-out number: the provider's call records (who called, when) imported as a file;
- a "수신거부" / "STOP" reply to a text message.

A refusal that names only an address (an 080 call, an SMS reply) is kept against the address as well as
recorded in the consent history of every profile that has it, so it holds for whoever has the number later.
Withdrawing advertising withdraws night-time advertising on the same channel too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.consent import history
from nudgekit.consent.history import ConsentState, ConsentUpdate
from nudgekit.store.state import AddressOptout, Profile, WorkspaceSecret, in_batches, insert_missing
from nudgekit.vocabulary import Channel, ConsentChange, ConsentSource, Purpose

PHONE_CHANNELS = (Channel.SMS, Channel.KAKAO)
"""What a refusal by phone (080 call, SMS reply) covers: text messages and Kakao, whose advertising falls
back to text messages and points non-friends to the same 080 number."""

LINK_SECRET = "unsubscribe_links"

CHANNEL_NAMES = {Channel.PUSH: ("app push", "앱 푸시"), Channel.SMS: ("text messages", "문자"),
                 Channel.KAKAO: ("KakaoTalk", "카카오톡"), Channel.EMAIL: ("email", "이메일"),
                 Channel.INAPP: ("in-app messages", "앱 내 메시지")}
"""What people call each consent channel (English, Korean), for pages and notices."""


# -- signed unsubscribe links -----------------------------------------------------------------------


def link_secret(session: Session, now: datetime) -> bytes:
    """The workspace's key for unsubscribe links, made on first use and shared through the state DB."""
    insert_missing(session, WorkspaceSecret, name=LINK_SECRET, value=secrets.token_hex(32), created_at=now)
    return bytes.fromhex(session.scalars(select(WorkspaceSecret.value).where(
        WorkspaceSecret.name == LINK_SECRET)).one())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token(key: bytes, profile_id: str, channel: Channel) -> str:
    payload = f"{channel.value}:{profile_id}".encode()
    return f"{_b64(payload)}.{_b64(hmac.new(key, payload, hashlib.sha256).digest()[:16])}"


def read_token(key: bytes, value: str) -> tuple[str, Channel]:
    """(profile id, channel) of a link made by `token`; ValueError for anything else."""
    try:
        payload_text, _, signature = value.partition(".")
        payload = _unb64(payload_text)
        expected = hmac.new(key, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise ValueError("signature")
        channel, _, profile_id = payload.decode().partition(":")
        return profile_id, Channel(channel)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError("this unsubscribe link is damaged or was not made by this workspace") from exc


def link(public_url: str, key: bytes, profile_id: str, channel: Channel = Channel.EMAIL) -> str:
    return f"{public_url}/u/{token(key, profile_id, channel)}"


# -- SMS replies ---------------------------------------------------------------------------------------

OPTOUT_WORDS = frozenset({
    "수신거부", "거부", "광고거부", "광고수신거부", "수신중지", "광고중지", "중지", "해지", "수신해지", "탈퇴", "그만",
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE",
})
"""A reply that, stripped of spaces and punctuation, is one of these is a refusal (Korean practice and the
CTIA keywords US carriers honour)."""
_NOT_WORD = re.compile(r"[\W_]+")


def is_optout_reply(text: str) -> bool:
    """Whether an SMS reply refuses further advertising: one of OPTOUT_WORDS, or a reply that starts with
    수신거부 / 광고거부 ("수신거부 부탁드립니다")."""
    word = _NOT_WORD.sub("", text or "").upper()
    return word in OPTOUT_WORDS or word.startswith(("수신거부", "광고거부"))


# -- recording -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Withdrawal:
    """What a batch of refusals changed."""

    profiles: tuple[str, ...]
    """The profiles whose consent history now says withdrawn."""
    records: tuple[int, ...]
    """The consent records written (ids; empty when every profile had already refused)."""


def withdraw(session: Session, profile_id: str, channels: tuple[Channel, ...], *, at: datetime,
             source: ConsentSource, evidence: str | None, now: datetime, dedupe_key: str | None = None,
             records: list[Any] | None = None, taken_keys: set[str] | None = None) -> list[Any]:
    """Record the person's refusal of advertising (and night-time advertising) on these channels, unless
    their history already ends in a refusal there. Returns the records written. A batch passes the person's
    `records` (in time order) and the dedupe keys already used, as `history.record` takes them."""
    if records is None:
        records = history.history(session, profile_id)
    held = history.latest(records)
    updates = []
    for channel in channels:
        for purpose in (Purpose.ADVERTISING, Purpose.NIGHT):
            state = held.get((channel, purpose))
            granted = state is not None and state.change == ConsentChange.GRANTED
            if (state is not None and not granted and state.at <= at) or (purpose == Purpose.NIGHT and not granted):
                continue
            updates.append(ConsentUpdate(channel, purpose, ConsentChange.WITHDRAWN, at, source, evidence))
    return history.record(session, profile_id, updates, now=now, dedupe_key=dedupe_key, records=records,
                          taken_keys=taken_keys)


@dataclass(frozen=True)
class Refusal:
    """An advertising refusal that names only a phone number or email address (normalised)."""

    address: str
    at: datetime
    evidence: str | None
    dedupe_key: str | None = None


def withdraw_addresses(session: Session, refusals: list[Refusal], channels: tuple[Channel, ...], *,
                       source: ConsentSource, now: datetime) -> Withdrawal:
    """Refusals naming only an address: each kept against the address, and recorded for every profile that
    has it — read and written in a few statements per batch, not per refusal."""
    if not refusals:
        return Withdrawal((), ())
    rows = [{"channel": c.value, "address": r.address, "at": r.at, "source": source.value, "recorded_at": now,
             "evidence": r.evidence, "dedupe_key": f"{r.dedupe_key}:{c.value}" if r.dedupe_key else None}
            for r in refusals for c in channels]
    insert_missing(session, AddressOptout, rows=rows)
    phones = sorted({r.address for r in refusals if "@" not in r.address})
    emails = sorted({r.address for r in refusals if "@" in r.address})
    owners: dict[str, list[str]] = {}
    for column, addresses in ((Profile.phone, phones), (Profile.email, emails)):
        for chunk in in_batches(addresses):
            for profile_id, address in session.execute(
                    select(Profile.profile_id, column).where(column.in_(chunk)).order_by(Profile.profile_id)):
                owners.setdefault(address, []).append(profile_id)
    people = sorted({p for ps in owners.values() for p in ps})
    held = history.for_profiles(session, people)
    keys = [f"{r.dedupe_key}:{c.value}:{p.value}" for r in refusals if r.dedupe_key and r.address in owners
            for c in channels for p in (Purpose.ADVERTISING, Purpose.NIGHT)]
    taken = history.used_keys(session, keys)
    written: list[Any] = []
    for refusal in refusals:
        for profile_id in owners.get(refusal.address, []):
            written += withdraw(session, profile_id, channels, at=refusal.at, source=source,
                                evidence=refusal.evidence, now=now, dedupe_key=refusal.dedupe_key,
                                records=held[profile_id], taken_keys=taken)
    session.flush()
    return Withdrawal(tuple(people), tuple(r.id for r in written))


def refusals_of(session: Session, addresses: list[str]) -> dict[tuple[str, Channel], ConsentState]:
    """The latest refusal kept against each of these phone numbers and email addresses, per channel."""
    latest: dict[tuple[str, Channel], ConsentState] = {}
    for chunk in in_batches(sorted(set(addresses))):
        for address, channel, at, source in session.execute(select(
                AddressOptout.address, AddressOptout.channel, AddressOptout.at, AddressOptout.source).where(
                AddressOptout.address.in_(chunk)).order_by(AddressOptout.at)):
            key = (address, Channel(channel))
            if key not in latest or at >= latest[key].at:
                latest[key] = ConsentState(key[1], Purpose.ADVERTISING, False, at, ConsentSource(source))
    return latest


def refusals_for(refusals: dict[tuple[str, Channel], ConsentState], phone: str | None, email: str | None
                 ) -> dict[Channel, ConsentState]:
    """Of `refusals_of`'s answer, the ones against this person's phone number (per channel) and email."""
    wanted = [(a, c) for a, cs in ((phone, PHONE_CHANNELS), (email, (Channel.EMAIL,))) if a for c in cs]
    return {c: refusals[(a, c)] for a, c in wanted if (a, c) in refusals}


# -- 080 call records -----------------------------------------------------------------------------------

PHONE_COLUMNS = ("phone", "phone_number", "number", "recipientno", "recipient_no", "caller", "caller_number",
                 "수신거부번호", "거부번호", "휴대폰번호", "휴대폰", "전화번호", "수신번호", "고객번호", "발신번호")
"""Column names a call-record file may use for the caller's number, first match wins."""
TIME_COLUMNS = ("at", "time", "timestamp", "datetime", "date", "createdate", "create_date", "created_at",
                "calldate", "call_time", "수신거부일시", "거부일시", "통화일시", "등록일시", "일시", "등록일", "날짜")
_FORMATS = ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d")


@dataclass(frozen=True)
class Call:
    line: int
    phone: str
    at: datetime


@dataclass(frozen=True)
class Reject:
    line: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


def _text(data: bytes) -> str:
    """A call-record file as text: UTF-8 (with or without BOM), else CP949, which Korean Excel writes."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp949")


def _column(header: list[str], wanted: str | None, known: tuple[str, ...], what: str, option: str) -> int:
    names = [h.strip().lower().replace(" ", "") for h in header]
    if wanted is not None:
        key = wanted.strip().lower().replace(" ", "")
        if key not in names:
            raise ValueError(f"the file has no column {wanted!r}; its columns are {', '.join(header)}")
        return names.index(key)
    for name in known:
        if name in names:
            return names.index(name)
    raise ValueError(f"cannot tell which column holds the {what}; the columns are {', '.join(header)} — name it "
                     f"with {option}")


def _moment(value: str, zone: Any) -> datetime:
    text = value.strip()
    moment = None
    try:
        moment = datetime.fromisoformat(text.replace(".", "-").replace("/", "-"))
    except ValueError:
        digits = re.sub(r"\D", "", text)
        for fmt in _FORMATS:
            try:
                moment = datetime.strptime(digits, fmt)
                break
            except ValueError:
                continue
    if moment is None:
        raise ValueError(f'"{text}" is not a date and time (write it like 2026-11-20 13:05:00)')
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def read_calls(data: bytes, *, region: str, zone: Any, now: datetime, phone_column: str | None = None,
               at_column: str | None = None) -> tuple[list[Call], list[Reject]]:
    """The refusals in an 080 provider's call-record export (CSV): the caller's number and when they called.
    Rows that cannot be read are returned as rejects, the rest kept."""
    import csv
    import io

    from nudgekit.profiles.contacts import FieldError, normalize_phone

    rows = list(csv.reader(io.StringIO(_text(data))))
    if not rows:
        raise ValueError("the file is empty")
    header = rows[0]
    phone_at = _column(header, phone_column, PHONE_COLUMNS, "phone number", "--phone-column")
    time_at = _column(header, at_column, TIME_COLUMNS, "time of the call", "--at-column")
    calls, rejects = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(phone_at, time_at):
            rejects.append(Reject(line, header[min(len(row), len(header) - 1)], "the row is cut short"))
            continue
        try:
            phone = normalize_phone(row[phone_at], region, header[phone_at])
        except FieldError as exc:
            rejects.append(Reject(line, exc.field, exc.reason))
            continue
        try:
            at = _moment(row[time_at], zone)
        except ValueError as exc:
            rejects.append(Reject(line, header[time_at], str(exc)))
            continue
        if at > now + timedelta(minutes=5):
            rejects.append(Reject(line, header[time_at], f"{row[time_at].strip()} is in the future"))
            continue
        calls.append(Call(line, phone, at))
    return calls, rejects
