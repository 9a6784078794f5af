from nudgekit.workspace import Workspace


def test_identify_builds_a_profile_with_contact_points_and_attribution(ws: Workspace) -> None:
    result = ws.ingest([{
        "type": "identify", "userId": "u1", "timestamp": "2026-11-20T12:00:00+09:00",
        "traits": {"name": "김민지", "phone": "010-2345-6789", "email": "minji@naver.com", "timezone": "America/New_York",
                   "kakao_reachable": "yes", "install_source": "play_store", "points": 1200},
        "context": {"locale": "ko-KR", "campaign": {"source": "naver", "medium": "cpc", "name": "fall_sale"},
                    "device": {"token": "fcm-token-1", "type": "android", "id": "dev-1"},
                    "app": {"namespace": "com.example.health"}},
    }])
    assert result.accepted == 1 and not result.rejects
    p = ws.profile("u1")["profile"]
    assert (p["phone"], p["email"], p["language"], p["timezone"], p["kakao_reachable"]) == (
        "+821023456789", "minji@naver.com", "ko-KR", "America/New_York", True)
    assert p["attribution"] == {"utm_source": "naver", "utm_medium": "cpc", "utm_campaign": "fall_sale",
                                "install_source": "play_store"}
    assert p["traits"] == {"name": "김민지", "points": 1200}
    [token] = ws.profile("u1")["push_tokens"]
    assert (token["platform"], token["app_id"], token["device_id"], token["status"]) == (
        "android", "com.example.health", "dev-1", "valid")


def test_first_touch_attribution_is_kept_when_later_visits_come_from_elsewhere(ws: Workspace) -> None:
    ws.identify("u1", {}, context={"campaign": {"source": "instagram", "medium": "paid_social"}})
    ws.identify("u1", {}, context={"campaign": {"source": "google", "medium": "cpc"}})
    assert ws.profile("u1")["profile"]["attribution"]["utm_source"] == "instagram"


def test_trait_types_are_fixed_when_first_seen(ws: Workspace) -> None:
    ws.identify("u1", {"points": 10, "vip": True})
    ok = ws.ingest([{"type": "identify", "userId": "u2", "traits": {"points": "1,200", "vip": "no"}}])
    bad = ws.ingest([{"type": "identify", "userId": "u3", "traits": {"points": "lots"}}])
    assert ok.accepted == 1
    assert ws.profile("u2")["profile"]["traits"] == {"points": 1200, "vip": False}
    assert bad.accepted == 0 and bad.rejects[0].field == "traits.points"
    assert "number" in bad.rejects[0].reason


def test_invalid_phone_rejects_the_whole_identify(ws: Workspace) -> None:
    result = ws.ingest([{"type": "identify", "userId": "u1", "traits": {"phone": "010-12", "name": "x"}}])
    assert result.accepted == 0 and result.rejects[0].field == "traits.phone"
    assert ws.profile("u1") is None


def test_identify_linking_an_anonymous_visitor_merges_their_history(ws: Workspace) -> None:
    ws.identify(None, {"interest": "protein", "consent": {"inapp": True, "source": "in_app"}}, anonymous_id="anon-7")
    ws.track("product_viewed", None, {"sku": "P-1"}, anonymous_id="anon-7")
    ws.identify("u7", {"name": "박서준"}, anonymous_id="anon-7")
    ws.track("order_completed", "u7", {"revenue": 32900})
    found = ws.profile("u7")
    assert found["profile"]["traits"] == {"interest": "protein", "name": "박서준"}
    assert [(c["channel"], c["granted"], c["source"]) for c in found["consents"]] == [("inapp", True, "in_app")]
    assert "merged from anon:anon-7" in found["consent_history"][0]["evidence"]
    names = [e["event"] for e in found["recent_events"]]
    assert "product_viewed" in names and "order_completed" in names
    assert found["activity"]["anonymous_ids"] == ["anon-7"]
    # the anonymous id now resolves to the user
    assert ws.profile("anon-7")["profile_id"] == "u7"


def test_an_anonymous_id_stays_with_the_first_user_it_was_linked_to(ws: Workspace) -> None:
    ws.track("app_opened", None, {}, anonymous_id="shared-tablet", timestamp="2026-11-20T10:00:00Z")
    ws.identify("mom", {}, anonymous_id="shared-tablet", timestamp="2026-11-20T10:05:00Z")
    ws.identify("kid", {}, anonymous_id="shared-tablet", timestamp="2026-11-20T11:00:00Z")
    ws.flush()
    assert ws.profile("mom")["activity"]["events"] == 2
    assert ws.profile("kid")["activity"]["events"] == 1


def test_alias_chains_resolve_to_the_last_user(ws: Workspace) -> None:
    ws.track("app_opened", None, {}, anonymous_id="device-1", timestamp="2026-11-20T09:00:00Z")
    ws.identify("old-id", {}, anonymous_id="device-1", timestamp="2026-11-20T09:01:00Z")
    ws.track("order_completed", "old-id", {"revenue": 1000}, timestamp="2026-11-20T09:02:00Z")
    ws.flush()
    ws.alias("old-id", "new-id", timestamp="2026-11-21T09:00:00Z")  # the account moved to a new id
    ws.alias("new-id", "newest-id", timestamp="2026-11-22T09:00:00Z")  # and again
    ws.flush()
    events = {e["event"] for e in ws.profile("newest-id")["recent_events"]}
    assert {"app_opened", "order_completed"} <= events
    # a cycle back does not undo the first link
    ws.alias("newest-id", "old-id", timestamp="2026-11-22T10:00:00Z")
    ws.flush()
    assert ws.profile("newest-id")["activity"]["events"] >= 4
