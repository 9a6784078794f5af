"""Workspace: the one façade the CLI, the HTTP API and Python code use. It opens both stores."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from pydantic import ValidationError
from sqlalchemy import select

from nudgekit.apikeys import Keys
from nudgekit.channels.numbers import sender_number
from nudgekit.config import (
    CONFIG_FILE,
    DEFAULT_TOML,
    SenderSettings,
    Settings,
    load_settings,
    toml_string,
    write_section,
)
from nudgekit.consent import history
from nudgekit.consent.history import ConsentUpdate
from nudgekit.ingest.pipeline import Ingestor, IngestResult
from nudgekit.ingest.validate import Validator
from nudgekit.lifecycle import resurrect
from nudgekit.lifecycle import run as lifecycle_run
from nudgekit.lifecycle.run import RunResult
from nudgekit.profiles.contacts import FieldError, check_user_id, normalize_phone
from nudgekit.profiles.identify import anonymous_profile_id, check_consent_time
from nudgekit.store import migrate
from nudgekit.store.activity import ActivitySpec
from nudgekit.store.backend import EventsBackend, EventsView
from nudgekit.store.events import AppendResult, EventStore
from nudgekit.store.rollup import Rollup
from nudgekit.store.state import (
    DirectSend,
    LifecycleStage,
    LifecycleTransition,
    Profile,
    PushToken,
    in_batches,
    make_engine,
    make_sessionmaker,
)
from nudgekit.vocabulary import (
    Action,
    Channel,
    ConsentChange,
    ConsentSource,
    EventName,
    EventSource,
    KeyScope,
    MessageChannel,
    PolicyStage,
    Purpose,
    TemplateStatus,
)

log = logging.getLogger("nudgekit")
PYTHON_BUFFER_ROWS = 2000


class WorkspaceNotFound(RuntimeError):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SendResult:
    checked: Any
    outcome: Any
    """The provider's classified answer; None when nothing was sent."""
    note: str | None = None
    """Why nothing was sent, or what the answer taught us about the recipient."""
    provider: str | None = None
    fallback: SendResult | None = None
    """The fallback text message's own send, when a Kakao message fell back."""

    @property
    def sent(self) -> bool:
        """The message, or its fallback, was accepted."""
        return bool(self.outcome and self.outcome.sent) or bool(self.fallback and self.fallback.sent)

    def as_dict(self) -> dict[str, Any]:
        out = {"sent": self.sent, "provider": self.provider, "note": self.note,
               "outcome": self.outcome.as_dict() if self.outcome else None, "check": self.checked.as_dict()}
        if self.fallback is not None:
            fallback = self.fallback
            out["fallback"] = {"sent": fallback.sent, "provider": fallback.provider, "note": fallback.note,
                               "outcome": fallback.outcome.as_dict() if fallback.outcome else None}
        return out


@dataclass(frozen=True)
class PersonSend:
    """A message sent to a person through the policy chain: what the chain said, and each address's send."""

    ruling: Any
    results: list[SendResult]

    @property
    def sent(self) -> bool:
        return any(r.sent for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "policy": self.ruling.as_dict(), "sends": [r.as_dict() for r in self.results]}


@dataclass(frozen=True)
class ConsentResult:
    recorded: bool
    state: dict[str, Any]


