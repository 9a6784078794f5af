"""The prepaid balance: sends through real providers reserve their price, a send that certainly failed is
refunded, a send the balance cannot pay for is stopped before the provider, and concurrent sends cannot
spend the same points (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nudgekit.channels import balance
from nudgekit.config import write_section
from nudgekit.profiles.contacts import FieldError
from nudgekit.testing.solapi import FakeSolapi
from nudgekit.workspace import Workspace

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_no_top_up_means_no_prepaid_balance(ws: Workspace) -> None:
    assert ws.balance() == {"prepaid": False, "balance_krw": 0.0, "topped_up_krw": 0.0, "spent_krw": 0.0,
                            "messages": 0}
    with ws.sessions.begin() as session:
        assert balance.reserve(session, "m-1", "sms", 12, NOW) is None
    assert ws.balance()["messages"] == 0


def test_reserve_refund_and_the_ledger(ws: Workspace) -> None:
    ws.top_up(30, "invoice 7")
    with ws.sessions.begin() as session:
        assert balance.reserve(session, "m-1", "sms", 12, NOW) is None
        assert balance.reserve(session, "m-1", "sms", 12, NOW) is None  # the same message pays once
        assert balance.reserve(session, "m-2", "sms", 12, NOW) is None
        short = balance.reserve(session, "m-3", "sms", 12, NOW)
    assert short is not None and "12 KRW" in short and "6 KRW are left" in short
    assert ws.balance() == {"prepaid": True, "balance_krw": 6.0, "topped_up_krw": 30.0, "spent_krw": 24.0,
                            "messages": 2}
    with ws.sessions.begin() as session:
        assert balance.refund(session, "m-2", NOW) and not balance.refund(session, "m-2", NOW)
        assert not balance.refund(session, "never-reserved", NOW)
    summary = ws.balance(history=10)
    assert (summary["balance_krw"], summary["spent_krw"], summary["messages"]) == (18.0, 12.0, 1)
    assert [h["kind"] for h in summary["history"]] == ["refund", "reserve", "reserve", "top_up"]
    assert summary["history"][-1]["note"] == "invoice 7"
    for bad in (0, -5, float("nan"), float("inf"), 1e12):
        with pytest.raises(FieldError):
            ws.top_up(bad)
    ws.top_up(27.5)
    assert ws.balance()["balance_krw"] == 45.5


def test_concurrent_sends_cannot_overspend(ws: Workspace) -> None:
    ws.top_up(100)
    results: list[str | None] = []
    lock = threading.Lock()

    def spend(i: int) -> None:
        with ws.sessions.begin() as session:
            why = balance.reserve(session, f"m-{i}", "sms", 10, NOW)
        with lock:
            results.append(why)

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(None) == 10 and ws.balance()["balance_krw"] == 0.0 and ws.balance()["messages"] == 10


@pytest.fixture
def solapi_ws(tmp_path: Path) -> Iterator[tuple[Workspace, FakeSolapi]]:
    with FakeSolapi() as solapi:
        solapi.clock = lambda: NOW
        workspace, _ = Workspace.init(tmp_path / "ws", clock=lambda: NOW)
        home = workspace.settings.home
        workspace.close()
        write_section(home, "providers", {"sms": "solapi"})
        write_section(home, "solapi", {"api_key": solapi.api_key, "api_secret": solapi.api_secret,
                                       "base_url": solapi.url})
        write_section(home, "sender", {"sms_numbers": ["0212345678"]})
        workspace = Workspace.open(home, clock=lambda: NOW)
        yield workspace, solapi
        workspace.close()


def test_sends_pay_from_the_balance_and_stop_when_it_runs_out(solapi_ws: tuple[Workspace, FakeSolapi]) -> None:
    ws, solapi = solapi_ws
    ws.top_up(60)
    assert ws.send_now("sms", "010-1234-5678", text="안녕", message_id="a").sent
    assert ws.balance()["balance_krw"] == 48.0
    solapi.senders = set()
    refused = ws.send_now("sms", "010-1234-5678", text="안녕", message_id="b")
    assert refused.outcome.code == "1062" and ws.balance()["balance_krw"] == 48.0  # refunded
    solapi.senders = {"0212345678"}
    assert ws.send_now("sms", "010-1234-5678", text="가" * 46, message_id="c").sent  # an LMS: 39
    before = len(solapi.requests)
    stopped = ws.send_now("sms", "010-1234-5678", text="안녕", message_id="d")
    assert not stopped.sent and stopped.outcome is None and "not enough message points" in stopped.note
    assert len(solapi.requests) == before and ws.balance()["balance_krw"] == 9.0
    assert ws.provider_balance() == {"provider": "solapi", "balance": solapi.balance, "point": 0.0}


def test_amounts_are_kept_exactly(ws: Workspace) -> None:
    ws.top_up(77)
    with ws.sessions.begin() as session:
        assert all(balance.reserve(session, f"m-{i}", "sms", 7.7, NOW) is None for i in range(10))
        assert balance.reserve(session, "m-x", "sms", 0.01, NOW) is not None
    assert ws.balance()["balance_krw"] == 0.0 and ws.balance()["spent_krw"] == 77.0
