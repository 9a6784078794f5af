"""The demo data set: seeded and repeatable, importable as it is, and telling the stories the demo needs."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from email_validator import validate_email

from nudgekit.demo import generator
from nudgekit.demo.generator import EVENT_NAMES, PRODUCTS, DemoFiles, generate

AS_OF = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
DAYS = 180
USERS = 2_000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), users=USERS, seed=7, as_of=AS_OF, days=DAYS)


@pytest.fixture(scope="module")
def users(demo: DemoFiles) -> pa.Table:
    return pq.read_table(demo.users)


@pytest.fixture(scope="module")
def events(demo: DemoFiles) -> pa.Table:
    return pq.read_table(demo.events)


def test_same_arguments_write_identical_tables(demo: DemoFiles, tmp_path: Path) -> None:
    again = generate(tmp_path, users=USERS, seed=7, as_of=AS_OF, days=DAYS)
    assert pq.read_table(again.users).equals(pq.read_table(demo.users))
    assert pq.read_table(again.events).equals(pq.read_table(demo.events))


def test_another_seed_writes_another_data_set(demo: DemoFiles, tmp_path: Path) -> None:
    other = generate(tmp_path, users=USERS, seed=8, as_of=AS_OF, days=DAYS)
    assert not pq.read_table(other.users).equals(pq.read_table(demo.users))
    assert not pq.read_table(other.events).equals(pq.read_table(demo.events))


def test_counts_match_the_files_and_ids_are_unique(demo: DemoFiles, users: pa.Table, events: pa.Table) -> None:
    assert (demo.users_count, users.num_rows, demo.events_count) == (USERS, USERS, events.num_rows)
    assert users["user_id"][0].as_py() == "u0000001"
    for table, column in ((users, "user_id"), (users, "anonymous_id"), (events, "message_id")):
        assert pc.count_distinct(table[column]).as_py() == table.num_rows, column
    assert events["anonymous_id"].null_count == 0


def test_phones_are_valid_korean_mobiles_and_unique(users: pa.Table) -> None:
    phones = users["phone"].to_pylist()
    parsed = [phonenumbers.parse(p, "KR") for p in phones]
    assert all(phonenumbers.is_valid_number(n) for n in parsed)
    e164 = {phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in parsed}
    assert len(e164) == len(phones)
    assert all(p.startswith("010-") and len(p) == 13 for p in phones)


def test_emails_are_valid_and_some_users_have_none(users: pa.Table) -> None:
    emails = users["email"].to_pylist()
    for email in filter(None, emails):
        validate_email(email, check_deliverability=False)
    assert 0.04 < emails.count(None) / len(emails) < 0.12


def test_properties_and_context_are_json_objects(events: pa.Table) -> None:
    for column in ("properties", "context"):
        assert events[column].null_count == 0
        assert all(isinstance(json.loads(text), dict) for text in events[column].to_pylist()), column


def test_events_lie_in_the_window_and_never_before_the_users_signup(users: pa.Table, events: pa.Table) -> None:
    stamps = events["timestamp"].to_pylist()
    assert AS_OF - timedelta(days=DAYS) < min(stamps) and max(stamps) <= AS_OF
    signup = dict(zip(users["user_id"].to_pylist(), users["signup_at"].to_pylist(), strict=True))
    known = [(u, t) for u, t in zip(events["user_id"].to_pylist(), stamps, strict=True) if u is not None]
    assert all(t >= signup[u] for u, t in known)
    assert len(known) < events.num_rows, "some pre-signup events are anonymous"


def test_every_event_name_appears_and_sign_up_is_once_per_user(events: pa.Table) -> None:
    counts = {row["values"]: row["counts"] for row in pc.value_counts(events["event"]).to_pylist()}
    assert set(counts) == set(EVENT_NAMES)
    assert counts["signed_up"] == USERS
    assert 0.04 < counts["app_uninstalled"] / USERS < 0.12
    assert 0.06 < counts["push_permission_changed"] / USERS < 0.14


def test_after_an_uninstall_a_user_is_silent_unless_they_reinstall(events: pa.Table) -> None:
    timeline: dict[str, list[str]] = defaultdict(list)
    for row in events.select(["anonymous_id", "event"]).to_pylist():
        timeline[row["anonymous_id"]].append(row["event"])
    after = [names[i + 1] for names in timeline.values() for i, name in enumerate(names[:-1])
             if name == "app_uninstalled"]
    assert after and set(after) == {"app_installed"}, "some come back, and only through a reinstall"


def test_events_average_between_10_and_40_per_user(demo: DemoFiles) -> None:
    assert 10 <= demo.events_count / demo.users_count <= 40


def test_orders_carry_revenue_in_krw_and_their_products(events: pa.Table) -> None:
    orders = events.filter(pc.equal(events["event"], "order_completed"))["properties"].to_pylist()
    prices = {p.sku: p.price for p in PRODUCTS}
    for order in map(json.loads, orders):
        assert order["currency"] == "KRW" and order["order_id"].startswith("ORD-")
        assert order["revenue"] == sum(prices[item["sku"]] * item["quantity"] for item in order["products"]) > 0


def test_monthly_probiotic_buyers_order_again_about_30_days_later(events: pa.Table) -> None:
    monthly = [p for p in PRODUCTS if p.supply_days == 30]
    assert len(monthly) == 1
    orders = events.filter(pc.equal(events["event"], "order_completed")).to_pylist()
    bought: dict[str, list[datetime]] = defaultdict(list)
    for order in orders:
        if any(item["sku"] == monthly[0].sku for item in json.loads(order["properties"])["products"]):
            bought[order["user_id"]].append(order["timestamp"])
    gaps = [b - a for times in bought.values() for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    monthly_gaps = [g for g in gaps if timedelta(days=27) <= g <= timedelta(days=36)]
    assert len(monthly_gaps) >= 20


def test_night_consent_is_asked_only_after_advertising_consent(users: pa.Table) -> None:
    for channel in ("push", "sms"):
        rows = users.select([f"consent_{channel}_advertising", f"consent_{channel}_night"]).to_pylist()
        nights = [r[f"consent_{channel}_night"] for r in rows if r[f"consent_{channel}_advertising"] is not True]
        assert set(nights) == {None}
        granted = [r[f"consent_{channel}_night"] for r in rows if r[f"consent_{channel}_advertising"]]
        assert 0.2 < sum(granted) / len(granted) < 0.4


def test_push_platform_is_set_only_with_a_push_token(users: pa.Table) -> None:
    tokens, platforms = users["push_token"].to_pylist(), users["push_platform"].to_pylist()
    assert all((t is None) == (p is None) for t, p in zip(tokens, platforms, strict=True))
    assert all(len(t) == 64 for t in filter(None, tokens))
    assert 0.08 < tokens.count(None) / len(tokens) < 0.22


def test_chunks_report_progress_and_each_chunk_is_in_time_order(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setattr(generator, "CHUNK_USERS", 300)
    reported: list[int] = []
    files = generate(tmp_path, users=1_000, seed=3, as_of=AS_OF, days=60, progress=reported.append)
    assert reported == [300, 300, 300, 100]
    events = pq.read_table(files.events)
    assert pc.count_distinct(events["message_id"]).as_py() == events.num_rows
    stamps = events["timestamp"].to_pylist()
    descents = sum(1 for a, b in zip(stamps, stamps[1:], strict=False) if b < a)
    assert descents <= 3, "time only goes back where a new chunk starts"


def test_a_naive_as_of_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        generate(tmp_path, users=10, as_of=datetime(2026, 11, 20))
