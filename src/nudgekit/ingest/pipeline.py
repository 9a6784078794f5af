"""The ingest core behind every door: shared rules, then profile rules, then one state-DB transaction.

Returns the event rows to store; the caller decides how (spool for the HTTP
server, direct append for imports and the Python API). State is written
before events and keyed by message id, so a client that retries after a
failure in between changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from sqlalchemy.orm import Session, sessionmaker

from nudgekit.ingest import segment
from nudgekit.ingest.validate import Reject, Validator, without_row
from nudgekit.profiles import identify
from nudgekit.profiles.contacts import FieldError
from nudgekit.profiles.traits import TraitRegistry
from nudgekit.store.events import EVENT_SCHEMA
from nudgekit.store.state import Profile
from nudgekit.vocabulary import ConsentSource, MessageType


@dataclass
class IngestResult:
    rows: pa.Table
    rejects: list[Reject] = field(default_factory=list)
    profiles_created: int = 0
    consents_recorded: int = 0

    @property
    def accepted(self) -> int:
        return self.rows.num_rows


class Ingestor:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        validator: Validator,
        *,
        phone_region: str,
        declared_traits: dict[str, str] | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self.sessions = sessions
        self.validator = validator
        self.phone_region = phone_region
        self.declared_traits = declared_traits or {}
        self.clock = clock

    def ingest(
        self,
        messages: list[Any],
        *,
        source: str,
        default_type: str | None = None,
        sent_at: Any = None,
        fold_extra: bool = False,
        consent_source: ConsentSource = ConsentSource.API,
    ) -> IngestResult:
        received_at = self.clock()
        raws: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for i, message in enumerate(messages):
            raw = segment.to_raw(i, message, default_type=default_type, sent_at=sent_at, fold_extra=fold_extra)
            (rejects if isinstance(raw, Reject) else raws).append(raw)  # type: ignore[arg-type]
        if not raws:
            return IngestResult(EVENT_SCHEMA.empty_table(), sorted(rejects, key=lambda r: r.row))
        checked = self.validator.check(raws, received_at=received_at, source=source)
        rejects.extend(checked.rejects)
        result = self._apply_profiles(messages, checked.accepted, consent_source)
        result.rejects = sorted(rejects + result.rejects, key=lambda r: r.row)
        return result

    def _apply_profiles(self, messages: list[Any], rows: pa.Table, consent_source: ConsentSource) -> IngestResult:
        kinds = rows.column("type").to_pylist()
        wanted = [i for i, k in enumerate(kinds) if k in (MessageType.IDENTIFY, MessageType.ALIAS)]
        if not wanted:
            return IngestResult(without_row(rows))
        now = self.clock()
        order = rows.column("_row").to_pylist()
        stamps = rows.column("timestamp").to_pylist()
        ids = rows.column("event_id").to_pylist()
        dropped: list[Reject] = []
        keep = [True] * rows.num_rows
        created = consents = 0
        with self.sessions.begin() as session:
            registry = TraitRegistry(session, self.declared_traits)
            pending: list[identify.IdentifyPlan] = []

            def write_pending() -> None:
                nonlocal created, consents
                for outcome in identify.apply_many(session, pending, registry, now):
                    created += outcome.created
                    consents += outcome.consents_recorded
                pending.clear()

            for i in wanted:
                message = messages[order[i]]
                if kinds[i] == MessageType.ALIAS:
                    write_pending()
                    self._alias(session, message, now)
                    continue
                try:
                    plan = identify.prepare(
                        user_id=_id(message.get("userId")),
                        anonymous_id=_id(message.get("anonymousId")),
                        traits=segment.identify_traits(message) or {},
                        context=message.get("context") or {},
                        at=stamps[i],
                        message_id=ids[i],
                        registry=registry,
                        phone_region=self.phone_region,
                        consent_source=consent_source,
                        now=now,
                        zone=self.validator.zone,
                    )
                except FieldError as exc:
                    dropped.append(Reject(order[i], exc.field, exc.reason))
                    keep[i] = False
                    continue
                registry.remember(plan.new_trait_types)
                pending.append(plan)
            write_pending()
        kept = rows.filter(pa.array(keep)) if not all(keep) else rows
        return IngestResult(without_row(kept), dropped, created, consents)

    def _alias(self, session: Session, message: dict[str, Any], now: datetime) -> None:
        previous, user = _id(message.get("previousId")), _id(message.get("userId"))
        if previous and user and session.get(Profile, identify.anonymous_profile_id(previous)):
            identify.merge_anonymous(session, previous, user, now)


def _id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def parse_body(body: bytes) -> Any:
    """JSON body to Python, raising FieldError with a reader's explanation."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FieldError("body", f"the request body is not valid JSON ({exc})") from None
