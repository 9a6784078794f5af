"""At-once resurrection: an incoming event from a Churn or Uninstall user makes them Resurrected now.

The event store calls this after every insert that committed activity (HTTP drains, imports, the Python
API), with each active person's latest activity. Only people stored as Churn or Uninstall whose new
activity is later than what the stage was based on move; everyone else waits for the next run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from nudgekit.store.state import LifecycleStage, LifecycleTransition, in_batches
from nudgekit.vocabulary import Stage, TransitionSource

log = logging.getLogger("nudgekit.lifecycle")
GONE = (Stage.CHURN.value, Stage.UNINSTALL.value)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def resurrect(engine: Engine, active: list[tuple[str, datetime]], now: datetime) -> int:
    """Move Churn/Uninstall people who were just active to Resurrected. Returns how many moved."""
    latest = {person: _aware(at) for person, at in active if at is not None}
    if not latest:
        return 0
    moved = 0
    with engine.begin() as conn:
        if conn.execute(select(LifecycleStage.profile_id).where(LifecycleStage.stage.in_(GONE)).limit(1)).first() is None:
            return 0
        for batch in in_batches(list(latest)):
            rows = conn.execute(
                select(LifecycleStage.profile_id, LifecycleStage.stage, LifecycleStage.since,
                       LifecycleStage.last_active_at)
                .where(LifecycleStage.profile_id.in_(batch), LifecycleStage.stage.in_(GONE))
            ).all()
            for person, stage, since, last_active in rows:
                at = latest[person]
                assert at is not None
                if (last_active is not None and at <= _aware(last_active)) or (
                        stage == Stage.UNINSTALL and at <= _aware(since)):
                    continue  # late-arriving history, not a return
                done = conn.execute(
                    update(LifecycleStage)
                    .where(LifecycleStage.profile_id == person, LifecycleStage.stage == stage)
                    .values(stage=Stage.RESURRECTED.value, since=at, lapsing=False, last_active_at=at, updated_at=now,
                            run_id=None)
                ).rowcount
                if done:
                    conn.execute(insert(LifecycleTransition).values(
                        profile_id=person, from_stage=stage, to_stage=Stage.RESURRECTED.value, at=at,
                        detected_at=now, source=TransitionSource.EVENT.value))
                    moved += 1
    return moved


def anyone_gone(engine: Engine) -> bool:
    """Is anyone stored as Churn or Uninstall (so that an event could resurrect them)? One indexed look-up."""
    try:
        with engine.connect() as conn:
            return conn.execute(select(LifecycleStage.profile_id).where(LifecycleStage.stage.in_(GONE)).limit(1)
                                ).first() is not None
    except Exception:
        log.exception("could not tell whether anyone is Churn or Uninstall; assuming so")
        return True


def listener(engine: Engine, clock):  # type: ignore[no-untyped-def]
    """The event store's on_activity hook. A failure here is logged, never lost events: they are stored."""

    def on_activity(active: list[tuple[str, datetime]]) -> None:
        try:
            resurrect(engine, active, clock())
        except Exception:
            log.exception("at-once resurrection failed; the next lifecycle run will classify these users")

    return on_activity
