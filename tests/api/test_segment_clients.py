"""Unmodified Segment and RudderStack client libraries deliver to `nudge serve`."""

from __future__ import annotations

import logging

from conftest import LiveServer, wait_for
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace


def _write_key(ws: Workspace) -> str:
    return ws.keys.create(KeyScope.WRITE, "client test", ws.clock())[1]


def test_segment_python_library_identify_and_track(sqlite_ws: Workspace, clock) -> None:
    ws = sqlite_ws
    errors: list[Exception] = []
    with LiveServer(ws) as server:
        client = SegmentClient(write_key=_write_key(ws), host=server.url, sync_mode=True,
                               on_error=lambda e, batch: errors.append(e), gzip=True)
        client.identify("u-seg", {"name": "이서연", "phone": "010-3456-7890",
                                  "consent": {"push": {"advertising": True}, "source": "signup_form"}},
                        timestamp=clock())
        client.track("u-seg", "order_completed", {"revenue": 32900, "currency": "KRW"}, timestamp=clock())
        client.page("u-seg", "shop", "product detail", {"path": "/p/1"}, timestamp=clock())
        client.flush()
        found = wait_for(lambda: (p := ws.profile("u-seg")) and p["activity"]["events"] == 3 and p)
    assert not errors
    assert found["profile"]["phone"] == "+821034567890"
    assert found["consents"][0]["source"] == "signup_form"
    events = {e["event"]: e for e in found["recent_events"]}
    assert '"revenue":32900' in events["order_completed"]["properties"]
    assert events["product detail"]["type"] == "page"
    assert '"library"' in events["order_completed"]["context"]  # the client's own context survives


def test_rudderstack_python_library_with_gzip(sqlite_ws: Workspace, clock) -> None:
    ws = sqlite_ws
    errors: list[Exception] = []
    with LiveServer(ws) as server:
        client = RudderClient(write_key=_write_key(ws), host=server.url, sync_mode=True,
                              on_error=lambda e, batch: errors.append(e), gzip=True)
        client.identify(user_id="u-rudder", traits={"email": "rudder@kakao.com"}, anonymous_id="anon-r",
                        timestamp=clock())
        client.track(user_id="u-rudder", event="added_to_cart", properties={"sku": "P-PROBIO-30"},
                     timestamp=clock())
        client.flush()
        found = wait_for(lambda: (p := ws.profile("u-rudder")) and p["activity"]["events"] == 2 and p)
    assert not errors
    assert found["profile"]["email"] == "rudder@kakao.com"
    assert found["activity"]["anonymous_ids"] == ["anon-r"]


def test_a_wrong_write_key_is_reported_to_the_client_library(sqlite_ws: Workspace, clock, caplog) -> None:
    errors: list[Exception] = []
    with LiveServer(sqlite_ws) as server, caplog.at_level(logging.CRITICAL):
        client = SegmentClient(write_key="nk_write_wrong", host=server.url, sync_mode=True, max_retries=0,
                               on_error=lambda e, batch: errors.append(e))
        try:
            client.track("u1", "app_opened", timestamp=clock())
        except Exception as exc:  # sync mode raises the API error
            errors.append(exc)
    assert errors and "401" in str(errors[0])
    assert sqlite_ws.events.count() == 0
