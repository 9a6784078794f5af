"""Click and open tracking over real HTTP: a campaign's web links go through `/c/{token}`, which records the
click and redirects to the link as written; an email's pixel at `/o/{token}` records the open; a token this
workspace did not make is a 404 that redirects nowhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from campaigns.helpers import NOON_KST, campaign, open_shop, shoppers, write
from conftest import LiveServer
from sqlalchemy import select

from nudgekit import tracking
from nudgekit.store.state import OutboxMessage, TrackedLink
from nudgekit.workspace import Workspace

PUBLIC = "https://nudge.example.com"
SALE = "https://shop.example/sale?from=sms"
EMAIL = {"subject": "겨울 세일", "text": "최대 30% https://shop.example/sale",
         "html": '<html><body><p>최대 30%</p><a href="https://shop.example/sale">보기</a>'
                 '<a href="https://partner.example/x">제휴</a></body></html>'}


@pytest.fixture
def shop(tmp_path: Path, state_url: str, clock: Any) -> Iterator[Workspace]:
    clock.now = NOON_KST
    ws = open_shop(tmp_path / "ws", state_url, clock, public_url=PUBLIC)
    shoppers(ws, 2)  # u000 has a push token
    ws.identify("u000", {"email": "u000@example.com"})
    ws.flush()
    ws.set_consent("u000", channel="email", purpose="advertising", granted=True, source="signup_form")
    yield ws
    ws.close()


def outbox(ws: Workspace, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    with ws.sessions() as session:
        return {(r.profile_id, r.channel): {"fields": r.fields, "message_id": r.message_id, "variant": r.variant}
                for r in session.scalars(select(OutboxMessage).where(OutboxMessage.campaign == name))}


def links_of(ws: Workspace, message_id: str) -> list[tuple[int, str | None, str]]:
    with ws.sessions() as session:
        return [(r.position, r.url, r.token) for r in session.scalars(
            select(TrackedLink).where(TrackedLink.message_id == message_id).order_by(TrackedLink.position))]


def events(ws: Workspace, name: str) -> list[dict[str, Any]]:
    ws.flush()
    rows = ws.events.query("SELECT user_id, properties FROM events WHERE event = ? ORDER BY timestamp", [name])
    return [{"user": r["user_id"], **json.loads(r["properties"])} for r in rows]


def test_a_click_is_recorded_for_the_person_and_redirected_to_the_link_as_written(shop: Workspace,
                                                                               tmp_path: Path) -> None:
    spec = campaign("sale", messages={"push": {"title": "겨울 세일", "text": "최대 30%", "link": "https://shop.example/p/1"},
                                      "sms": {"text": f"겨울 세일 최대 30% {SALE}"}})
    write(tmp_path / "c", "sale", spec)
    assert not shop.apply_campaigns(tmp_path / "c")["blocked"]
    rows = outbox(shop, "sale")
    sms = rows[("u001", "sms")]
    ((position, url, token),) = links_of(shop, sms["message_id"])
    assert position == 1 and url.startswith(SALE + "&utm_source=nudgekit&utm_medium=sms&utm_campaign=sale")
    assert sms["fields"]["text"] == f"겨울 세일 최대 30% {PUBLIC}/c/{token}" and len(token) == 14
    push = rows[("u000", "push")]
    ((_, pushed, push_token),) = links_of(shop, push["message_id"])
    assert push["fields"]["link"] == f"{PUBLIC}/c/{push_token}" and pushed.startswith("https://shop.example/p/1?")

    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with LiveServer(shop) as server, httpx.Client(base_url=server.url, follow_redirects=False) as client:
        went = client.get(f"/c/{token}", headers={"User-Agent": "Mozilla/5.0 (iPhone)"})
        assert (went.status_code, went.headers["location"]) == (302, url)
        assert "no-store" in went.headers["cache-control"]
        looked = client.head(f"/c/{push_token}")  # a mail scanner's look is not a click
        assert (looked.status_code, looked.headers["location"]) == (302, pushed)
        for bad in (forged, "0" * 14, "short", "a" * 15, "..%2F..%2Fetc", "https:%2F%2Fevil.example"):
            refused = client.get(f"/c/{bad}")
            assert refused.status_code == 404 and "location" not in refused.headers, bad
            assert "%2F" in bad or "링크를 찾을 수 없습니다" in refused.text
        assert client.get(f"/o/{token}").status_code == 404  # a link's token is not a pixel

    (click,) = events(shop, "message_clicked")
    assert click == {"user": "u001", "message_id": sms["message_id"], "channel": "sms", "campaign": "sale",
                     "url": url, "link": 1, "user_agent": "Mozilla/5.0 (iPhone)"}


def test_an_email_has_its_links_tracked_and_a_pixel_that_records_the_open(shop: Workspace, tmp_path: Path) -> None:
    write(tmp_path / "c", "mail", campaign("mail", channels=["email"], messages={"email": EMAIL}))
    (stopped,) = shop.plan_campaigns(tmp_path / "c")["campaigns"]  # preflight reads the links as written
    assert [c["message"] for c in stopped["preflight"] if c["level"] == "error"] == [
        "links to partner.example, which are not the workspace's domains: fix the link, or add the domain to "
        "[campaigns] link_domains if it is a partner's"]
    shop.settings.campaigns.link_domains = ["partner.example"]
    assert not shop.apply_campaigns(tmp_path / "c")["blocked"]
    mail = outbox(shop, "mail")[("u000", "email")]
    found = links_of(shop, mail["message_id"])
    assert [(p, u.split("?")[0] if u else None) for p, u, _ in found] == [
        (0, None), (1, "https://shop.example/sale"), (2, "https://shop.example/sale"), (3, "https://partner.example/x")]
    pixel, text_link, html_link, partner = (t for _, _, t in found)
    html = mail["fields"]["html"]
    assert f'<a href="{PUBLIC}/c/{html_link}">보기</a><a href="{PUBLIC}/c/{partner}">제휴</a><img src="{PUBLIC}/o/{pixel}"' \
        in html and html.endswith("</body></html>")
    assert mail["fields"]["text"] == f"최대 30% {PUBLIC}/c/{text_link}"
    assert found[3][1] == "https://partner.example/x"  # another domain: tracked, but no UTM of ours

    with LiveServer(shop) as server, httpx.Client(base_url=server.url, follow_redirects=False) as client:
        seen = client.get(f"/o/{pixel}")
        assert (seen.status_code, seen.headers["content-type"], seen.content) == (200, "image/gif", tracking.GIF)
        assert client.get(f"/o/{pixel}").status_code == 200  # opened again: each open is recorded
        assert client.get(f"/c/{pixel}").status_code == 404  # the pixel is not a link
        assert client.get(f"/c/{partner}").headers["location"] == "https://partner.example/x"
    opens = events(shop, "message_opened")
    assert [(o["user"], o["message_id"], o["campaign"], o["channel"]) for o in opens] == [
        ("u000", mail["message_id"], "mail", "email")] * 2
    assert [c["url"] for c in events(shop, "message_clicked")] == ["https://partner.example/x"]


def test_without_public_url_or_with_tracking_off_links_stay_as_written(tmp_path: Path, clock: Any) -> None:
    clock.now = NOON_KST
    for name, settings in (("plain", {}), ("off", {"public_url": PUBLIC})):
        ws = open_shop(tmp_path / name, f"sqlite:///{tmp_path / name}.db", clock, **settings)
        if settings:
            ws.settings.links.track_clicks = False
        shoppers(ws, 2)
        write(tmp_path / name / "c", "sale", campaign("sale", channels=["sms"], messages={"sms": {"text": f"세일 {SALE}"}}))
        assert not ws.apply_campaigns(tmp_path / name / "c")["blocked"]
        sms = outbox(ws, "sale")[("u001", "sms")]
        assert "https://shop.example/sale?from=sms&utm_source=nudgekit" in sms["fields"]["text"]
        assert links_of(ws, sms["message_id"]) == []
        ws.close()


def test_a_token_is_the_same_for_the_same_link_and_cannot_be_made_without_the_secret() -> None:
    key = tracking.secret(b"k" * 32)
    first = tracking.token(key, "m-abc", 1)
    assert first == tracking.token(key, "m-abc", 1) and tracking.TOKEN.fullmatch(first)
    assert len({first, tracking.token(key, "m-abc", 2), tracking.token(key, "m-abd", 1),
                tracking.token(tracking.secret(b"j" * 32), "m-abc", 1)}) == 4
    assert tracking.genuine(key, first, "m-abc", 1) and not tracking.genuine(key, first, "m-abc", 2)
    assert not tracking.safe("javascript:alert(1)") and not tracking.safe("//evil.example") \
        and tracking.safe("https://shop.example/x")
