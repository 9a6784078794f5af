"""A random little shop for segment tests: users with traits, contacts, consents and push tokens, their
events, stored lifecycle stages and a manual list — in a real workspace, and as plain Python data for the
reference evaluator."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from nudgekit.store.state import LifecycleStage
from nudgekit.workspace import Workspace

ZONE = "Asia/Seoul"
TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
EVENTS = ["app_opened", "product_viewed", "order_completed", "added_to_cart"]
SKUS = ["P-PROBIO-30", "P-VITC-1000", "P-OMEGA3-90"]
PLANS = ["free", "plus", "premium", None]
SOURCES = ["naver", "kakao", "google", None]


def at(days_ago: int, hour: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), time(hour), ZoneInfo(ZONE)).astimezone(UTC)


@dataclass
class Person:
    id: str
    traits: dict = field(default_factory=dict)
    phone: bool = False
    email: bool = False
    kakao: bool = False
    push: bool = False
    utm_source: str | None = None
    consents: dict = field(default_factory=dict)
    events: list[tuple[str, datetime, dict]] = field(default_factory=list)
    stage: str | None = None
    stage_since: datetime | None = None
    lapsing: bool | None = None
    listed: bool = False


def build(tmp: Path, seed: int, people: int = 60, **open_kwargs) -> tuple[Workspace, dict[str, Person]]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    clock = lambda: NOW  # noqa: E731
    ws, _ = Workspace.init(tmp / f"w{seed}", clock=clock, traits={"signup_at": "datetime"}, **open_kwargs)
    world: dict[str, Person] = {}
    messages = []
    for i in range(people):
        p = Person(f"u{i:03d}")
        traits: dict = {}
        if (plan := rng.choice(PLANS)) is not None:
            traits["plan"] = plan
        if rng.random() < 0.8:
            traits["points"] = rng.choice([0, 10, 250, 1200, 5000])
        if rng.random() < 0.7:
            traits["vip"] = rng.random() < 0.3
        if rng.random() < 0.8:
            traits["signup_at"] = at(rng.randint(0, 60), rng.randint(0, 23)).isoformat()
        if rng.random() < 0.6:
            traits["tags"] = rng.sample(["vegan", "gym", "kids", "senior"], rng.randint(0, 3))
        p.traits = dict(traits)
        if rng.random() < 0.8:
            traits["phone"] = f"010-{1000 + i:04d}-{rng.randint(1000, 9999)}"
            p.phone = True
        if rng.random() < 0.7:
            traits["email"] = f"user{i}@example.com"
            p.email = True
        if rng.random() < 0.6:
            traits["kakao_reachable"] = True
            p.kakao = p.phone
        if rng.random() < 0.6:
            valid = rng.random() < 0.8
            traits["push_tokens"] = [{"token": f"tok-{i}", "platform": "android", "status": "valid" if valid else "invalid"}]
            p.push = valid
        if (src := rng.choice(SOURCES)) is not None:
            traits["utm_source"] = src
            p.utm_source = src
        consent = {}
        for channel in ("sms", "push", "email", "kakao"):
            if rng.random() < 0.6:
                consent[channel] = rng.random() < 0.7
                p.consents[channel] = consent[channel]
        if consent:
            traits["consent"] = {**consent, "source": "signup_form", "at": at(70, 9).isoformat()}
        messages.append({"type": "identify", "userId": p.id, "traits": traits, "timestamp": at(70, 9).isoformat(),
                         "messageId": f"id-{p.id}"})
        for j in range(rng.randint(0, 25)):
            name = rng.choice(EVENTS)
            props: dict = {}
            if name in ("product_viewed", "order_completed"):
                props["sku"] = rng.choice(SKUS)
            if name == "order_completed":
                props["revenue"] = rng.choice([9900, 32900, 45900, "free"])
            moment = at(rng.randint(0, 100), rng.randint(0, 23))
            p.events.append((name, moment, props))
            messages.append({"type": "track", "userId": p.id, "event": name, "properties": props,
                             "timestamp": moment.isoformat(), "messageId": f"ev-{p.id}-{j}"})
        world[p.id] = p
    result = ws.ingest(messages)
    assert not result.rejects, result.rejects[:3]
    ws.events.append(result.rows)
    ws.run_lifecycle()
    with ws.sessions() as s:
        for row in s.query(LifecycleStage):
            person = world[row.profile_id]
            person.stage, person.stage_since, person.lapsing = row.stage, row.since, row.lapsing
    listed = [pid for pid in world if rng.random() < 0.3]
    list_file = tmp / f"list{seed}.csv"
    list_file.write_text("user_id\n" + "\n".join(listed) + "\n")
    ws.change_list("picked", list_file)
    for pid in listed:
        world[pid].listed = True
    return ws, world


def dump(world: dict[str, Person]) -> str:
    return json.dumps({k: v.__dict__ for k, v in world.items()}, default=str)[:2000]
