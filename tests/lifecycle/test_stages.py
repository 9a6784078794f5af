"""The six stages at their edges, and against the plain-Python reference on random data."""

from __future__ import annotations

import random
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudgekit.config import LifecycleSettings

from . import reference
from .conftest import AS_OF, ZONE, at, run_engine
from .reference import Ev


def opened(person: str, days_ago: int, hour: int = 12, **kw) -> Ev:  # type: ignore[no-untyped-def]
    return Ev(person, "track", "app_opened", at(days_ago, hour, **kw))


def stage_of(duck, events, **kw) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {p: s for p, (s, _) in run_engine(duck, events, **kw).items()}


# -- New ------------------------------------------------------------------------------------------

def test_first_seen_six_days_ago_is_new_and_seven_is_not(duck):
    found = stage_of(duck, [opened("six", 6), opened("six", 0), opened("seven", 7), opened("seven", 0)])
    assert found == {"six": "new", "seven": "current"}


def test_an_identify_alone_makes_someone_seen(duck):
    found = stage_of(duck, [Ev("quiet", "identify", None, at(2)), Ev("old", "identify", None, at(40))])
    assert found == {"quiet": "new", "old": "churn"}


# -- Churn ----------------------------------------------------------------------------------------

def test_inactive_29_days_is_current_and_30_is_churn(duck):
    events = [opened("a", 60), opened("a", 29), opened("b", 60), opened("b", 30)]
    found = run_engine(duck, events)
    assert found == {"a": ("current", False), "b": ("churn", True)}


def test_message_receipts_are_not_activity(duck):
    events = [opened("u", 40), Ev("u", "track", "message_opened", at(1)), Ev("u", "track", "message_clicked", at(0))]
    assert stage_of(duck, events) == {"u": "churn"}


def test_configured_activity_events_only(duck):
    cfg = LifecycleSettings(activity_events=["order_completed"])
    events = [Ev("u", "track", "order_completed", at(40)), opened("u", 1)]
    assert stage_of(duck, events, cfg=cfg) == {"u": "churn"}


# -- calendar days in the workspace time zone -------------------------------------------------------

def test_midnight_in_the_workspace_time_zone_decides_the_day(duck):
    # 23:59 Seoul time 30 days ago is still that day (churn); 00:00 the next day is 29 days ago
    events = [opened("late", 60), opened("late", 30, 23, minute=59),
              opened("early", 60), opened("early", 29, 0, minute=0)]
    assert stage_of(duck, events) == {"late": "churn", "early": "current"}


def test_a_user_in_another_time_zone_is_counted_in_workspace_days(duck):
    # 20:00 in Los Angeles on day 31-before is already the next day (30 before) in Seoul ... churn
    la = at(31, 20, zone="America/Los_Angeles")
    assert (AS_OF - la.astimezone(ZoneInfo(ZONE)).date()).days == 30
    assert stage_of(duck, [opened("x", 60), Ev("x", "track", "app_opened", la)]) == {"x": "churn"}
    # ... and with a Los Angeles workspace the same moment is 31 days ago: still churn, but 29/30 flip
    la29 = at(29, 20, zone="America/Los_Angeles")
    assert stage_of(duck, [opened("y", 60), Ev("y", "track", "app_opened", la29)], zone="America/Los_Angeles") == {
        "y": "current"}


# -- Resurrected ----------------------------------------------------------------------------------

def test_gap_of_exactly_the_churn_window_is_a_return(duck):
    events = [opened("gap30", 40), opened("gap30", 10), opened("gap29", 39), opened("gap29", 10)]
    assert stage_of(duck, events) == {"gap30": "resurrected", "gap29": "current"}


def test_resurrected_lasts_fourteen_days(duck):
    events = [opened("r13", 60), opened("r13", 13), opened("r14", 60), opened("r14", 14)]
    assert stage_of(duck, events) == {"r13": "resurrected", "r14": "current"}


def test_coming_back_after_uninstalling_is_a_return(duck):
    events = [opened("u", 20), Ev("u", "track", "app_uninstalled", at(19)), opened("u", 5)]
    assert stage_of(duck, events) == {"u": "resurrected"}


def test_a_return_after_uninstall_older_than_the_window_is_not(duck):
    events = [opened("u", 40), Ev("u", "track", "app_uninstalled", at(39)), opened("u", 20), opened("u", 2)]
    assert stage_of(duck, events) == {"u": "current"}


def test_activity_at_the_very_moment_of_an_uninstall_counts_as_after_it(duck):
    # found by Hypothesis: an order and an uninstall stamped the same second, 21 days ago, and activity 8
    # days ago. The order is the return (outside the 14-day window), so the user is Current, not back.
    same = at(21, 11)
    events = [opened("t", 22), Ev("t", "track", "app_uninstalled", same), Ev("t", "track", "order_completed", same),
              opened("t", 8)]
    assert stage_of(duck, events) == {"t": "current"}
    # the same tie inside the window is a return
    inside = at(5, 11)
    events = [opened("w", 22), Ev("w", "track", "app_uninstalled", inside), Ev("w", "track", "app_opened", inside)]
    assert stage_of(duck, events) == {"w": "resurrected"}


# -- Uninstall ------------------------------------------------------------------------------------