class Workspace:
    """Open with `Workspace.open(path)`; create with `Workspace.init(path)`."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow,
                 events_connection: Any = None) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = make_engine(settings.state_url)
        self.sessions = make_sessionmaker(self.engine)
        spec = ActivitySpec.from_settings(settings.timezone, settings.lifecycle)
        self.events = EventStore(settings.events_file, settings.spool_dir, rollup=Rollup(spec),
                                 memory_limit=settings.events_memory_limit)
        self.events.on_activity = resurrect.listener(self.engine, clock)
        self.events.wants_activity = lambda: resurrect.anyone_gone(self.engine)
        self.events.on_rows = self._journey_events
        self.backend = EventsBackend(settings, self.events, events_connection)
        """Where lifecycle and segments read behaviour: the DuckDB file, or a warehouse (NUDGE_EVENTS_URL)."""
        self.validator = Validator(
            settings.timezone,
            max_message_bytes=settings.ingest.max_message_bytes,
            future_hours=settings.ingest.future_tolerance_hours,
        )
        self.ingestor = Ingestor(
            self.sessions, self.validator, phone_region=settings.phone_region,
            declared_traits=settings.traits, clock=clock,
        )
        self.keys = Keys(self.sessions)
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._unsubscribe_key: bytes | None = None
        self._charging: dict[str, bool] = {}
        """Whether a provider (by name) costs money."""
        self._channel_charges: dict[MessageChannel, bool] = {}
        self.dry = False
        """A dry run's copy (campaigns/dry.py): what it writes is thrown away, so it takes no locks on people."""

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def init(
        cls, home: Path | str | None = None, *, clock: Callable[[], datetime] = utcnow,
        events_connection: Any = None, **overrides: Any
    ) -> tuple[Workspace, str | None]:
        """Create (or upgrade) a workspace. Returns it and a new write key when none existed."""
        settings = load_settings(home, **overrides)
        settings.home.mkdir(parents=True, exist_ok=True)
        config = settings.home / CONFIG_FILE
        if not config.exists():
            database_line = (f"database_url = {toml_string(settings.database_url)}" if settings.database_url
                             else '# database_url = "postgresql+psycopg://user@host/nudge"   # default: SQLite state.db')
            config.write_text(DEFAULT_TOML.format(brand=settings.brand, database_line=database_line), encoding="utf-8")
        elif overrides.get("database_url"):
            stored = load_settings(home).database_url
            if stored != overrides["database_url"]:
                raise ValueError(
                    f"this workspace's nudge.toml says database_url = {stored or '(SQLite in the workspace)'}; "
                    "edit nudge.toml to move it to another database"
                )
        ws = cls(settings, clock=clock, events_connection=events_connection)
        migrate.upgrade(ws.engine)
        ws.events.create()
        key = None
        if not any(k.scope == KeyScope.WRITE and k.revoked_at is None for k in ws.keys.list()):
            _, key = ws.keys.create(KeyScope.WRITE, "default write key", ws.clock())
        return ws, key

    @classmethod
    def open(
        cls, home: Path | str | None = None, *, clock: Callable[[], datetime] = utcnow,
        events_connection: Any = None, **overrides: Any
    ) -> Workspace:
        settings = load_settings(home, **overrides)
        if not (settings.home / CONFIG_FILE).exists():
            raise WorkspaceNotFound(
                f"no workspace at {settings.home.resolve()}; run `nudge init {settings.home}` first "
                "or point NUDGE_HOME at one"
            )
        ws = cls(settings, clock=clock, events_connection=events_connection)
        if not migrate.is_current(ws.engine):
            migrate.upgrade(ws.engine)
        if not ws.events.path.exists():
            ws.events.create()
        return ws

    def close(self, *, flush: bool = True) -> None:
        """Let go of the databases, first storing what is buffered and spooled (`flush`) unless told not to:
        spooled events wait for the next flush anywhere."""
        if flush:
            self.flush()
        elif self._buffer:
            self.events.spool(pa.concat_tables(self._buffer))
            self._buffer, self._buffered = [], 0
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingestion -----------------------------------------------------------------------------

    def ingest(self, messages: list[Any], **kwargs: Any) -> IngestResult:
        """Validate and apply Segment-shaped messages; returns the event rows to store."""
        kwargs.setdefault("source", EventSource.PYTHON.value)
        return self.ingestor.ingest(messages, **kwargs)

    def identify(self, user_id: str | None = None, traits: dict[str, Any] | None = None, **fields: Any) -> None:
        self._send({"type": "identify", "userId": user_id, "traits": traits or {}, **_camel(fields)})

    def track(self, event: str, user_id: str | None = None, properties: dict[str, Any] | None = None,
              **fields: Any) -> None:
        self._send({"type": "track", "event": event, "userId": user_id, "properties": properties or {},
                    **_camel(fields)})

    def alias(self, previous_id: str, user_id: str, **fields: Any) -> None:
        self._send({"type": "alias", "previousId": previous_id, "userId": user_id, **_camel(fields)})

    def _send(self, message: dict[str, Any]) -> None:
        result = self.ingest([message])
        if result.rejects:
            reject = result.rejects[0]
            raise FieldError(reject.field, reject.reason)
        self._buffer.append(result.rows)
        self._buffered += result.accepted
        if self._buffered >= PYTHON_BUFFER_ROWS:
            self.flush()

    def spool_events(self, messages: list[dict[str, Any]]) -> int:
        """Events nudgekit writes itself (message sent, failed ...): validated in one go and parked durably in
        the spool, so a long-running worker never waits for another process's hold on the event store; the
        server's drainer or the next flush moves them in. Returns how many were spooled."""
        if not messages:
            return 0
        result = self.ingest(messages)
        if result.rejects:
            reject = result.rejects[0]
            raise FieldError(reject.field, reject.reason)
        self.events.spool(result.rows)
        return result.accepted

    def flush(self) -> AppendResult:
        """Store what identify()/track() buffered, and drain the spool the HTTP server left behind."""
        result = AppendResult(0, 0)
        if self._buffer:
            buffer, self._buffer, self._buffered = self._buffer, [], 0
            try:
                result = self.events.append(pa.concat_tables(buffer))
            except BaseException:
                self._buffer, self._buffered = buffer + self._buffer, sum(t.num_rows for t in buffer + self._buffer)
                raise
        drained = self.events.drain()
        return AppendResult(result.received + drained.received, result.inserted + drained.inserted)

    def _journey_events(self, rows: pa.Table) -> None:
        """Events just stored: the journeys they start, end or wake are recorded (a failure raises, and a
        drain tries the same events again), then the people they moved walk on (a failure is only logged:
        their steps are due, and the next tick walks them)."""
        from nudgekit.campaigns import engine

        due = engine.on_rows(self, rows)
        if due and not _in_event_loop():  # a delivery worker draining its own events: the next tick walks them
            try:
                engine.advance(self, ids=due)
            except Exception:
                log.exception("walking people journeys just moved failed; the next tick walks them")

    def import_events(self, path: Path | str, **kwargs: Any) -> Any:
        from nudgekit.ingest.bulk import import_events

        self.flush()
        return import_events(self, Path(path), **kwargs)

    def import_users(self, path: Path | str, **kwargs: Any) -> Any:
        from nudgekit.ingest.bulk import import_users

        return import_users(self, Path(path), **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def lifecycle_snapshot(self) -> Path:
        """Where `lifecycle run` leaves what it stored, for fast reads (see lifecycle/stored.py)."""
        return self.settings.home / "lifecycle"

    def _local(self, moment: datetime) -> datetime:
        """A time as given, or, without an offset, read in the workspace time zone."""
        return moment if moment.tzinfo else moment.replace(tzinfo=self.settings.zone)

    def today(self) -> date:
        return self.clock().astimezone(self.settings.zone).date()

    def run_lifecycle(self, as_of: date | None = None, *, step: Callable[[str], None] | None = None) -> RunResult:
        """Classify everyone as of a day (default today), store stages, record transitions."""
        today = self.today()
        as_of = as_of or today
        if as_of > today:
            raise FieldError("as_of", f"{as_of} is in the future (today is {today} in {self.settings.timezone})")
        if step:
            step("bringing the activity rollup up to date")
        with self._behaviour() as (view, rollup):
            return lifecycle_run.run(self.engine, view, as_of, self.settings.lifecycle, self.settings.timezone,
                                     now=self.clock(), rollup=rollup, step=step, remove_missing=as_of >= today,
                                     snapshot=self.lifecycle_snapshot)

    @contextmanager
    def _behaviour(self) -> Iterator[tuple[EventsView, str | None]]:
        """Everything stored (spool drained, rollup current and compacted), then a view to read it through."""
        self.flush()
        rollup = self.backend.prepare(self.clock())
        with self.backend.open() as view:
            yield view, rollup

    def suggest_lifecycle(self, lookback_days: int = 180) -> Any:
        """Proposed usage cycle and churn window from the gaps between users' active days."""
        from nudgekit.lifecycle.suggest import suggest

        with self._behaviour() as (view, _):
            return suggest(view, self.today(), lookback_days)

    def lifecycle_report(self, *, weeks: int = 12, matrix_from: date | None = None, matrix_to: date | None = None,
                         as_of: date | None = None, step: Callable[[str], None] | None = None) -> Any:
        """People per stage at the end of each of the `weeks` weeks up to `as_of` (default today), and a
        transition matrix."""
        from nudgekit.lifecycle.report import build

        today = self.today()
        as_of = as_of or today
        if as_of > today:
            raise FieldError("as_of", f"{as_of} is in the future (today is {today} in {self.settings.timezone})")
        with self._behaviour() as (view, _):
            return build(view, as_of, self.settings.lifecycle, self.settings.timezone, weeks=weeks,
                         matrix_from=matrix_from, matrix_to=matrix_to, step=step)

    # -- messages ------------------------------------------------------------------------------

    def check_message(self, channel: Any, **fields: Any) -> Any:
        """Every reason a provider would refuse this message now, its type, sizes and price (nothing is sent);
        warned when copy marked informational reads like a promotion."""
        from nudgekit.channels.registry import check_parsed, parse_message
        from nudgekit.policy import purpose

        kind = _enum(MessageChannel, channel, "channel")
        message = parse_message(kind, fields)
        with self.sessions() as session:
            return purpose.preflight(kind, message, check_parsed(kind, message, self._check_context(session)))

    def _check_context(self, session: Any) -> Any:
        from nudgekit.channels.kakao import templates
        from nudgekit.channels.registry import CheckContext

        return CheckContext(self.settings, lambda code: templates.get(session, code), self.clock())

    def send_now(self, channel: Any, to: str, *, profile_id: str | None = None, message_id: str | None = None,
                 **fields: Any) -> SendResult:
        """Check one message and hand it straight to the channel's provider: a test send to an address you
        name (no outbox, retries or consent checks — campaigns send through delivery). A message that fails
        its check, or an address suppressed on the channel, is not sent and costs nothing.

        A Kakao message goes out as its fallback text message when the recipient is known to be unreachable
        on Kakao, or when the provider says so now; a Brand Message claims the recipient's one a day first."""
        from nudgekit.channels.registry import check_parsed, parse_message, recipient

        kind = _enum(MessageChannel, channel, "channel")
        if kind == MessageChannel.WEBHOOK:
            fields.setdefault("url", to)
        message = parse_message(kind, fields)
        to = recipient(kind, to, self.settings)
        if kind in (MessageChannel.INAPP, MessageChannel.CARD):
            to = self._person_of(to)
            profile_id = profile_id or to
        if message_id is not None and not 0 < len(message_id) <= 200:
            raise FieldError("message_id", "a message id is 1 to 200 characters")
        message_id = message_id or f"test-{uuid.uuid4().hex}"
        with self.sessions() as session:
            checked = check_parsed(kind, message, self._check_context(session))
        if not checked.ok:
            return SendResult(checked, None, "the message failed its check")
        return self._deliver(kind, to, message, checked, profile_id, message_id)

    def _deliver(self, kind: MessageChannel, to: str, message: Any, checked: Any, profile_id: str | None,
                 message_id: str) -> SendResult:
        """A checked message to one address: straight to the fallback text message when the recipient is
        known to be unreachable on Kakao, else to its provider (a Brand Message claiming the recipient's one
        a day: delivery.handover.begin), then the fallback when the provider says so now."""
        from nudgekit.channels import feedback

        with self.sessions() as session:
            unreachable = kind in feedback.KAKAO and feedback.unreachable_on_kakao(session, to, profile_id)
        if unreachable:
            if checked.fallback is None:
                return SendResult(checked, None, "the recipient is unreachable on Kakao and the message has no fallback")
            return SendResult(checked, None, "unreachable on Kakao: sent the fallback text message instead",
                              fallback=self._hand_over(MessageChannel.SMS, to, checked.fallback.message,
                                                       checked.fallback.checked, profile_id, f"{message_id}:sms"))
        result = self._hand_over(kind, to, message, checked, profile_id, message_id)
        if result.outcome is not None and result.outcome.fallback and checked.fallback is not None:
            fallback = self._hand_over(MessageChannel.SMS, to, checked.fallback.message, checked.fallback.checked,
                                       profile_id, f"{message_id}:sms")
            result = dataclasses.replace(result, fallback=fallback)
        return result

    # -- policy ------------------------------------------------------------------------------------

    def _policy_state(self, session: Any, stage: PolicyStage) -> Any:
        from nudgekit.channels.registry import check_parsed
        from nudgekit.policy.decision import State

        context = dataclasses.replace(self._check_context(session), now=None)  # Kakao's hours: the night rule's
        memo: dict[Any, Any] = {}

        def check(kind: MessageChannel, message: Any) -> Any:
            """The channel's check, once per message object (a batch shares its messages)."""
            kept = memo.get(("check", kind, id(message)))
            if kept is None or kept[0] is not message:
                kept = memo[("check", kind, id(message))] = (message, check_parsed(kind, message, context))
            return kept[1]

        return State(session, self.settings, stage, check, purchases=self._purchases, charges=self._charges,
                     unsubscribe_link=self._own_link, memo=memo)

    def _own_link(self, profile_id: str, channel: Channel = Channel.EMAIL) -> str | None:
        """The person's signed unsubscribe link for the channel; None without a public_url."""
        from nudgekit.consent import optout

        if not self.settings.public_url:
            return None
        return optout.link(self.settings.public_url, self._link_key(), profile_id, channel)

    def _charges(self, channel: MessageChannel) -> bool:
        """Whether the channel's provider costs money; asked once per provider (opening one makes an HTTP
        client, too slow to do per message)."""
        from nudgekit.channels import providers

        if channel not in self._channel_charges:
            name = providers.route(self.settings, channel)
            if name not in self._charging:
                provider = providers.open_for(channel, providers.Context(self.settings, self.sessions, self.clock))
                asyncio.run(provider.aclose())
                self._charging[name] = provider.capabilities.charges
            self._channel_charges[channel] = self._charging[name]
        return self._channel_charges[channel]

    def _purchases(self, profile_id: str, since: datetime) -> list[Any]:
        """The person's orders since `since`, with the kinds of goods in each (for the purchase exception)."""
        from nudgekit.policy.decision import Purchase

        rows = self.events.query(
            "SELECT timestamp, properties FROM events_resolved WHERE person_id = ? AND event = ? AND timestamp >= ?",
            [profile_id, self.settings.lifecycle.revenue_event, since])
        return [Purchase(row["timestamp"], _kinds_of_goods(row["properties"])) for row in rows]

    def _candidate(self, state: Any, kind: MessageChannel, fields: dict[str, Any], options: dict[str, Any]) -> Any:
        """The message as the chain judges it; made once per distinct message and options in a batch (the
        state's memo), then given this message's id, campaign and address."""
        options = {k: v for k, v in options.items() if v is not None}
        message_id = options.pop("message_id", None) or f"msg-{uuid.uuid4().hex}"
        if not 0 < len(message_id) <= 200:
            raise FieldError("message_id", "a message id is 1 to 200 characters")
        own = {k: options.pop(k) for k in ("campaign", "to") if k in options}
        key = ("candidate", kind, orjson.dumps([fields, options], option=orjson.OPT_SORT_KEYS, default=str))
        base = state.memo.get(key)
        if base is None:
            base = state.memo[key] = self._new_candidate(state, kind, fields, options)
        return dataclasses.replace(base, message_id=message_id, **own)

    def _new_candidate(self, state: Any, kind: MessageChannel, fields: dict[str, Any], options: dict[str, Any]) -> Any:
        from nudgekit.channels.registry import parse_message
        from nudgekit.policy.decision import Candidate
        from nudgekit.policy.hours import parse_window

        message = parse_message(kind, fields)
        options = dict(options)
        if "window" in options:
            try:
                options["window"] = parse_window(options["window"])
            except ValueError as exc:
                raise FieldError("window", str(exc)) from None
        if options.get("night") not in (None, "defer", "drop"):
            raise FieldError("night", "say defer (wait until 08:00) or drop")
        options["goods"] = tuple(g for g in options.get("goods", ()) if g.strip())
        return Candidate("", kind, message, state.check(kind, message), **options)

    def _prepared(self, session: Any, kind: MessageChannel, fields: dict[str, Any], from_template: str | None,
                  template_version: int | None) -> Any:
        """The message to render for each person — a saved template, or fields written with tags — or None
        when the fields are the same for everyone."""
        from nudgekit.templates import store
        from nudgekit.templates.render import dynamic

        if from_template is None:
            if template_version is not None:
                raise FieldError("template_version", "a template version goes with a template name")
            return store.inline(kind, fields, session, self.settings.language) if dynamic(fields) else None
        if fields:
            raise FieldError(next(iter(fields)), "the saved template holds the message's fields: give them there "
                             "or here, not both")
        prepared = store.prepare(session, from_template, template_version, self.settings.language)
        if prepared.channel != kind:
            raise FieldError("channel", f"{from_template!r} is a {prepared.channel.value} template, not "
                             f"{kind.value}")
        return prepared

    def _personals(self, session: Any, wanted: dict[Any, tuple[Any, Any, Any]], *,
                   take: bool = False) -> dict[Any, Any]:
        """Each wanted message (key -> (Prepared, Person, event)) rendered for its person: a Personal. With
        `take` the keys are message ids and each takes its coupon codes (templates/coupons.py) in the
        session's transaction; otherwise the codes shown are the next free ones, taken by nobody."""
        from nudgekit.templates import coupons, people
        from nudgekit.templates.personal import personalise

        if not wanted:
            return {}
        found = people.readers(session, {p.profile_id: p for _, p, _ in wanted.values()})
        values = people.workspace_values(self.settings)
        worked_out: dict[tuple[int, str], dict[str, Any]] = {}
        pools: dict[str, list[Any]] = {}
        for prepared in {id(t): t for t, _, _ in wanted.values()}.values():
            ids = sorted({p.profile_id for t, p, _ in wanted.values() if t is prepared})
            for profile_id, value in self._computed(prepared, ids).items():
                worked_out[(id(prepared), profile_id)] = value
            if "pools" not in prepared.memo:
                prepared.memo["pools"] = coupons.used(prepared.texts())
            for pool in prepared.memo["pools"]:
                pools.setdefault(pool, []).extend(
                    (key, person.profile_id) if take else key
                    for key, (t, person, _) in wanted.items() if t is prepared)
        codes = (coupons.take(session, pools, self.clock()) if take else coupons.peek(session, pools)) if pools \
            else {}
        return {key: personalise(prepared, found[person.profile_id], workspace=values, event=event,
                                 computed=worked_out.get((id(prepared), person.profile_id)), coupons=codes.get(key))
                for key, (prepared, person, event) in wanted.items()}

    def _computed(self, prepared: Any, people: list[str]) -> dict[str, dict[str, Any]]:
        """The `computed` values the prepared message's texts read, for these people (templates/computed.py);
        what all its people share is read once per send."""
        from nudgekit.templates.computed import Computer, used

        if "names" not in prepared.memo:
            prepared.memo["names"] = used(prepared.texts())
        names = prepared.memo["names"]
        if not names:
            return {}
        if self.settings.events_url:
            raise FieldError("computed", "computed values are worked out from the workspace's own event store; "
                             "in warehouse mode (events_url) templates cannot use them yet")
        if "computer" not in prepared.memo:
            prepared.memo["computer"] = Computer(self.events, self.settings, self.clock(), self._groups)
        return prepared.memo["computer"].compute(names, people)

    def _groups(self, people: list[str]) -> dict[str, str]:
        """Each person's group for `computed.popular_in_segment`: their lifecycle stage, or the value of the
        trait `[commerce] popular_by` names (people with none are left out)."""
        from nudgekit.segments import people as side

        by = self.settings.commerce.popular_by
        if not people:
            return {}
        if by == "stage":
            table = side.stages(self.engine, only=people)
            column = "stage"
        else:
            table, _ = side.people(self.engine, side.Needs(traits={by}), self.settings.timezone, only=people,
                                   declared=self.settings.traits or None)
            column = side.trait_column(by)
        return {pid: str(value) for pid, value in zip(table.column("person_id").to_pylist(),
                                                      table.column(column).to_pylist(), strict=True)
                if value is not None and str(value).strip()}

    def _linked(self, kind: MessageChannel, fields: dict[str, Any], campaign: str | None, prepared: Any) -> dict[str, Any]:
        """The fields with UTM parameters on links to the workspace's own domains (templates/links.py)."""
        from nudgekit.templates import links

        domains = self.settings.links.domains
        if not domains:
            return fields
        name = prepared.name if prepared is not None else None
        return links.tag(kind, fields, domains, {
            "utm_source": self.settings.links.utm_source, "utm_medium": links.medium(kind),
            "utm_campaign": campaign or name or "transactional",
            "utm_content": prepared.label if prepared is not None and prepared.name else None})

    def _person(self, session: Any, user: str) -> Any:
        from nudgekit.policy import people

        profile_id = self.resolve(user)
        person = people.load(session, self.settings, profile_id) if profile_id else None
        if person is None:
            raise FieldError("user", f"no user or anonymous id {user!r} in this workspace")
        return person

    def _pass(self, channel: Any, user: str, stage: PolicyStage, moment: datetime,
              options_and_fields: dict[str, Any]) -> tuple[Any, Any]:
        """One pass of the policy chain: a dry run at CHECK, a recorded gate otherwise. Returns the Ruling and
        the Person it judged."""
        from nudgekit.policy import chain
        from nudgekit.policy.decision import OPTIONS
        from nudgekit.templates import coupons
        from nudgekit.templates.personal import NotRendered
        from nudgekit.templates.render import Unrendered

        kind = _enum(MessageChannel, channel, "channel")
        fields = dict(options_and_fields)
        options = {k: fields.pop(k) for k in OPTIONS if k in fields}
        from_template, version = fields.pop("from_template", None), fields.pop("template_version", None)
        event = _event(fields.pop("event", None))
        dry = stage == PolicyStage.CHECK
        if self.settings.public_url:
            self._link_key()  # made now: the label rule signs links inside the gate's transaction
        with self.sessions() if dry else self.sessions.begin() as session:
            state = self._policy_state(session, stage)
            person = self._person(session, user)
            prepared = self._prepared(session, kind, fields, from_template, version)
            if prepared is not None:
                if not dry and not options.get("message_id"):
                    options["message_id"] = f"msg-{uuid.uuid4().hex}"  # the id its coupon codes are held by
                key = options.get("message_id") or 0
                done = self._personals(session, {key: (prepared, person, event)}, take=not dry)[key]
                if isinstance(done.result, Unrendered):
                    raise NotRendered(done.result)
                fields = done.result.fields
            fields = self._linked(kind, fields, options.get("campaign"), prepared)
            candidate = self._candidate(state, kind, fields, options)
            judge = chain.evaluate if dry else chain.gate
            ruling = judge(candidate, person, moment, state)
            if not dry and ruling.action == Action.SKIP and prepared is not None:
                coupons.release(session, [candidate.message_id])
            return ruling, person

    def check_for(self, channel: Any, user: str, *, at: datetime | None = None, **options_and_fields: Any) -> Any:
        """What the policy chain says, rule by rule, about sending this message to this user at `at` (now by
        default): a dry run — nothing is claimed, recorded or sent.

        Besides the message's fields it takes the options of a campaign's message (policy.decision.OPTIONS):
        campaign, priority, night ("defer" | "drop"), window ("HH:MM-HH:MM"), once_per_hours, budget_krw,
        goods (kinds of goods, for the purchase exception)."""
        return self._pass(channel, user, PolicyStage.CHECK, self._local(at or self.clock()), options_and_fields)[0]

    def gate(self, channel: Any, user: str, *, stage: PolicyStage | str = PolicyStage.QUEUE,
             **options_and_fields: Any) -> Any:
        """Pass one message for one user through the policy chain at a gate and record it: at QUEUE it holds
        a frequency-cap slot and budget, at HANDOVER it reads consent again and spends them (a withdrawal in
        between wins). Takes check_for's options plus message_id; returns the Ruling, with the message as it
        must go out."""
        at = _enum(PolicyStage, stage, "stage")
        if at == PolicyStage.CHECK:
            raise FieldError("stage", "a gate is queue or handover; check_for is the dry run")
        return self._pass(channel, user, at, self.clock(), options_and_fields)[0]

    def send(self, channel: Any, user: str, **options_and_fields: Any) -> PersonSend:
        """Send one message to one user through the policy chain (`gate` at HANDOVER): consent, suppression,
        the control group, the (광고) label and opt-out line (added when missing), the night rule and quiet
        hours, frequency caps and budget — recorded (`nudge explain`), then handed to the provider at the
        user's own address (every live push token), without the outbox: a message the chain defers is not
        sent (`queue` and `send_message` hold it)."""
        from nudgekit.channels import feedback
        from nudgekit.channels.provider import Verdict
        from nudgekit.policy import chain, suppression
        from nudgekit.templates import coupons

        ruling, person = self._pass(channel, user, PolicyStage.HANDOVER, self.clock(), options_and_fields)
        if not ruling.sends:
            with self.sessions.begin() as session:
                coupons.release(session, [ruling.candidate.message_id])
            return PersonSend(ruling, [])
        final = ruling.candidate
        with self.sessions() as session:
            live = [a for a in suppression.addresses(final, person)
                    if feedback.known_dead(session, final.channel, a) is None]
        results = [self._deliver(final.channel, address, final.message, final.checked, person.profile_id,
                                 final.message_id if i == 0 else f"{final.message_id}:{i}")
                   for i, address in enumerate(live)]
        went = any(r.outcome is not None and r.outcome.verdict in (Verdict.ACCEPTED, Verdict.UNCERTAIN)
                   or (r.fallback is not None and r.fallback.sent) for r in results)
        if not went:
            with self.sessions.begin() as session:
                chain.release(session, final.message_id)
                coupons.release(session, [final.message_id])
        return PersonSend(ruling, results)

    # -- templates ---------------------------------------------------------------------------------

    def save_template(self, template: Any) -> Any:
        """Save a template or snippet (a file, its fields as a dict, or a store.TemplateFile): a new version
        when it changed. FieldError when a text cannot be compiled, names a snippet not saved, or does not fit
        its channel."""
        from nudgekit.templates import store

        if isinstance(template, store.TemplateFile):
            spec = template
        else:
            spec = store.parse(template) if isinstance(template, dict) else store.read_file(Path(template))
        with self.sessions.begin() as session:
            return store.save(session, spec, self.clock(), self._checker)

    def _checker(self, channel: MessageChannel, fields: dict[str, Any]) -> Any:
        return self.check_message(channel, **fields)

    def templates(self) -> list[dict[str, Any]]:
        """Every saved template and snippet at its latest version."""
        from nudgekit.templates import store

        with self.sessions() as session:
            return store.listing(session)

    def template_history(self, name: str) -> list[dict[str, Any]]:
        """Every saved version of a template or snippet, oldest first."""
        from nudgekit.templates import store

        with self.sessions() as session:
            found = store.history(session, name)
        if not found:
            raise FieldError("template", f"no template or snippet called {name!r}")
        return found

    def load_coupons(self, pool: str, codes: Iterable[str] | Path) -> Any:
        """Add codes to a coupon pool (`{{ coupon.POOL }}` in a template): a list of codes, or a text or CSV
        file (first column; a header line such as `code` is passed over). A code the pool has already is left
        alone; a bad one (empty, spaces, longer than 64) is reported by line and the rest are loaded.
        Returns templates.coupons.Loaded."""
        from nudgekit.templates import coupons

        if isinstance(codes, Path):
            if not codes.is_file():
                raise FieldError("file", f"{codes} is not a file")
            lines: Iterable[tuple[int, str]] = coupons.read_codes(codes)
        elif isinstance(codes, str):
            raise FieldError("codes", "give a list of codes or a Path to a file of them")
        else:
            lines = enumerate((str(c) for c in codes), start=1)
        with self.sessions.begin() as session:
            return coupons.load(session, pool, lines, self.clock())

    def coupon_pools(self) -> list[dict[str, Any]]:
        """Every coupon pool with its codes, free and taken."""
        from nudgekit.templates import coupons

        with self.sessions() as session:
            return coupons.pools(session)

    def find_coupon(self, code: str) -> list[dict[str, Any]]:
        """Who holds a code (in every pool that has it): the message, the person and since when."""
        from nudgekit.templates import coupons

        with self.sessions() as session:
            return coupons.find(session, code)

    def preview(self, user: str, *, template: str | Path | None = None, template_version: int | None = None,
                channel: Any = None, event: dict[str, Any] | None = None, at: datetime | None = None,
                campaign: str | None = None, **fields: Any) -> dict[str, Any]:
        """Exactly what `user` would receive, and nothing claimed or recorded: the message rendered for them
        (a saved template by name, a template file not saved yet, or `fields` with `channel`), then as the
        policy chain leaves it (label, opt-out line, the SMS/LMS choice) with its size and cost, and what the
        chain would do with it at `at` (now by default). A message that cannot be rendered says why."""
        return self._previews([user], template=template, template_version=template_version, channel=channel,
                              event=event, at=at, campaign=campaign, **fields)[0]

    def preview_sample(self, count: int, *, segment: Any = None, seed: int | None = None,
                       **preview: Any) -> dict[str, Any]:
        """`preview` for `count` people picked at random (from the segment's members, else everyone): the
        variety a template makes, and how many it would skip and why."""
        import random

        if not 0 < count <= 100:
            raise FieldError("sample", "sample 1 to 100 people")
        if segment is not None:
            pool = [str(p) for p in self.segment_members(segment).column("person_id").to_pylist()]
        else:
            with self.sessions() as session:
                pool = list(session.scalars(select(Profile.profile_id).where(Profile.merged_into.is_(None))))
        pool.sort()
        picked = random.Random(seed).sample(pool, min(count, len(pool)))
        shown = self._previews(picked, **preview) if picked else []
        outcomes: dict[str, int] = {}
        for one in shown:
            key = one["unrendered"]["reason"] if one["rendered"] is None else "rendered"
            outcomes[key] = outcomes.get(key, 0) + 1
        return {"population": len(pool), "sampled": len(shown), "outcomes": outcomes, "previews": shown}

    def _previews(self, users: list[str], *, template: str | Path | None = None, template_version: int | None = None,
                  channel: Any = None, event: dict[str, Any] | None = None, at: datetime | None = None,
                  campaign: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """`preview` for several people: the message prepared once, rendered for all of them together."""
        from nudgekit.policy import chain
        from nudgekit.templates import store
        from nudgekit.templates.render import Unrendered

        event = _event(event)
        moment = self._local(at or self.clock())
        with self.sessions() as session:
            persons = [self._person(session, user) for user in users]
            if template is not None and Path(template).suffix.lower() in (".yaml", ".yml", ".json"):
                prepared = store.unsaved(session, store.read_file(Path(template)), self.settings.language,
                                         self._checker)
            elif template is not None:
                prepared = store.prepare(session, str(template), template_version, self.settings.language)
            else:
                if channel is None:
                    raise FieldError("channel", "name the channel of the message (or a saved template)")
                kind = _enum(MessageChannel, channel, "channel")
                prepared = self._prepared(session, kind, fields, None, None) or store.Prepared(
                    kind, {self.settings.language: fields}, self.settings.language)
            if channel is not None and _enum(MessageChannel, channel, "channel") != prepared.channel:
                raise FieldError("channel", f"the template is for {prepared.channel.value}, not {channel}")
            personal = self._personals(session, {i: (prepared, p, event) for i, p in enumerate(persons)})
            state = self._policy_state(session, PolicyStage.CHECK)
            shown = []
            for i, (user, person) in enumerate(zip(users, persons, strict=True)):
                done = personal[i]
                out: dict[str, Any] = {"user": user, "profile_id": person.profile_id,
                                       "channel": prepared.channel.value, "template": prepared.label,
                                       "language": done.language, "snippets": dict(prepared.snippets),
                                       "coupons": dict(done.coupons)}
                if isinstance(done.result, Unrendered):
                    shown.append({**out, "rendered": None, "unrendered": {
                        "reason": done.result.reason, "field": done.result.field, "detail": done.result.detail}})
                    continue
                going = self._linked(prepared.channel, done.result.fields, campaign, prepared)
                try:
                    candidate = self._candidate(state, prepared.channel, going, {"campaign": campaign})
                except FieldError as exc:
                    shown.append({**out, "rendered": None, "unrendered": {
                        "reason": "template_error", "field": exc.field, "detail": f"as rendered: {exc.reason}"}})
                    continue
                ruling = chain.evaluate(candidate, person, moment, state)
                final = ruling.candidate
                shown.append({**out, "rendered": done.result.fields,
                              "goes_out": final.message.model_dump(mode="json", exclude_none=True,
                                                                   exclude_defaults=True),
                              "check": final.checked.as_dict(),
                              "policy": {k: v for k, v in ruling.as_dict().items()
                                         if k in ("action", "reason", "until", "decisions", "purpose")}})
        return shown

    # -- delivery ----------------------------------------------------------------------------------

    def queue(self, campaign: str, channel: Any, users: Iterable[str], *, occurrence: str = "1",
              step: str | None = None, per_minute: float | None = None, in_doubt: str | None = None,
              at: datetime | None = None, progress: Callable[[int], None] | None = None,
              from_template: str | None = None, template_version: int | None = None,
              event: dict[str, Any] | None = None, **options_and_fields: Any) -> Any:
        """Put one message per user in the outbox for a campaign, each through the policy chain's QUEUE gate;
        workers send them (`work`, `nudge worker`). Keyed by (campaign, step, user, occurrence): queueing
        the same again adds nothing. Takes the message's fields and check_for's options, plus the campaign's
        delivery speed (`per_minute`), what a crash mid-send does (`in_doubt`: hold | resend; by default
        hold for advertising, resend for informational) and when to start (`at`).

        The message is rendered for each person (templates/): a saved template (`from_template`, its latest
        version unless `template_version`), or fields whose texts have tags; `event` is what templates read
        as `event`. A person whose message cannot be rendered is skipped with the reason (missing_data,
        template_error)."""
        from nudgekit.channels.registry import parse_message
        from nudgekit.delivery import outbox, plan

        kind = _enum(MessageChannel, channel, "channel")
        if not 0 < len(campaign or "") <= 200:
            raise FieldError("campaign", "a campaign name is 1 to 200 characters")
        if per_minute is not None and not per_minute > 0:
            raise FieldError("per_minute", "a delivery speed is a number of messages a minute above 0")
        plan.check_in_doubt(in_doubt)
        fields, options = plan.split(options_and_fields)
        event = _event(event)
        with self.sessions() as session:
            prepared = self._prepared(session, kind, fields, from_template, template_version)
        if prepared is None:
            parse_message(kind, fields)  # a wrong field fails before any row is written
        with self.sessions.begin() as session:
            try:
                outbox.open_campaign(session, campaign, per_minute, self.clock())
            except ValueError as exc:
                raise FieldError("campaign", str(exc)) from None

        def requests() -> Iterator[tuple[Any, str | None]]:
            remaining = iter(users)
            while chunk := [str(u) for u in itertools.islice(remaining, plan.BATCH)]:
                resolved = self.resolve_many(chunk)
                for name in chunk:
                    person = resolved.get(name)
                    key = "/".join((campaign, step or "-", person or name, occurrence))
                    yield plan.Request(key, kind, fields, options, campaign, None, in_doubt, at, prepared,
                                       event), person

        return plan.plan(self, requests(), campaign=campaign, progress=progress)

    # -- campaigns ---------------------------------------------------------------------------------

    def plan_campaigns(self, directory: Path | str, *, progress: Any = None) -> dict[str, Any]:
        """What `apply_campaigns` would change and send, from a folder (or one file) of campaign files: each
        new or changed campaign's next run launched on a throw-away copy, with preflight. Writes nothing."""
        from nudgekit.campaigns import code

        return code.plan(self, Path(directory), progress=progress)

    def apply_campaigns(self, directory: Path | str, *, applied_by: str | None = None,
                        progress: Any = None) -> dict[str, Any]:
        """Make the folder's new and changed campaigns live (those preflight lets through) and launch the
        runs due now."""
        from nudgekit.campaigns import code

        return code.apply(self, Path(directory), applied_by=applied_by, progress=progress)

    def test_send_campaigns(self, directory: Path | str, *, name: str | None = None, to: list[str] | None = None
                            ) -> dict[str, Any]:
        """Send every message of the folder's campaign files (or of the one called `name`) now to the internal
        test users ([policy] test_list; `to`: some of them), through the policy chain, outside the campaign;
        what happened to each."""
        from nudgekit.campaigns import proof

        return proof.send(self, Path(directory), name=name, to=to)

    def approve_campaign(self, name: str, version: int, by: str, *, progress: Any = None) -> dict[str, Any]:
        """A second person (one of [campaigns] approvers, not who applied it) approves exactly this version of
        a campaign waiting for approval; it passes preflight again and goes live as apply would have made it."""
        from nudgekit.campaigns import code

        return code.approve(self, name, version, by, progress=progress)

    def tick_campaigns(self, *, progress: Any = None) -> list[dict[str, Any]]:
        """Launch every campaign run that is due (what `nudge serve` does every `[campaigns] tick_seconds`)."""
        from nudgekit.campaigns import code

        return code.tick(self, progress=progress)

    def control_campaign(self, name: str, action: str) -> dict[str, Any]:
        """pause | resume | cancel an applied campaign: pause stops its sending and its schedule; resume
        starts both again and releases a canary a guardrail halted (a person has looked); cancel ends it
        (its waiting messages are cancelled, no run launches again)."""
        from nudgekit.campaigns import code

        released = code.control(self, name, action)
        return {**self.campaign(name), "released": released}

    def enter_journey(self, name: str, user: str, *, properties: dict[str, Any] | None = None,
                      key: str | None = None) -> dict[str, Any]:
        """Put a user in a journey whose entry is `api: true` (the journey's rules decide): `key` makes a
        retried call enter once; `properties` are what its messages read as `event`."""
        from nudgekit.campaigns import engine

        check_user_id(user)
        if properties is not None and not isinstance(properties, dict):
            raise FieldError("properties", "a mapping of names to values")
        with self.sessions() as session:
            live = next((j for j in engine.live_journeys(session) if j.name == name), None)
        if live is None:
            raise FieldError("journey", f"no live journey called {name!r} (nudge campaign list)")
        if not live.spec.entry.api:
            raise FieldError("journey", f"{name!r} starts on {live.spec.entry.kind}, not on a call: its file "
                             "says entry: {api: true} for that")
        profile_id = self.resolve(user)
        if profile_id is None:
            raise FieldError("user", f"no user {user!r} is known here (identify them first)")
        entry_key = f"api:{key}" if key else f"api:{uuid.uuid4().hex}"
        done = engine.enter(self, live, [engine.Entering(profile_id, entry_key, {
            "event": "journey_entered", "properties": properties or {}})])
        walked = engine.advance(self, ids=done.entered) if done.entered else {}
        answer = done.as_dict()
        return {"journey": name, "user": user, **answer, "steps": dict(walked),
                "entries": engine.entries_of(self, name, profile_id)[-1:]}

    def journey_entries(self, name: str, user: str) -> list[dict[str, Any]]:
        """A user's walks through a journey: version, step, timer, path, how each ended."""
        from nudgekit.campaigns import engine

        profile_id = self.resolve(user) or user
        return engine.entries_of(self, name, profile_id)

    def campaigns(self) -> list[dict[str, Any]]:
        """Every applied campaign: live version, state, next run."""
        from nudgekit.store.state import Campaign

        with self.sessions() as session:
            rows = session.scalars(select(Campaign).order_by(Campaign.name)).all()
            return [{"name": r.name, "kind": r.kind, "version": r.version, "state": r.state,
                     "next_run_at": _iso(r.next_run_at), "updated_at": _iso(r.updated_at), "detail": r.detail}
                    for r in rows]

    def campaign(self, name: str) -> dict[str, Any]:
        """One campaign: its live spec, every version, its runs."""
        from nudgekit.campaigns import live
        from nudgekit.store.state import CampaignVersion

        with self.sessions() as session:
            now = live.current(session, name)
            if now is None:
                raise FieldError("campaign", f"no campaign called {name!r} has been applied (nudge campaign list)")
            versions = session.scalars(select(CampaignVersion).where(CampaignVersion.name == name)
                                       .order_by(CampaignVersion.version)).all()
            runs = live.runs(session, name)
            standing = None
            if now.kind == "journey":
                from nudgekit.campaigns import engine

                standing = engine.standing(self, name)
            return {"name": name, "kind": now.kind, "version": now.version, "state": now.state,
                    "next_run_at": _iso(now.next_run_at), "spec": now.spec, "journey": standing,
                    "versions": [{"version": v.version, "digest": v.digest, "source": v.source,
                                  "applied_by": v.applied_by, "applied_at": _iso(v.applied_at),
                                  "approved_by": v.approved_by, "approved_at": _iso(v.approved_at)} for v in versions],
                    "runs": [{"occurrence": r.occurrence, "version": r.version, "state": r.state,
                              "due_at": _iso(r.due_at), "started_at": _iso(r.started_at),
                              "finished_at": _iso(r.finished_at), "result": r.result} for r in runs]}

    def send_message(self, channel: Any, user: str, *, idempotency_key: str | None = None, to: str | None = None,
                     in_doubt: str | None = None, from_template: str | None = None,
                     template_version: int | None = None, event: dict[str, Any] | None = None,
                     **options_and_fields: Any) -> dict[str, Any]:
        """Send one message now through the outbox and the policy chain (the transactional API): an order
        notice, a password reset. The same `idempotency_key` again returns the first message's record and
        sends nothing; used for a different message it is refused. Rendered for the person as `queue` does
        (`from_template`, `template_version`, `event`); one that cannot be rendered is recorded as skipped."""
        from nudgekit.channels.registry import parse_message, recipient
        from nudgekit.delivery import outbox, plan
        from nudgekit.delivery.worker import Worker
        from nudgekit.store.state import OutboxMessage

        kind = _enum(MessageChannel, channel, "channel")
        plan.check_in_doubt(in_doubt)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
            raise FieldError("Idempotency-Key", "an idempotency key is 1 to 255 characters")
        fields, options = plan.split(options_and_fields)
        event = _event(event)
        with self.sessions() as session:
            prepared = self._prepared(session, kind, fields, from_template, template_version)
        if prepared is None:
            parse_message(kind, fields)
        address = recipient(kind, to, self.settings) if to else None
        profile_id = self.resolve(user)
        if profile_id is None:
            raise FieldError("user", f"no user or anonymous id {user!r} in this workspace")
        key = f"api/{idempotency_key or uuid.uuid4().hex}"
        message_id = outbox.message_id_for(key)
        request = plan.Request(key, kind, fields, options, None, address, in_doubt, template=prepared, event=event)
        wanted = {"channel": kind.value, "fields": fields, "options": options, "to": address, "user": profile_id,
                  "source": plan.source(request)}
        with self.sessions() as session:
            row = session.get(OutboxMessage, message_id)
            if row is not None:
                return self._replayed(row, wanted)
        planned = plan.plan(self, [(request, profile_id)])
        if not planned.existing:  # a concurrent request with the same key planned it first: it sends it
            asyncio.run(Worker(self).once([message_id]))
        with self.sessions() as session:
            row = session.get(OutboxMessage, message_id)
            assert row is not None
            return self._replayed(row, wanted) if planned.existing else {**outbox.row_dict(row), "replayed": False}

    def _replayed(self, row: Any, wanted: dict[str, Any]) -> dict[str, Any]:
        from nudgekit.delivery import outbox

        first = {"channel": row.channel, "fields": row.source.get("fields", {}) if row.source else row.fields,
                 "options": row.options, "to": row.to, "user": row.profile_id, "source": row.source}
        if orjson.dumps(first, option=orjson.OPT_SORT_KEYS) != orjson.dumps(wanted, option=orjson.OPT_SORT_KEYS):
            raise FieldError("Idempotency-Key", "this key was used for a different message: use a new key for a "
                             "new message")
        return {**outbox.row_dict(row), "replayed": True}

    def work(self, *, until_idle: bool = True, receipts: bool = True) -> dict[str, int]:
        """Run a delivery worker in this process: until nothing is due now (until_idle), or for good."""
        from nudgekit.delivery.worker import Worker

        return asyncio.run(Worker(self).run(until_idle=until_idle, receipts=receipts)).as_dict()

    def send_status(self, campaign: str) -> dict[str, Any]:
        """Where a campaign's messages stand: queued, sent, deferred, skipped by reason, failed, in doubt,
        cost, and what receipts said."""
        from nudgekit.delivery import outbox

        with self.sessions() as session:
            found = outbox.status(session, campaign)
        if found is None:
            raise FieldError("campaign", f"no campaign {campaign!r} has queued messages")
        return found

    def control_send(self, campaign: str, action: str) -> dict[str, Any]:
        """pause | resume | cancel a campaign's sending: workers stop taking its messages within a step;
        cancelling gives back the frequency-cap slots and budget its waiting messages held."""
        from nudgekit.delivery import outbox
        from nudgekit.vocabulary import CampaignSendState

        states = {"pause": CampaignSendState.PAUSED, "resume": CampaignSendState.RUNNING,
                  "cancel": CampaignSendState.CANCELLED}
        if action not in states:
            raise FieldError("action", "say pause, resume or cancel")
        self.send_status(campaign)
        with self.sessions.begin() as session:
            try:
                cancelled = outbox.control(session, campaign, states[action], self.clock())
            except ValueError as exc:
                raise FieldError("campaign", str(exc)) from None
        return {**self.send_status(campaign), "cancelled_now": len(cancelled)}

    def outbox_messages(self, *, campaign: str | None = None, state: str | None = None, user: str | None = None,
                        limit: int = 20) -> list[dict[str, Any]]:
        """Outbox rows, newest first, with their state and reason."""
        from nudgekit.delivery import outbox
        from nudgekit.store.state import OutboxMessage
        from nudgekit.vocabulary import OutboxState

        query = select(OutboxMessage)
        if campaign is not None:
            query = query.where(OutboxMessage.campaign == campaign)
        if state is not None:
            query = query.where(OutboxMessage.state == _enum(OutboxState, state, "state").value)
        if user is not None:
            query = query.where(OutboxMessage.profile_id == (self.resolve(user) or user))
        with self.sessions() as session:
            rows = session.scalars(query.order_by(OutboxMessage.updated_at.desc()).limit(limit))
            return [outbox.row_dict(r) for r in rows]

    def explain(self, *, user: str | None = None, campaign: str | None = None, message_id: str | None = None,
                limit: int = 20) -> list[dict[str, Any]]:
        """The recorded policy passes (newest first) for a user, a campaign's messages to them, or a message:
        the answer to "why didn't this user get it?"."""
        from nudgekit.policy import chain

        if user is None and message_id is None:
            raise FieldError("user", "name a user (with or without a campaign) or a message id")
        profile_id = None
        if user is not None:
            profile_id = self.resolve(user)
            if profile_id is None:
                raise FieldError("user", f"no user or anonymous id {user!r} in this workspace")
        with self.sessions() as session:
            rows = chain.recorded(session, profile_id=profile_id, campaign=campaign, message_id=message_id,
                                  limit=limit)
            return [_evaluation_dict(r) for r in rows]

    def _hand_over(self, kind: MessageChannel, to: str, message: Any, checked: Any, profile_id: str | None,
                   message_id: str) -> SendResult:
        """One checked message to its provider, unless the address is known dead; what the answer says about
        the recipient is remembered."""
        from nudgekit.channels import feedback, providers
        from nudgekit.delivery import handover

        with self.sessions() as session:
            dead = feedback.known_dead(session, kind, to)
        if dead is not None:
            return SendResult(checked, None, dead)
        envelope = handover.envelope(message_id, kind, to, message, checked, profile_id)
        provider = providers.open_for(kind, providers.Context(self.settings, self.sessions, self.clock), to)
        with self.sessions.begin() as session:
            refused = handover.begin(session, [handover.Handed(envelope, checked.cost_krw)], provider, self.clock())
        if refused:
            asyncio.run(provider.aclose())
            return SendResult(checked, None, refused[message_id].detail, provider.name)
        outcome = providers.run_once(provider, lambda p: handover.call(p, [envelope]))[0]
        with self.sessions.begin() as session:
            learned = handover.end(session, [envelope], [outcome], provider, self.clock())[0]
        return SendResult(checked, outcome, learned, provider.name)

    def kakao_templates(self, status: Any = None) -> list[Any]:
        """The AlimTalk template registry, by code."""
        from nudgekit.channels.kakao import templates

        wanted = _enum(TemplateStatus, status, "status") if status is not None else None
        with self.sessions() as session:
            return templates.listed(session, wanted)

    def add_kakao_template(self, code: str, *, text: str, name: str | None = None,
                           buttons: Sequence[dict[str, Any]] = (), status: Any = "pending") -> Any:
        """Add or replace a template by hand: for the sandbox, or to check AlimTalks before the provider has
        it. A sync with a real provider replaces what it knows about."""
        from nudgekit.channels.kakao import templates
        from nudgekit.channels.kakao.buttons import KakaoButton

        try:
            parsed = tuple(KakaoButton.model_validate(b) for b in buttons)
        except ValidationError as exc:
            raise FieldError.first_of(exc, "buttons.") from None
        template = templates.Template(code, name or code, text.replace("\r\n", "\n"),
                                      _enum(TemplateStatus, status, "status"), parsed)
        templates.validate(template)
        with self.sessions.begin() as session:
            templates.save(session, template, self.clock())
        return template

    def sync_kakao_templates(self) -> Any:
        """Replace the registry's templates from the AlimTalk provider ([providers] alimtalk) with what it
        has now: new ones added, status changes (pending -> approved, rejected with Kakao's comment) applied,
        deleted ones removed. Templates added by hand stay."""
        from nudgekit.channels import providers
        from nudgekit.channels.kakao import templates

        provider: Any = providers.open_for(MessageChannel.ALIMTALK,
                                           providers.Context(self.settings, self.sessions, self.clock))

        if not hasattr(provider, "templates"):
            asyncio.run(provider.aclose())
            raise ValueError(f"[providers] alimtalk = {provider.name!r}, which keeps no templates to sync: add "
                             "templates by hand with `nudge kakao templates add`, or route alimtalk to a provider")
        fetched = providers.run_once(provider, lambda p: p.templates())
        with self.sessions.begin() as session:
            return templates.sync(session, fetched, provider.name, self.clock())

    def check_receipts(self, *, limit: int = 10_000, progress: Callable[[int], None] | None = None
                       ) -> dict[str, Any]:
        """Ask the vendors that report later (Solapi, NHN Cloud) what became of the messages they accepted
        and write it down (channels/receipts.py): delivered or failed, numbers that do not exist suppressed,
        people who are not on KakaoTalk remembered, failed messages refunded, one event per message.

        Returns {"checked": n, "closed": [...], "waiting": n, "unavailable": {provider: why}}."""
        from nudgekit.channels import providers, receipts
        from nudgekit.channels.provider import ReceiptsUnavailable

        with self.sessions() as session:
            waiting = [(row.provider, receipts.asked(row)) for row in receipts.awaiting(session, limit=limit)]
        by_provider: dict[str, list[Any]] = {}
        for name, sent in waiting:
            by_provider.setdefault(name, []).append(sent)
        context = providers.Context(self.settings, self.sessions, self.clock)
        closed: list[Any] = []
        unavailable: dict[str, str] = {}
        for name, sent in by_provider.items():
            found: dict[str, Any] = {}
            try:
                provider: Any = providers.PROVIDERS[name](context)
            except ValueError as exc:
                unavailable[name] = str(exc)
            else:
                try:
                    found = providers.run_once(provider, lambda p, sent=sent: p.receipts(sent))
                except ReceiptsUnavailable as exc:
                    unavailable[name] = str(exc)
            events = []
            with self.sessions.begin() as session:
                # locked together in id order, skipping rows another worker is writing (it settles them;
                # the next check sees the rest): one at a time in each poll's own order, two workers
                # polling at once deadlocked on PostgreSQL
                rows: dict[str, Any] = {}
                for chunk in in_batches(sorted({m.message_id for m in sent})):
                    rows.update((r.message_id, r) for r in session.scalars(
                        select(DirectSend).where(DirectSend.message_id.in_(chunk)).order_by(DirectSend.message_id)
                        .with_for_update(skip_locked=True)))
                for message in sent:
                    row = rows.get(message.message_id)
                    if not receipts.still_waiting(row, message):
                        continue
                    result, event = receipts.apply(session, row, found.get(message.message_id), self.clock())
                    if result is not None:
                        closed.append(result)
                    if event is not None:
                        events.append(event)
            for event in events:
                self._send(event)
            if progress is not None:
                progress(len(sent))
        self.flush()
        return {"checked": len(waiting), "closed": [c.as_dict() for c in closed],
                "waiting": len(waiting) - sum(1 for c in closed if c.fallback != "pending"),
                "unavailable": unavailable}

    def read_bounces(self, mails: Iterable[tuple[str, bytes]], *,
                     progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Read bounce reports (DSN) and spam complaints (ARF) mailed back to `[smtp] return_path`: a hard
        bounce suppresses the address and closes the message as failed, an abuse complaint suppresses it too
        (channels/email/bounces.py). A report acts only when it names one of our messages (its
        `X-Nudge-Message-Id`) sent to the address it reports on. `mails` are (where, raw bytes), as
        `bounces.mails(paths)` yields them; reading the same mail twice changes nothing."""
        from nudgekit.channels.email import bounces

        seen = 0
        ignored: list[str] = []
        results: list[dict[str, Any]] = []
        for where, raw in mails:
            seen += 1
            found = bounces.parse(raw)
            if not found:
                ignored.append(where)
            events: list[dict[str, Any]] = []
            with self.sessions.begin() as session:
                for report in found:
                    applied = bounces.apply(session, report, self.clock())
                    results.append({**report.as_dict(), "mail": where, "acted": applied.acted,
                                    "learned": applied.learned})
                    if applied.event is not None:
                        events.append(applied.event)
            for event in events:  # each mail's events once its records are committed
                self._send(event)
            if progress is not None:
                progress(1)
        self.flush()
        return {"mails": seen, "reports": results, "not_reports": ignored,
                "suppressed": sorted({r["recipient"] for r in results if "suppressed" in (r["learned"] or "")})}

    def remove_kakao_template(self, code: str) -> bool:
        from nudgekit.channels.kakao import templates

        with self.sessions.begin() as session:
            return templates.remove(session, code)

    def balance(self, history: int = 0) -> dict[str, Any]:
        """The prepaid message points: balance, topped up, spent, and the latest `history` ledger entries."""
        from nudgekit.channels import balance

        with self.sessions() as session:
            out = balance.summary(session).as_dict()
            if history:
                out["history"] = balance.history(session, history)
        return out

    def top_up(self, amount_krw: float, note: str | None = None) -> dict[str, Any]:
        """Add message points (the first top-up turns the prepaid balance on: sends then stop when it runs out)."""
        from nudgekit.channels import balance

        try:
            with self.sessions.begin() as session:
                balance.top_up(session, amount_krw, self.clock(), note)
        except ValueError as exc:
            raise FieldError("amount", str(exc)) from None
        return self.balance()

    def provider_balance(self) -> dict[str, Any] | None:
        """What the text-message provider says is left in its own account (Solapi), or None if it cannot say."""
        from nudgekit.channels import providers

        provider: Any = providers.open_for(MessageChannel.SMS,
                                           providers.Context(self.settings, self.sessions, self.clock))

        if not hasattr(provider, "balance"):
            asyncio.run(provider.aclose())
            return None
        answer = providers.run_once(provider, lambda p: p.balance())
        return {"provider": provider.name, **answer}

    def outbox(self, *, channel: Any = None, to: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """What the sandbox provider recorded instead of sending, newest first."""
        from nudgekit.channels.sandbox import recorded

        kind = _enum(MessageChannel, channel, "channel") if channel is not None else None
        return recorded(self.sessions, channel=kind, to=to, limit=limit)

    def _person_of(self, profile_id: str) -> str:
        """A user id, or `anon:<anonymousId>`, as the person it now is (a visitor who signed in is the user)."""
        with self.sessions() as session:
            merged = session.scalar(select(Profile.merged_into).where(Profile.profile_id == profile_id))
        return merged or profile_id

    def inbox(self, channel: Any = MessageChannel.INAPP, *, user_id: str | None = None,
              anonymous_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The in-app messages (or content cards) the app shows this person now, as `GET /v1/inapp` and
        `GET /v1/cards` serve them."""
        from nudgekit.channels.inapp import inbox

        kind = _inbox_channel(channel)
        _inbox_ids(user_id, anonymous_id)
        with self.sessions() as session:
            return inbox.feed(session, kind, inbox.people(session, user_id, anonymous_id), self.clock(), limit)

    def report_inbox(self, message_id: str, kind: str, *, user_id: str | None = None,
                     anonymous_id: str | None = None, button: int | None = None,
                     track: bool = True, consent: bool = True) -> dict[str, Any]:
        """What the app reports about an in-app message or card: `impression`, `click` (of the message, or of
        button N, 1-based) or `dismiss`. A consent button records advertising consent (source in_app) on its
        channels in the same transaction (unless `consent` is False: then a click on a consent button is
        refused with PermissionError and nothing is recorded). The report becomes a track event ("In-App
        Message Clicked" ...), stored here when `track`, else returned under "event" for the caller to store;
        its message id is fixed by the report, so a repeated report changes nothing and is stored once."""
        from nudgekit.channels.inapp import inbox

        if kind not in inbox.REPORTS:
            raise FieldError("type", f'"{kind}" is not one of {", ".join(inbox.REPORTS)}')
        _inbox_ids(user_id, anonymous_id)
        now = self.clock()
        consents: list[dict[str, Any]] = []
        with self.sessions.begin() as session:
            try:
                done = inbox.report(session, message_id, kind, inbox.people(session, user_id, anonymous_id), now,
                                    button)  # type: ignore[arg-type]
            except inbox.NotInInbox:
                raise LookupError(f"{message_id} is not in this person's inbox") from None
            except ValueError as exc:
                raise FieldError("button", str(exc)) from None
            pressed = done.button or {}
            if pressed.get("action") == "consent" and not consent:
                raise PermissionError("a consent button records consent only for a signed-in user whose request "
                                      "carries a valid Nudge-User-Token ([inbox] user_token_secret)")
            if pressed.get("action") == "consent":
                consents = self._consent_from_inbox(session, done.item.profile_id, message_id, button or 0, pressed,
                                                    now)
        channel = MessageChannel(done.item.channel)
        answer: dict[str, Any] = {"id": message_id, "type": kind, "first": done.first, "consents": consents}
        if pressed:
            answer["action"] = {k: v for k, v in pressed.items() if k in ("action", "url", "consent_channels")}
        properties = {"message_id": message_id, "channel": channel.value, "ad": done.item.ad}
        if button is not None:
            properties |= {"button": button, "button_label": pressed.get("label"), "action": pressed.get("action")}
            if pressed.get("url"):
                properties["url"] = pressed["url"]
        elif kind == "click" and done.item.body.get("link"):
            properties["url"] = done.item.body["link"]
        event = {"type": "track", "event": inbox.EVENTS[(channel, kind)], "userId": user_id,
                 "anonymousId": anonymous_id, "messageId": f"{message_id}:{kind}:{button or 0}",
                 "timestamp": done.at.isoformat(), "properties": properties}
        if track:
            self._send(event)
        else:
            answer["event"] = event
        return answer

    def _consent_from_inbox(self, session: Any, profile_id: str, message_id: str, button: int,
                            pressed: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """The consent a button records, on the person the message was delivered to (or whom they became)."""
        profile = session.get(Profile, profile_id)
        if profile is None:
            anonymous = profile_id.removeprefix("anon:") if profile_id.startswith("anon:") else None
            profile = Profile(profile_id=profile_id, user_id=None if anonymous else profile_id, anonymous_id=anonymous,
                              traits={}, created_at=now, updated_at=now)
            session.add(profile)
            session.flush()
        person = profile.merged_into or profile.profile_id
        evidence = f'in-app message {message_id}, button {button} "{pressed.get("label")}"'
        updates = [ConsentUpdate(Channel(c), Purpose.ADVERTISING, ConsentChange.GRANTED, now, ConsentSource.IN_APP,
                                 evidence) for c in pressed.get("consent_channels", [])]
        history.record(session, person, updates, now=now, dedupe_key=f"inapp:{message_id}:{button}")
        state = history.current(session, person)
        return [state[(u.channel, u.purpose)].as_dict() for u in updates]

    def set_sender(self, *, add_sms_numbers: Sequence[str] = (), remove_sms_numbers: Sequence[str] = (),
                   **changes: Any) -> SenderSettings:
        """Change the sender settings in nudge.toml (a value of "" clears it) and return them.

        `changes` are SenderSettings fields; `sms_numbers` replaces the list, the two others edit it."""
        unknown = set(changes) - set(SenderSettings.model_fields)
        if unknown:
            raise FieldError(sorted(unknown)[0], "is not a sender setting")
        merged = self.settings.sender.model_dump()
        merged.update({k: (v or None) if isinstance(v, str) else v for k, v in changes.items()})
        try:
            sender = SenderSettings.model_validate({**merged, "sms_numbers": [*merged["sms_numbers"], *add_sms_numbers]})
        except ValidationError as exc:
            raise FieldError.first_of(exc, "sender.") from None
        try:
            drop = {sender_number(n) for n in remove_sms_numbers}
        except ValueError as exc:
            raise FieldError("sender.sms_numbers", str(exc)) from None
        missing = drop - set(sender.sms_numbers)
        if missing:
            raise FieldError("sender.sms_numbers", f"{', '.join(sorted(missing))} is not a registered sender number")
        sender = sender.model_copy(update={"sms_numbers": [n for n in sender.sms_numbers if n not in drop]})
        touched = set(changes) | ({"sms_numbers"} if add_sms_numbers or remove_sms_numbers else set())
        written = sender.model_dump()
        write_section(self.settings.home, "sender", {k: written[k] or None for k in sorted(touched)})
        self.settings = self.settings.model_copy(update={"sender": sender})
        return sender

    # -- segments ------------------------------------------------------------------------------

    def segment_preview(self, segment: Any) -> Any:
        """Size, reach per channel with and without advertising consent, stages, a sample of members."""
        from nudgekit.segments import audience

        with self._behaviour() as (view, _):
            return audience.preview(self.engine, view, segment, today=self.today(), zone=self.settings.timezone,
                                    declared=self.settings.traits, snapshot=self.lifecycle_snapshot)

    def segment_members(self, segment: Any) -> pa.Table:
        """Every member: person_id, user_id, anonymous_id, stage."""
        from nudgekit.segments import audience

        with self._behaviour() as (view, _):
            return audience.members(self.engine, view, segment, today=self.today(), zone=self.settings.timezone,
                                    declared=self.settings.traits, snapshot=self.lifecycle_snapshot)

    def is_member(self, segment: Any, user_id: str) -> bool:
        """Does this user (or anonymous visitor) belong to the segment now? For one event at a time."""
        return user_id in self.members_among(segment, [user_id])

    def members_among(self, segment: Any, user_ids: list[str]) -> set[str]:
        """Which of these users (or anonymous visitors) belong to the segment now: the single-user check
        for a batch, at about the cost of one check (journeys check everyone a drain brought events for)."""
        from nudgekit.segments import audience

        for user_id in user_ids:
            check_user_id(user_id)
        resolved = self.resolve_many(user_ids)
        # without a profile, an id is a user id or an anonymous id: whichever the events know (the user first)
        candidates = {u: [resolved[u]] if u in resolved else [u, anonymous_profile_id(u)] for u in user_ids}
        self.flush()
        ids = [c for cs in candidates.values() for c in cs]
        asked = {"today": self.today(), "zone": self.settings.timezone, "declared": self.settings.traits}
        if self.backend.warehouse:
            with self.backend.open() as view:
                found = audience.membership(self.engine, view, segment, ids, **asked)
        else:
            with self.backend.local() as store:
                found = audience.local_membership(self.engine, store, segment, ids, **asked)
        return {u for u, cs in candidates.items() if next((found[c] for c in cs if c in found), False)}

    def change_list(self, name: str, path: Path | str, *, remove: bool = False) -> Any:
        """Add (or remove) the users in a file to (from) a manual list."""
        from nudgekit.segments import lists

        source = Path(path)
        return lists.change(self.engine, name, lists.read_ids(source), remove=remove, now=self.clock(),
                            source=source.name)

    def lifecycle_of(self, profile_id: str, *, transitions: int = 10) -> dict[str, Any] | None:
        """A person's stored stage, since when, and their latest transitions."""
        with self.sessions() as session:
            row = session.get(LifecycleStage, profile_id)
            moves = list(session.scalars(
                select(LifecycleTransition).where(LifecycleTransition.profile_id == profile_id)
                .order_by(LifecycleTransition.at.desc(), LifecycleTransition.id.desc()).limit(transitions)))
        if row is None and not moves:
            return None
        return {
            "stage": row.stage if row else None,
            "since": _iso(row.since) if row else None,
            "lapsing": row.lapsing if row else None,
            "as_of": row.as_of.isoformat() if row else None,
            "last_active_at": _iso(row.last_active_at) if row else None,
            "transitions": [{"from": t.from_stage, "to": t.to_stage, "at": _iso(t.at),
                             "detected_at": _iso(t.detected_at), "source": t.source} for t in moves],
        }

    # -- profiles and consent ------------------------------------------------------------------

    def resolve(self, user_or_anonymous_id: str) -> str | None:
        """The profile id for a user id or an anonymous id (following a merge), or None."""
        return self.resolve_many([user_or_anonymous_id]).get(user_or_anonymous_id)

    def resolve_many(self, ids: list[str]) -> dict[str, str]:
        """resolve() for many ids in a few queries: id -> profile id, for the ids that have one."""
        wanted = list(dict.fromkeys(ids))
        candidates = list(dict.fromkeys([*wanted, *map(anonymous_profile_id, wanted)]))
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for batch in in_batches(candidates):
                rows = conn.execute(select(Profile.profile_id, Profile.merged_into)
                                    .where(Profile.profile_id.in_(batch))).all()
                found.update({pid: merged or pid for pid, merged in rows})
        resolved: dict[str, str] = {}
        for i in wanted:  # as a user id first, then as an anonymous id
            person = found.get(i) or found.get(anonymous_profile_id(i))
            if person is not None:
                resolved[i] = person
        return resolved

    def profile(self, user_id: str, *, events: int = 10) -> dict[str, Any] | None:
        """Everything we know of one person: profile, consents with history, push tokens, recent events."""
        check_user_id(user_id)
        self.flush()
        profile_id = self.resolve(user_id) or user_id
        with self.sessions() as session:
            profile = session.get(Profile, profile_id)
            tokens = list(session.scalars(select(PushToken).where(PushToken.profile_id == profile_id)))
            consents = history.current(session, profile_id)
            records = history.history(session, profile_id)
        summary = self.events.person_summary(profile_id)
        if profile is None and not summary["events"]:
            return None
        return {
            "profile_id": profile_id,
            "identified": profile is not None,
            "profile": _profile_dict(profile) if profile else None,
            "consents": [s.as_dict() for s in consents.values()],
            "consent_history": [
                {"channel": r.channel, "purpose": r.purpose, "change": r.change, "at": r.at.isoformat(),
                 "source": r.source, "recorded_at": r.recorded_at.isoformat(), "evidence": r.evidence}
                for r in records
            ],
            "push_tokens": [
                {"token": t.token, "platform": t.platform, "app_id": t.app_id, "device_id": t.device_id,
                 "status": t.status, "updated_at": t.updated_at.isoformat()}
                for t in tokens
            ],
            "activity": {
                "events": summary["events"],
                "first_seen": _iso(summary["first_seen"]),
                "last_seen": _iso(summary["last_seen"]),
                "anonymous_ids": summary["anonymous_ids"] or [],
            },
            "lifecycle": self.lifecycle_of(profile_id),
            "recent_events": [_event_dict(e) for e in self.events.person_events(profile_id, events)],
        }

    def set_consent(
        self,
        user_id: str,
        *,
        channel: Channel | str,
        purpose: Purpose | str,
        granted: bool,
        source: ConsentSource | str,
        at: datetime | None = None,
        evidence: str | None = None,
        dedupe_key: str | None = None,
    ) -> ConsentResult:
        """Record one consent change for a known user (or an anonymous id)."""
        now = self.clock()
        check_user_id(user_id)
        moment = self._local(at or now)
        check_consent_time(moment, now, "at")
        update = ConsentUpdate(
            _enum(Channel, channel, "channel"),
            _enum(Purpose, purpose, "purpose"),
            ConsentChange.GRANTED if granted else ConsentChange.WITHDRAWN,
            moment,
            _source(source),
            evidence,
        )
        profile_id = self.resolve(user_id)
        with self.sessions.begin() as session:
            if profile_id is None:
                profile_id = user_id
                session.add(Profile(profile_id=user_id, user_id=user_id, traits={}, created_at=now,
                                    updated_at=now))
                session.flush()
            written = history.record(session, profile_id, [update], now=now, dedupe_key=dedupe_key)
            state = history.current(session, profile_id)[(update.channel, update.purpose)]
        return ConsentResult(bool(written), state.as_dict())

    # -- withdrawals and consent notices -------------------------------------------------------------

    def _link_key(self) -> bytes:
        if self._unsubscribe_key is None:
            from nudgekit.consent import optout

            with self.sessions.begin() as session:
                self._unsubscribe_key = optout.link_secret(session, self.clock())
        return self._unsubscribe_key

    def unsubscribe_link(self, user: str, channel: Channel | str = Channel.EMAIL) -> str:
        """The person's own signed unsubscribe link (public_url + /u/...): opening it shows a page that
        withdraws their advertising consent on the channel; a one-click POST (RFC 8058) withdraws at once."""
        link = self._own_link(self.resolve(user) or user, _enum(Channel, channel, "channel"))
        if link is None:
            raise FieldError("public_url", "set public_url (where `nudge serve` is reachable, e.g. "
                             "https://nudge.example.com) so unsubscribe links have somewhere to point")
        return link

    def _read_link(self, token: str) -> tuple[str, Channel]:
        from nudgekit.consent import optout

        try:
            return optout.read_token(self._link_key(), token)
        except ValueError as exc:
            raise FieldError("link", str(exc)) from None

    def follow_link(self, token: str, *, record: bool = True, user_agent: str | None = None) -> str | None:
        """Where a tracked link (`/c/{token}`) goes, having recorded the click as a `message_clicked` event of
        the person the message went to (`record=False`: a HEAD request, a look without a click); None for a
        token this workspace did not make, which must not be redirected anywhere."""
        link = self._tracked(token, EventName.MESSAGE_CLICKED, record, user_agent)
        return link.url if link is not None else None

    def open_pixel(self, token: str, *, user_agent: str | None = None) -> bool:
        """Record an email's open (`/o/{token}`) as a `message_opened` event; False for an unknown token."""
        return self._tracked(token, EventName.MESSAGE_OPENED, True, user_agent) is not None

    def _tracked(self, value: str, name: EventName, record: bool, user_agent: str | None) -> Any:
        """The tracked link (or pixel) a token stands for, the event recorded; None for one not ours."""
        from nudgekit import tracking
        from nudgekit.channels.receipts import person_event

        now = self.clock()
        with self.sessions() as session:
            found = tracking.find(session, tracking.secret(self._link_key()), value)
        if found is None:
            return None
        row, link = found
        opening = name == EventName.MESSAGE_OPENED
        if opening != (link.position == tracking.OPEN) or not (opening or tracking.safe(link.url)):
            return None
        if record:
            properties = {"campaign": row.campaign, "variant": row.variant, "url": link.url,
                          "link": link.position or None, "user_agent": (user_agent or "")[:255] or None}
            event = person_event(row, name, f"{name.value}:{value}:{uuid.uuid4().hex[:12]}", now,
                                 {k: v for k, v in properties.items() if v is not None})
            if event is not None:
                self.spool_events([event])
        return link

    def unsubscribe_channel(self, token: str) -> Channel:
        """The channel an unsubscribe link is for; FieldError when it is not one this workspace made."""
        return self._read_link(token)[1]

    def unsubscribe(self, token: str, *, every_channel: bool = False, one_click: bool = False,
                    shown: bool = False) -> dict[str, Any]:
        """Withdraw the advertising consent an unsubscribe link names (every channel's with `every_channel`).
        `shown`: the page shows the person the result, which is their result notice (CHANNEL_RULES A9)."""
        from nudgekit.consent import notices, optout

        profile_id, channel = self._read_link(token)
        now = self.clock()
        channels = tuple(Channel) if every_channel else (channel,)
        how = "one-click List-Unsubscribe POST" if one_click else "unsubscribe page"
        with self.sessions.begin() as session:
            if session.get(Profile, profile_id) is None:
                raise FieldError("link", "the person this link was made for is no longer in this workspace")
            written = optout.withdraw(session, profile_id, channels, at=now, source=ConsentSource.UNSUBSCRIBE_LINK,
                                      evidence=how, now=now)
            session.flush()
            answer = {"profile_id": profile_id, "channels": [c.value for c in channels], "at": now.isoformat(),
                      "day": now.astimezone(self.settings.zone).date().isoformat(), "recorded": len(written),
                      "sender": self.settings.sender.name or self.settings.brand}
            if shown:
                notices.shown_on_page(session, profile_id, written, now, _unsubscribed_text(answer))
        return answer

    def sms_reply(self, phone: str, text: str, *, at: datetime | None = None, reply_id: str | None = None,
                  ) -> dict[str, Any]:
        """A text message a person sent back: "수신거부", "STOP" and the like withdraw advertising by text
        message and Kakao for that number (kept against the number, so it holds for whoever has it)."""
        from nudgekit.consent import optout

        number = normalize_phone(phone, self.settings.phone_region, "from")
        now = self.clock()
        moment = self._local(at or now)
        check_consent_time(moment, now, "at")
        if not optout.is_optout_reply(text):
            return {"from": number, "optout": False, "profiles": [], "recorded": 0}
        refusal = optout.Refusal(number, moment, f"SMS reply: {text.strip()[:200]}",
                                 f"sms-reply:{reply_id}" if reply_id else None)
        with self.sessions.begin() as session:
            done = optout.withdraw_addresses(session, [refusal], optout.PHONE_CHANNELS,
                                             source=ConsentSource.SMS_REPLY, now=now)
        return {"from": number, "optout": True, "profiles": list(done.profiles), "recorded": len(done.records)}

    def import_optout_calls(self, path: Path | str, *, phone_column: str | None = None,
                            at_column: str | None = None, progress: Callable[[int, int], None] | None = None,
                            ) -> dict[str, Any]:
        """Import an 080 provider's call records (CSV: the caller's number and when they called): each call
        withdraws advertising by text message and Kakao for that number. Importing a file twice records
        nothing new; rows that cannot be read are reported by line and the rest imported."""
        from nudgekit.consent import optout

        now = self.clock()
        try:
            calls, rejects = optout.read_calls(Path(path).read_bytes(), region=self.settings.phone_region,
                                               zone=self.settings.zone, now=now, phone_column=phone_column,
                                               at_column=at_column)
        except ValueError as exc:
            raise FieldError("file", str(exc)) from None
        people: set[str] = set()
        records = 0
        for start in range(0, len(calls), 500):
            refusals = [optout.Refusal(c.phone, c.at, f"080 call record, {Path(path).name} line {c.line}",
                                       f"080:{c.phone}:{c.at.isoformat()}") for c in calls[start:start + 500]]
            with self.sessions.begin() as session:
                done = optout.withdraw_addresses(session, refusals, optout.PHONE_CHANNELS,
                                                 source=ConsentSource.OPTOUT_080_CALL, now=now)
            people.update(done.profiles)
            records += len(done.records)
            if progress:
                progress(min(start + 500, len(calls)), len(calls))
        return {"calls": len(calls), "numbers": len({c.phone for c in calls}), "profiles": len(people),
                "recorded": records, "rejected": [r.as_dict() for r in rejects]}

    def consent_due(self, *, within_days: int = 30, lead_days: int = 30) -> list[dict[str, Any]]:
        """Consent notices due: result notices for changes recorded in the last `within_days` days not told
        yet (due 14 days after the change), and two-yearly re-confirmations falling within `lead_days`."""
        from nudgekit.consent import notices

        with self.sessions() as session:
            return [n.as_dict() for n in notices.due(session, self.clock(), within_days=within_days,
                                                       lead_days=lead_days)]

    def send_consent_notices(self, *, dry_run: bool = False, within_days: int = 30, lead_days: int = 30,
                             limit: int | None = None, progress: Callable[[int, int], None] | None = None,
                             ) -> dict[str, Any]:
        """Send the consent notices due (informational, no advertising), each by the first channel that
        reaches the person; `dry_run` says what would go without sending."""
        from nudgekit.consent import notices

        return notices.send(self, dry_run=dry_run, within_days=within_days, lead_days=lead_days, limit=limit,
                            progress=progress).as_dict()


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _unsubscribed_text(answer: dict[str, Any]) -> str:
    from nudgekit.consent.optout import CHANNEL_NAMES

    what = ", ".join(CHANNEL_NAMES[Channel(c)][1] for c in answer["channels"])
    return f"[{answer['sender']}] {answer['day']} {what} 광고성 정보 수신거부: {answer['day']} 처리 완료"


def _kinds_of_goods(properties: Any) -> frozenset[str]:
    """An order's product categories (Segment's e-commerce spec: `category`, `products[].category`)."""
    try:
        props = orjson.loads(properties) if isinstance(properties, str | bytes) else properties or {}
    except orjson.JSONDecodeError:
        return frozenset()
    if not isinstance(props, dict):
        return frozenset()
    found = [props.get("category")]
    products = props.get("products")
    if isinstance(products, list):
        found += [p.get("category") for p in products if isinstance(p, dict)]
    return frozenset(str(k).strip().lower() for k in found if isinstance(k, str) and k.strip())


def _evaluation_dict(row: Any) -> dict[str, Any]:
    return {"evaluation_id": row.id, "message_id": row.message_id, "campaign": row.campaign,
            "profile_id": row.profile_id, "channel": row.channel, "purpose": row.purpose, "stage": row.stage,
            "at": row.at.astimezone(UTC).isoformat(), "action": row.action, "reason": row.reason,
            "until": row.until.astimezone(UTC).isoformat() if row.until else None, "test_user": row.test_user,
            "decisions": row.decisions}


def _enum(kind: Any, value: Any, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(v.value for v in kind)
        raise FieldError(field, f'"{value}" is not one of {known}') from None


def _event(value: Any) -> dict[str, Any] | None:
    """What a template reads as `event`: a track call's shape (`event`, `properties`, `timestamp`)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FieldError("event", "an event is an object: its name (event) and its properties")
    return orjson.loads(orjson.dumps(value, default=str))  # kept with the message as JSON: moments as ISO text


def _inbox_channel(value: Any) -> MessageChannel:
    kind = _enum(MessageChannel, value, "channel")
    if kind not in (MessageChannel.INAPP, MessageChannel.CARD):
        raise FieldError("channel", "only in-app messages and content cards wait in an inbox")
    return kind


def _inbox_ids(user_id: str | None, anonymous_id: str | None) -> None:
    if not user_id and not anonymous_id:
        raise FieldError("userId", "name the person: a userId, an anonymousId, or both")
    for value, field in ((user_id, "userId"), (anonymous_id, "anonymousId")):
        if value is not None:
            check_user_id(value, field)


def _source(value: Any) -> ConsentSource:
    source = _enum(ConsentSource, value, "source")
    if source == ConsentSource.MERGE:
        raise FieldError("source", "merge is recorded by nudgekit itself when it links a visitor to a user")
    return source


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    names = {"anonymous_id": "anonymousId", "message_id": "messageId", "timestamp": "timestamp",
             "context": "context", "original_timestamp": "originalTimestamp"}
    out = {}
    for key, value in fields.items():
        if key not in names:
            raise TypeError(f"unexpected argument {key!r}")
        out[names[key]] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _profile_dict(p: Profile) -> dict[str, Any]:
    return {
        "user_id": p.user_id, "anonymous_id": p.anonymous_id, "merged_into": p.merged_into,
        "phone": p.phone, "email": p.email, "language": p.language, "timezone": p.timezone,
        "kakao_reachable": p.kakao_reachable,
        "attribution": {"utm_source": p.utm_source, "utm_medium": p.utm_medium,
                        "utm_campaign": p.utm_campaign, "install_source": p.install_source},
        "traits": p.traits, "created_at": p.created_at.isoformat(), "updated_at": p.updated_at.isoformat(),
    }


def _event_dict(e: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) for k, v in e.items()}
