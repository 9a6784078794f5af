from datetime import UTC, datetime, timedelta

import pytest

from nudgekit.profiles.contacts import FieldError
from nudgekit.workspace import Workspace

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def consents(ws: Workspace, user: str) -> dict[tuple[str, str], bool]:
    return {(c["channel"], c["purpose"]): c["granted"] for c in ws.profile(user)["consents"]}


def test_current_consent_is_the_latest_change_by_time_not_by_arrival(ws: Workspace) -> None:
    ws.set_consent("u1", channel="sms", purpose="advertising", granted=True, source="signup_form", at=T0)
    ws.set_consent("u1", channel="sms", purpose="advertising", granted=True, source="settings_screen",
                   at=T0 + timedelta(days=4))  # a re-affirmation is evidence too: kept
    # the 080 call centre's file arrives late: a withdrawal on day 3, before the re-affirmation on day 4
    late = ws.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="optout_080_call",
                          at=T0 + timedelta(days=3), evidence="080 call log 2026-10-04 #1182")
    assert late.recorded
    assert consents(ws, "u1") == {("sms", "advertising"): True}
    ws.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="unsubscribe_link",
                   at=T0 + timedelta(days=5))
    assert consents(ws, "u1") == {("sms", "advertising"): False}
    history = ws.profile("u1")["consent_history"]
    assert [(h["source"], h["change"]) for h in history] == [
        ("signup_form", "granted"), ("optout_080_call", "withdrawn"), ("settings_screen", "granted"),
        ("unsubscribe_link", "withdrawn")]
    assert history[1]["evidence"] == "080 call log 2026-10-04 #1182"


def test_the_same_record_twice_is_stored_once(ws: Workspace) -> None:
    first = ws.set_consent("u1", channel="push", purpose="advertising", granted=True, source="signup_form", at=T0)
    again = ws.set_consent("u1", channel="push", purpose="advertising", granted=True, source="signup_form", at=T0)
    assert first.recorded and not again.recorded
    assert len(ws.profile("u1")["consent_history"]) == 1


def test_an_app_repeating_its_consent_traits_does_not_pile_up_records(ws: Workspace) -> None:
    for hour in range(5):
        ws.identify("u1", {"consent": {"push": True}}, timestamp=(T0 + timedelta(hours=hour)).isoformat())
    ws.identify("u1", {"consent": {"push": False}}, timestamp=(T0 + timedelta(hours=6)).isoformat())
    assert [h["change"] for h in ws.profile("u1")["consent_history"]] == ["granted", "withdrawn"]


def test_identify_consent_trait_is_recorded_once_per_message(ws: Workspace) -> None:
    message = {"type": "identify", "userId": "u2", "messageId": "m-1", "timestamp": "2026-11-01T10:00:00+09:00",
               "traits": {"consent": {"sms": {"advertising": True, "night": True}, "email": False,
                                      "source": "signup_form"}}}
    first = ws.ingest([message])
    ws.set_consent("u2", channel="sms", purpose="advertising", granted=False, source="unsubscribe_link",
                   at=datetime(2026, 11, 2, tzinfo=UTC))
    retried = ws.ingest([message])  # a client retry of the same message must not re-grant
    assert first.consents_recorded == 3 and retried.consents_recorded == 0
    assert consents(ws, "u2") == {("sms", "advertising"): False, ("sms", "night"): True,
                                  ("email", "advertising"): False}
    history = ws.profile("u2")["consent_history"]
    assert history[0]["at"].startswith("2026-11-01T01:00:00")
    assert {h["source"] for h in history} == {"signup_form", "unsubscribe_link"}


@pytest.mark.parametrize("consent, field", [
    ({"fax": True}, "traits.consent.fax"),
    ({"sms": {"lunch": True}}, "traits.consent.sms.lunch"),
    ({"sms": "maybe"}, "traits.consent.sms.advertising"),
    ({"sms": True, "source": "telepathy"}, "traits.consent.source"),
    ({"sms": True, "at": "yesterday"}, "traits.consent.at"),
])
def test_bad_consent_shapes_are_refused_with_the_field(ws: Workspace, consent: dict, field: str) -> None:
    result = ws.ingest([{"type": "identify", "userId": "u3", "traits": {"consent": consent, "name": "x"}}])
    assert result.accepted == 0
    assert result.rejects[0].field == field
    assert ws.profile("u3") is None  # nothing half-written


def test_unknown_channel_in_set_consent_names_the_field(ws: Workspace) -> None:
    with pytest.raises(FieldError) as caught:
        ws.set_consent("u1", channel="fax", purpose="advertising", granted=True, source="api")
    assert caught.value.field == "channel"


def test_a_consent_dated_in_the_future_is_refused(ws: Workspace, clock) -> None:
    with pytest.raises(FieldError) as caught:
        ws.set_consent("u1", channel="sms", purpose="advertising", granted=True, source="api",
                       at=clock() + timedelta(hours=2))
    assert caught.value.field == "at" and "future" in caught.value.reason
    result = ws.ingest([{"type": "identify", "userId": "u1", "traits": {
        "consent": {"sms": True, "at": (clock() + timedelta(days=300)).isoformat()}}}])
    assert result.accepted == 0 and result.rejects[0].field == "traits.consent.at"


def test_a_device_clock_running_fast_does_not_date_consent_in_the_future(ws: Workspace, clock) -> None:
    ahead = (clock() + timedelta(hours=3)).isoformat()  # within the 24 h an event may be ahead
    ws.ingest([{"type": "identify", "userId": "u1", "timestamp": ahead, "traits": {"consent": {"sms": True}}}])
    ws.set_consent("u1", channel="sms", purpose="advertising", granted=False, source="unsubscribe_link")
    [state] = ws.profile("u1")["consents"]
    assert state["granted"] is False  # the unsubscribe, recorded now, is the latest
    assert ws.profile("u1")["consent_history"][0]["at"] == clock().isoformat()
