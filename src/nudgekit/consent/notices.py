"""The notices the law owes people about their consent (CHANNEL_RULES A9, A10), found and sent:

- **result notice**: within 14 days of a consent, refusal or withdrawal of advertising (or night-time
  advertising), tell the person the sender's name, what they chose and when, and that it was processed;
- **re-confirmation**: every two years from the date of an advertising consent (before the same date in the
  second year), tell them the sender's name, what they consented to and when, and how to keep or withdraw
  it (silence keeps it).

Both are informational messages with no advertising in them; they go by the channel the change was about
when it can reach the person, else email, SMS, then push. Changes imported in bulk (source `import`),
copied when profiles merged, or learned of long after they happened are not the person's new choice and get
no result notice; an unsubscribe page that showed the result counts as the notice. Each notice is claimed in
the state DB before it is sent, so two runs never send the same one; a claim whose send never finished is
retried after an hour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nudgekit.config import Settings
from nudgekit.consent import history
from nudgekit.consent.optout import CHANNEL_NAMES
from nudgekit.policy import people
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import ConsentNotice, ConsentNoticeRecord, ConsentRecord, Profile, in_batches
from nudgekit.vocabulary import Channel, ConsentSource, MessageChannel, Purpose

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

RESULT_DAYS = 14
RECONFIRM_YEARS = 2
STALE_CLAIM = timedelta(hours=1)
CAMPAIGN = "consent-notices"
NOT_A_CHOICE = (ConsentSource.IMPORT.value, ConsentSource.MERGE.value)
NOTICE_CHANNELS = (MessageChannel.EMAIL, MessageChannel.SMS, MessageChannel.PUSH)
BY_CONSENT = {Channel.EMAIL: MessageChannel.EMAIL, Channel.SMS: MessageChannel.SMS,
              Channel.KAKAO: MessageChannel.SMS, Channel.PUSH: MessageChannel.PUSH}
"""The channel a notice about a consent goes by first (Kakao's: AlimTalk needs a template approved by
Kakao, so a text message to the same number)."""


Kind = Literal["result", "reconfirm"]


@dataclass(frozen=True)
class Change:
    """One consent change a notice tells of (for a re-confirmation: one consent held)."""

    record_id: int
    channel: Channel
    purpose: Purpose
    granted: bool
    at: datetime
    recorded_at: datetime
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "channel": self.channel.value, "purpose": self.purpose.value,
                "granted": self.granted, "at": self.at.isoformat(), "source": self.source}


@dataclass(frozen=True)
class DueNotice:
    profile_id: str
    user_id: str | None
    kind: Kind
    due_by: datetime
    changes: tuple[Change, ...]
    claim: str
    overdue: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"profile_id": self.profile_id, "user_id": self.user_id, "kind": self.kind,
                "due_by": self.due_by.isoformat(), "overdue": self.overdue,
                "changes": [c.as_dict() for c in self.changes]}


def _change(rec: Any) -> Change:
    return Change(rec.id, Channel(rec.channel), Purpose(rec.purpose), rec.change == "granted", rec.at,
                  rec.recorded_at, rec.source)


def _years_later(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def _user_ids(session: Session, profile_ids: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for chunk in in_batches(profile_ids):
        found.update((pid, user) for pid, user in session.execute(
            select(Profile.profile_id, Profile.user_id).where(Profile.profile_id.in_(chunk))))
    return found


def result_notices(session: Session, now: datetime, within_days: int) -> list[DueNotice]:
    """People with consent changes recorded in the last `within_days` days that no notice told them of yet
    (a change nudgekit learned of more than `within_days` after it happened is history someone else
    recorded — a past system's export — not a choice to answer now)."""
    told = select(ConsentNoticeRecord.record_id)
    rows = session.scalars(select(ConsentRecord).where(
        ConsentRecord.purpose.in_([Purpose.ADVERTISING.value, Purpose.NIGHT.value]),
        ConsentRecord.source.not_in(NOT_A_CHOICE),
        ConsentRecord.recorded_at >= now - timedelta(days=within_days),
        ConsentRecord.id.not_in(told),
    ).order_by(ConsentRecord.profile_id, ConsentRecord.at, ConsentRecord.id))
    grouped: dict[str, list[Change]] = {}
    for rec in rows:
        if rec.at >= rec.recorded_at - timedelta(days=within_days):  # not history imported long after
            grouped.setdefault(rec.profile_id, []).append(_change(rec))
    users = _user_ids(session, list(grouped))
    out = []
    for profile_id, changes in grouped.items():
        due_by = min(c.at for c in changes) + timedelta(days=RESULT_DAYS)
        out.append(DueNotice(profile_id, users.get(profile_id), "result", due_by, tuple(changes),
                             f"result:{profile_id}:{changes[0].record_id}", due_by < now))
    return sorted(out, key=lambda n: n.due_by)


def reconfirm_notices(session: Session, now: datetime, lead_days: int) -> list[DueNotice]:
    """People holding an advertising (or night-time) consent that reaches two years within `lead_days`
    days, counted from the consent or from the last re-confirmation notice they were sent."""
    cutoff = _years_later(now + timedelta(days=lead_days), -RECONFIRM_YEARS)
    ranked = select(
        ConsentRecord.id, ConsentRecord.profile_id, ConsentRecord.change, ConsentRecord.at,
        func.row_number().over(partition_by=(ConsentRecord.profile_id, ConsentRecord.channel,
                                             ConsentRecord.purpose),
                               order_by=(ConsentRecord.at.desc(), ConsentRecord.id.desc())).label("rank"),
    ).where(ConsentRecord.purpose.in_([Purpose.ADVERTISING.value, Purpose.NIGHT.value])).subquery()
    old = [(pid, at) for pid, at in session.execute(select(ranked.c.profile_id, func.min(ranked.c.at)).where(
        ranked.c.rank == 1, ranked.c.change == "granted", ranked.c.at <= cutoff,
    ).group_by(ranked.c.profile_id))]
    if not old:
        return []
    last_told = {pid: at for pid, at in session.execute(
        select(ConsentNotice.profile_id, func.max(ConsentNotice.at)).where(
            ConsentNotice.kind == "reconfirm", ConsentNotice.state == "sent").group_by(ConsentNotice.profile_id))}
    due = {pid: max(at, last_told.get(pid, at)) for pid, at in old if last_told.get(pid, at) <= cutoff}
    held = history.for_profiles(session, list(due))
    users = _user_ids(session, list(due))
    out = []
    for profile_id, basis in due.items():
        consents = tuple(_change(r) for r in history.latest(held[profile_id]).values() if r.change == "granted")
        due_by = _years_later(basis, RECONFIRM_YEARS)
        out.append(DueNotice(profile_id, users.get(profile_id), "reconfirm", due_by, consents,
                             f"reconfirm:{profile_id}:{due_by.date().isoformat()}", due_by < now))
    return sorted(out, key=lambda n: n.due_by)


KINDS: tuple[Kind, ...] = ("result", "reconfirm")


def as_today(session: Session, profile_id: str, kind: Kind, now: datetime) -> DueNotice | None:
    """The notice of `kind` as it would read for this person today, due or not (a test send): a
    re-confirmation of the advertising consents they hold, the result of their latest advertising choices;
    None when they have made none."""
    held = history.latest(history.history(session, profile_id)).values()
    changes = tuple(_change(r) for r in held if r.purpose in (Purpose.ADVERTISING.value, Purpose.NIGHT.value)
                    and (kind == "result" or r.change == "granted"))
    if not changes:
        return None
    return DueNotice(profile_id, None, kind, now, changes, f"test:{kind}:{profile_id}")


def due(session: Session, now: datetime, *, within_days: int = 30, lead_days: int = 30,
        kinds: tuple[Kind, ...] = KINDS) -> list[DueNotice]:
    return ((result_notices(session, now, within_days) if "result" in kinds else [])
            + (reconfirm_notices(session, now, lead_days) if "reconfirm" in kinds else []))


# -- the words -----------------------------------------------------------------------------------------


def _what(change: Change) -> str:
    night = " 야간(21시~08시)" if change.purpose == Purpose.NIGHT else ""
    return f"{CHANNEL_NAMES[change.channel][1]}{night} 광고성 정보 수신"


def _day(moment: datetime, zone: Any) -> str:
    return moment.astimezone(zone).date().isoformat()


def unsaid(settings: Settings, channels: set[Channel]) -> dict[Channel, str]:
    """The consent channels a re-confirmation notice could not say how to withdraw from, each with the
    setting that would let it."""
    missing: dict[Channel, str] = {}
    if Channel.EMAIL in channels and not settings.public_url:
        missing[Channel.EMAIL] = "public_url (the unsubscribe link's address)"
    for channel in (Channel.SMS, Channel.KAKAO):
        if channel in channels and not settings.sender.optout_080:
            missing[channel] = "[sender] optout_080 (the free opt-out number)"
    if Channel.PUSH in channels and not settings.sender.push_optout:
        missing[Channel.PUSH] = "[sender] push_optout (where in the app pushes are turned off)"
    return missing


def ways_to_withdraw(settings: Settings, channels: set[Channel], unsubscribe_url: str | None) -> list[str]:
    ways = []
    if Channel.EMAIL in channels and unsubscribe_url:
        ways.append(f"이메일: {unsubscribe_url}")
    if channels & {Channel.SMS, Channel.KAKAO} and settings.sender.optout_080:
        from nudgekit.channels.numbers import spelled

        ways.append(f"문자·카카오톡: 무료 수신거부 {spelled(settings.sender.optout_080)}")
    if Channel.PUSH in channels and settings.sender.push_optout:
        ways.append(f"앱 푸시: {settings.sender.push_optout}")
    return ways


def compose(notice: DueNotice, settings: Settings, zone: Any, unsubscribe_url: str | None = None,
            ) -> tuple[str, str]:
    """(title, text) of the notice, in Korean: the sender's name, what the person chose and when, and the
    result (for a re-confirmation: what they consented to and how to keep or withdraw it)."""
    name = settings.sender.name or settings.brand
    if notice.kind == "result":
        title = f"[{name}] 광고성 정보 수신동의 처리 결과 안내"
        lines = [f"{name}입니다. 요청하신 수신 설정이 다음과 같이 처리되었습니다."]
        for c in notice.changes:
            choice = "동의" if c.granted else "거부"
            lines.append(f"- {_day(c.at, zone)} {_what(c)} {choice}: {_day(c.recorded_at, zone)} 처리 완료")
        return title, "\n".join(lines)
    title = f"[{name}] 광고성 정보 수신동의 현황 안내"
    lines = [f"{name}입니다. 법(정보통신망법 제50조 제8항)에 따라 2년마다 수신동의 현황을 알려 드립니다."]
    lines += [f"- {_day(c.at, zone)} {_what(c)} 동의" for c in notice.changes]
    lines.append("동의를 유지하시려면 따로 하실 일은 없습니다.")
    ways = ways_to_withdraw(settings, {c.channel for c in notice.changes}, unsubscribe_url)
    if ways:
        lines.append("수신을 원하지 않으시면 언제든 거부하실 수 있습니다.")
        lines += [f"- {w}" for w in ways]
    return title, "\n".join(lines)


def message_fields(channel: MessageChannel, title: str, text: str) -> dict[str, Any]:
    if channel == MessageChannel.EMAIL:
        return {"subject": title, "text": text}
    if channel == MessageChannel.PUSH:
        return {"title": title, "text": text}
    return {"text": f"{title}\n{text}", "subject": "수신동의 안내"}  # an LMS subject holds 20 Hangul at most


def channel_order(notice: DueNotice, channels: tuple[MessageChannel, ...] = NOTICE_CHANNELS,
                  ) -> list[MessageChannel]:
    """The channel the consent was about first (when it is one of `channels`), then `channels` in order."""
    first = [BY_CONSENT[c.channel] for c in notice.changes if BY_CONSENT.get(c.channel) in channels]
    return list(dict.fromkeys([*first, *channels]))


# -- claiming and recording ----------------------------------------------------------------------------


def claim(session: Session, notice: DueNotice, now: datetime, text: str, *, channel: str = "",
          state: str = "sending") -> int | None:
    """Take the notice for sending (or record it as shown); None when another run holds or sent it."""
    stale = session.scalars(select(ConsentNotice.id).where(
        ConsentNotice.claim == notice.claim, ConsentNotice.state == "sending", ConsentNotice.at < now - STALE_CLAIM))
    drop(session, list(stale))
    row = ConsentNotice(claim=notice.claim, profile_id=notice.profile_id, kind=notice.kind, channel=channel,
                        state=state, at=now, text=text)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            if notice.kind == "result":
                session.add_all(ConsentNoticeRecord(record_id=c.record_id, notice_id=row.id)
                                for c in notice.changes)
                session.flush()
    except IntegrityError:
        return None
    return row.id


@dataclass
class NoticeRun:
    """What `send` did (or, dry, would do) with each notice due."""

    due: int = 0
    """Notices due (`limit` may have sent fewer)."""
    sent: list[dict[str, Any]] = field(default_factory=list)
    unreachable: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """Taken by another run meanwhile."""

    def as_dict(self) -> dict[str, Any]:
        return {"due": self.due, "sent": self.sent, "unreachable": self.unreachable, "skipped": self.skipped}


def send(ws: Workspace, *, dry_run: bool = False, within_days: int = 30, lead_days: int = 30,
         limit: int | None = None, kinds: tuple[Kind, ...] = KINDS,
         channels: tuple[MessageChannel, ...] = NOTICE_CHANNELS, campaign: str = CAMPAIGN,
         progress: Callable[[int, int], None] | None = None) -> NoticeRun:
    """Send every notice due, the most urgent first (dry: say by which channel each would go, and its
    text). `kinds`, `channels` and `campaign` are a notice playbook's (campaigns/notice.py)."""
    now = ws.clock()
    with ws.sessions() as session:
        found = sorted(due(session, now, within_days=within_days, lead_days=lead_days, kinds=kinds),
                       key=lambda n: n.due_by)
    run = NoticeRun(due=len(found))
    found = found[:limit]
    for done, notice in enumerate(found, 1):
        _one(ws, notice, dry_run, run, channels, campaign)
        if progress:
            progress(done, len(found))
    return run


def words(ws: Workspace, notice: DueNotice) -> tuple[str, str]:
    """(title, text) of the notice for its person: dates in their time zone, their own unsubscribe link."""
    with ws.sessions() as session:
        profile = session.get(Profile, notice.profile_id)
        zone = people.where(profile, ws.settings)[1] if profile else ws.settings.zone
    link = ws.unsubscribe_link(notice.profile_id) if ws.settings.public_url else None
    return compose(notice, ws.settings, zone, link)


def _one(ws: Workspace, notice: DueNotice, dry_run: bool, run: NoticeRun, channels: tuple[MessageChannel, ...],
         campaign: str) -> None:
    title, text = words(ws, notice)
    entry = {**notice.as_dict(), "title": title, "text": text}
    user = notice.user_id or notice.profile_id
    tried = []
    notice_id = None
    if not dry_run:
        with ws.sessions.begin() as session:
            notice_id = claim(session, notice, ws.clock(), f"{title}\n{text}")
        if notice_id is None:
            run.skipped.append(entry)
            return
    for channel in channel_order(notice, channels):
        fields = message_fields(channel, title, text)
        options = {"campaign": campaign, "message_id": f"consent-notice-{notice_id}-{channel.value}"}
        try:
            if dry_run:
                ruling = ws.check_for(channel, user, **fields, **options)
                went = ruling.sends
            else:
                outcome = ws.send(channel, user, **fields, **options)
                ruling, went = outcome.ruling, outcome.sent
        except FieldError as exc:
            tried.append({"channel": channel.value, "reason": f"{exc.field}: {exc.reason}"})
            continue
        if went:
            if notice_id is not None:
                with ws.sessions.begin() as session:
                    row = session.get(ConsentNotice, notice_id)
                    row.state, row.channel, row.message_id = "sent", channel.value, ruling.candidate.message_id
            run.sent.append({**entry, "channel": channel.value})
            return
        tried.append({"channel": channel.value, "reason": ruling.reason if not ruling.sends else "not_accepted"})
    if notice_id is not None:
        with ws.sessions.begin() as session:
            drop(session, [notice_id])
    run.unreachable.append({**entry, "tried": tried})


def drop(session: Session, notice_ids: list[int]) -> None:
    """Forget claims whose notice did not go, so the changes they covered are due again."""
    if notice_ids:
        session.execute(delete(ConsentNoticeRecord).where(ConsentNoticeRecord.notice_id.in_(notice_ids)))
        session.execute(delete(ConsentNotice).where(ConsentNotice.id.in_(notice_ids)))


def shown_on_page(session: Session, profile_id: str, records: list[ConsentRecord], now: datetime,
                  text: str) -> None:
    """The unsubscribe page showed the person the result of their withdrawal (`records`, flushed): that was
    the result notice."""
    rows = [_change(r) for r in records]
    if rows:
        notice = DueNotice(profile_id, None, "result", now, tuple(rows), f"result:{profile_id}:{rows[0].record_id}")
        claim(session, notice, now, text, channel="page", state="sent")