def test_uninstall_after_the_last_activity(duck):
    events = [opened("gone", 3), Ev("gone", "track", "app_uninstalled", at(2)),
              opened("back", 3, 9), Ev("back", "track", "app_uninstalled", at(3, 10)), opened("back", 3, 11)]
    assert stage_of(duck, events) == {"gone": "uninstall", "back": "new"}


def test_every_push_token_invalid_is_an_uninstall_signal(duck):
    events = [opened("t", 20), opened("t", 10), opened("s", 20), opened("s", 10)]
    found = stage_of(duck, events, signals={"t": at(5)})
    assert found == {"t": "uninstall", "s": "current"}


# -- Power ----------------------------------------------------------------------------------------

def test_twelve_of_the_last_28_days_is_power_and_eleven_is_not(duck):
    events = [opened("p", 60)] + [opened("p", d) for d in range(0, 24, 2)]  # 12 days within the last 28
    events += [opened("q", 60)] + [opened("q", d) for d in range(0, 22, 2)]  # 11
    events += [opened("r", 60)] + [opened("r", d) for d in range(17, 40)]  # 11 inside the window (17..27)
    assert stage_of(duck, events) == {"p": "power", "q": "current", "r": "current"}


def test_top_ten_percent_of_buyers_by_revenue_is_power(duck):
    events = []
    for i in range(20):  # 20 buyers: the top 2 are power
        events += [opened(f"b{i:02d}", 20), Ev(f"b{i:02d}", "track", "order_completed", at(5), {"revenue": 1000 * (i + 1)})]
    events += [opened("none", 20), opened("none", 1)]
    found = stage_of(duck, events)
    assert sorted(p for p, s in found.items() if s == "power") == ["b18", "b19"]
    assert found["none"] == "current"


def test_revenue_that_is_not_a_number_counts_as_nothing(duck):
    events = [opened("x", 20), Ev("x", "track", "order_completed", at(3), {"revenue": "a lot"}), opened("y", 20),
              Ev("y", "track", "order_completed", at(3), {"revenue": 5})]
    assert stage_of(duck, events) == {"x": "current", "y": "power"}


# -- precedence -----------------------------------------------------------------------------------

def test_precedence_uninstall_churn_new_resurrected_power_current(duck):
    events = [
        # uninstall beats churn: uninstalled 40 days ago, nothing since
        opened("u", 41), Ev("u", "track", "app_uninstalled", at(40)),
        # new beats power: first seen 3 days ago, the biggest spender
        opened("n", 3), Ev("n", "track", "order_completed", at(1), {"revenue": 999999}),
        # resurrected beats power: back after 40 days and busy since
        opened("r", 60), *[opened("r", d) for d in range(0, 13)],
    ]
    assert stage_of(duck, events) == {"u": "uninstall", "n": "new", "r": "resurrected"}


# -- against the reference --------------------------------------------------------------------------

NAMES = ["app_opened", "product_viewed", "order_completed", "message_opened", "app_uninstalled", "added_to_cart"]


def random_events(rng: random.Random, people: int, days: int = 120) -> tuple[list[Ev], dict]:
    events: list[Ev] = []
    signals = {}
    for p in range(people):
        person = f"p{p:03d}"
        style = rng.random()
        count = rng.randint(1, 40)
        span = rng.choice([7, 30, 60, days])
        start = rng.randint(0, days)
        for _ in range(count):
            back = max(0, start - rng.randint(0, span)) if style < 0.7 else rng.randint(0, days)
            moment = at(back, rng.randint(0, 23), rng.choice([0, 1, 59]))
            kind = rng.choices(["track", "page", "screen", "identify"], [8, 1, 1, 1])[0]
            name = rng.choice(NAMES) if kind == "track" else (rng.choice(["home", None]) if kind != "identify" else None)
            props = None
            if name == "order_completed":
                props = {"revenue": rng.choice([9900, 32900, 45900.5, "oops", None])}
            events.append(Ev(person, kind, name, moment, props))
        if rng.random() < 0.05:
            signals[person] = at(rng.randint(0, days), rng.randint(0, 23))
    return events, signals


@pytest.mark.parametrize("seed", range(6))
def test_engine_matches_the_reference_on_random_data(duck, seed):
    rng = random.Random(seed)
    events, signals = random_events(rng, 150)
    cfg = LifecycleSettings(churn_days=rng.choice([14, 30]), resurrected_days=rng.choice([7, 14]),
                            usage_cycle_days=rng.choice([7, 14]), new_days=rng.choice([3, 7]),
                            power_active_days=rng.choice([4, 12]))
    as_of = AS_OF - timedelta(days=rng.choice([0, 3]))
    expected = reference.stages(events, as_of, cfg, ZONE, signals)
    assert run_engine(duck, events, cfg, as_of=as_of, signals=signals) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), people=st.integers(1, 30))
def test_every_person_seen_has_exactly_one_stage_and_it_matches_the_reference(duck, seed, people):
    events, signals = random_events(random.Random(seed), people, days=70)
    found = run_engine(duck, events, signals=signals)
    seen = {e.person for e in events if e.type in ("identify", "track", "page", "screen") and e.at.date() <= AS_OF}
    assert set(found) == seen
    assert found == reference.stages(events, AS_OF, LifecycleSettings(), ZONE, signals)
