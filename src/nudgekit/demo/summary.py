"""What a workspace holds, in the numbers a growth team looks at first (printed by `nudge demo`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from nudgekit.store.state import ConsentRecord, Profile, PushToken
from nudgekit.vocabulary import Channel, Purpose
from nudgekit.workspace import Workspace

ACTIVE = "type IN ('track', 'page', 'screen') AND coalesce(event, '') NOT IN ('app_uninstalled', 'push_permission_changed')"
"""Behaviour that counts as activity (lifecycle rules in issue #3 will make this configurable)."""


def consent_rates(ws: Workspace) -> dict[str, dict[str, int]]:
    """Users whose current consent (latest change by time) is granted, per channel and purpose."""
    ranked = select(
        ConsentRecord.channel, ConsentRecord.purpose, ConsentRecord.change,
        func.row_number().over(
            partition_by=(ConsentRecord.profile_id, ConsentRecord.channel, ConsentRecord.purpose),
            order_by=(ConsentRecord.at.desc(), ConsentRecord.id.desc()),
        ).label("rank"),
    ).subquery()
    stmt = (
        select(ranked.c.channel, ranked.c.purpose, func.count())
        .where(ranked.c.rank == 1, ranked.c.change == "granted")
        .group_by(ranked.c.channel, ranked.c.purpose)
    )
    rates: dict[str, dict[str, int]] = {c.value: {p.value: 0 for p in Purpose} for c in Channel}
    with ws.sessions() as session:
        for channel, purpose, count in session.execute(stmt):
            rates.setdefault(channel, {})[purpose] = count
    return rates


def summarize(ws: Workspace, *, as_of: datetime) -> dict[str, Any]:
    ws.flush()
    with ws.sessions() as session:
        users = session.scalar(select(func.count()).select_from(Profile).where(Profile.user_id.is_not(None)))
        tokens = dict(session.execute(select(PushToken.status, func.count()).group_by(PushToken.status)).all())
        sources = session.execute(
            select(Profile.utm_source, func.count()).where(Profile.user_id.is_not(None))
            .group_by(Profile.utm_source).order_by(func.count().desc())
        ).all()
        zones = session.execute(
            select(Profile.timezone, func.count()).where(Profile.user_id.is_not(None))
            .group_by(Profile.timezone).order_by(func.count().desc())
        ).all()
    by_name = ws.events.query(
        "SELECT event, count(*) AS n FROM events WHERE type = 'track' GROUP BY event ORDER BY n DESC"
    )
    stamps = {"$as_of": as_of, "$week": as_of - timedelta(days=7), "$month": as_of - timedelta(days=30)}
    sql = """
        SELECT count(*) AS events,
               count(DISTINCT person_id) FILTER (WHERE timestamp > $week AND $active) AS active_7d,
               count(DISTINCT person_id) FILTER (WHERE timestamp > $month AND $active) AS active_30d,
               count(DISTINCT person_id) FILTER (WHERE event = 'order_completed') AS buyers,
               coalesce(sum(TRY_CAST(json_extract_string(properties, '$.revenue') AS BIGINT))
                        FILTER (WHERE event = 'order_completed'), 0) AS revenue,
               min(timestamp) AS first_event, max(timestamp) AS last_event
        FROM events_resolved WHERE timestamp <= $as_of
    """.replace("$active", ACTIVE)
    for name, moment in stamps.items():
        sql = sql.replace(name, f"TIMESTAMPTZ '{moment.isoformat()}'")
    activity = ws.events.query(sql)[0]
    return {
        "users": users,
        "events": activity["events"],
        "first_event": _iso(activity["first_event"]),
        "last_event": _iso(activity["last_event"]),
        "active_users_7d": activity["active_7d"],
        "active_users_30d": activity["active_30d"],
        "buyers": activity["buyers"],
        "revenue_krw": int(activity["revenue"]),
        "events_by_name": {row["event"]: row["n"] for row in by_name},
        "consent_granted": consent_rates(ws),
        "push_tokens": tokens,
        "acquisition": {source or "(none)": n for source, n in sources},
        "time_zones": {zone or "(workspace)": n for zone, n in zones},
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value
