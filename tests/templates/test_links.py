"""Links: UTM parameters on links to the workspace's own domains (and only there), a link field that renders
into something that is not a link skipped as template_error, and preview showing the tagged text."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeClock
from policy.helpers import NOON_KST, SENDER

from nudgekit.templates import links
from nudgekit.vocabulary import MessageChannel
from nudgekit.workspace import Workspace

UTM = {"utm_source": "nudgekit", "utm_medium": "sms", "utm_campaign": "spring", "utm_content": None}


def test_links_to_own_domains_are_tagged_in_text_html_link_fields_and_buttons() -> None:
    fields = {"text": "세일 https://shop.example/sale. 후기 https://blog.other.com/x 앱 myapp://cart",
              "html": '<a href="https://m.shop.example/p?id=1&utm_campaign=own">보기</a>',
              "link": "https://shop.example/cart",
              "buttons": [{"type": "WL", "name": "보기", "url_mobile": "https://shop.example/m"}],
              "image": "https://shop.example/i.png", "unsubscribe_url": "https://shop.example/u"}
    out = links.tag(MessageChannel.SMS, fields, ["shop.example"], UTM)

    tags = "utm_source=nudgekit&utm_medium=sms&utm_campaign=spring"
    assert out["text"] == f"세일 https://shop.example/sale?{tags}. 후기 https://blog.other.com/x 앱 myapp://cart"
    assert out["html"] == ('<a href="https://m.shop.example/p?id=1&utm_campaign=own&utm_source=nudgekit&'
                           'utm_medium=sms">보기</a>')  # a parameter written in the link is kept
    assert out["link"] == f"https://shop.example/cart?{tags}"
    assert out["buttons"][0]["url_mobile"] == f"https://shop.example/m?{tags}"
    assert out["image"] == fields["image"] and out["unsubscribe_url"] == fields["unsubscribe_url"]


def test_alimtalk_and_webhooks_and_workspaces_without_domains_are_left_alone() -> None:
    fields = {"text": "https://shop.example/a", "url": "https://shop.example/hook"}
    assert links.tag(MessageChannel.ALIMTALK, fields, ["shop.example"], UTM) == fields
    assert links.tag(MessageChannel.WEBHOOK, fields, ["shop.example"], UTM) == fields
    assert links.tag(MessageChannel.SMS, fields, [], UTM) == fields


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"link": "shop.example/p"}, "link", "needs a scheme"),
    ({"link": "https:///p"}, "link", "no host"),
    ({"link": "https://shop.example/p/운동화 A"}, "link", "space"),
    ({"buttons": [{"label": "x", "url": "www.shop.example"}]}, "buttons.0.url", "needs a scheme"),
])
def test_a_link_field_that_is_not_a_link_is_named(fields: dict, field: str, words: str) -> None:
    with pytest.raises(links.BadLink) as caught:
        links.check(fields)
    assert caught.value.field == field and words in caught.value.reason


def test_links_pass_with_deep_links_and_encoded_values() -> None:
    links.check({"link": "myapp://product/123", "buttons": [{"label": "x", "url": "https://shop.example/p?q=%EC%9A%B4"}]})


@pytest.fixture
def shop(tmp_path: Path) -> Workspace:
    ws, _ = Workspace.init(tmp_path / "ws", clock=FakeClock(NOON_KST), sender=SENDER,
                           policy={"control_group_percent": 0.0}, links={"domains": ["shop.example"]})
    ws.identify("u1", {"name": "민수", "phone": "010-4000-0001", "favourite": "운동화 A"})
    ws.flush()
    return ws


def test_a_campaigns_links_carry_its_name_and_an_sms_may_become_an_lms(shop: Workspace) -> None:
    shop.save_template({"name": "sale", "channel": "sms",
                        "message": {"text": "{{ user.name|nim }} 세일 https://shop.example/s"}})
    plain = shop.preview("u1", template="sale")
    tagged = shop.preview("u1", template="sale", campaign="spring-sale")
    assert plain["rendered"]["text"] == "민수님 세일 https://shop.example/s"
    assert tagged["goes_out"]["text"] == ("민수님 세일 https://shop.example/s?utm_source=nudgekit&utm_medium=sms&"
                                          "utm_campaign=spring-sale&utm_content=sale%401")
    assert "utm_campaign=sale&" in plain["goes_out"]["text"]  # no campaign named: the template's name
    assert len(plain["rendered"]["text"].encode("cp949")) <= 90 and tagged["check"]["type"] == "LMS"


def test_a_link_rendered_with_a_space_fails_preview_and_skips_the_person(shop: Workspace) -> None:
    found = shop.preview("u1", channel="push", title="t", text="x",
                         link="https://shop.example/p/{{ user.favourite }}")
    encoded = shop.preview("u1", channel="push", title="t", text="x",
                           link="https://shop.example/p/{{ user.favourite|urlencode }}")
    queued = shop.queue("c", "push", ["u1"], title="t", text="x", link="https://shop.example/p/{{ user.favourite }}")

    assert found["rendered"] is None and found["unrendered"]["field"] == "link"
    assert "space" in found["unrendered"]["detail"]
    assert encoded["goes_out"]["link"].startswith("https://shop.example/p/%EC%9A%B4%EB%8F%99%ED%99%94%20A?utm_source")
    assert queued.as_dict()["skipped"] == {"template_error": 1}


def test_app_link_opens_the_app_from_a_push_and_the_web_site_elsewhere(tmp_path: Path) -> None:
    ws, _ = Workspace.init(tmp_path / "ws", clock=FakeClock(NOON_KST), sender=SENDER,
                           policy={"control_group_percent": 0.0},
                           links={"domains": ["shop.example"], "app_scheme": "myshop", "web_url": "https://shop.example/"})
    ws.identify("u1", {"name": "민수", "phone": "010-4000-0001", "email": "minsu@example.com"})
    ws.flush()
    place = "app_link('product/' ~ event.properties.id)"
    event = {"event": "Product Viewed", "properties": {"id": 123}}
    push = ws.preview("u1", channel="push", title="t", text="x", link=f"{{{{ {place} }}}}", event=event)
    sms = ws.preview("u1", channel="sms", text=f"보러 가기 {{{{ {place} }}}}", event=event)
    other = ws.preview("u1", channel="sms", text="{{ app_link('cart', web='https://m.shop.example/cart') }}")

    assert push["rendered"]["link"] == "myshop://product/123"  # an app's link gets no UTM parameters
    assert push["goes_out"]["link"] == "myshop://product/123"
    assert sms["rendered"]["text"] == "보러 가기 https://shop.example/product/123"
    assert sms["goes_out"]["text"].startswith("보러 가기 https://shop.example/product/123?utm_source=nudgekit&"
                                              "utm_medium=sms")
    assert other["rendered"]["text"] == "https://m.shop.example/cart"


def test_app_link_without_the_settings_it_needs_is_a_template_error(shop: Workspace) -> None:
    push = shop.preview("u1", channel="push", title="t", text="x", link="{{ app_link('cart') }}")
    sms = shop.preview("u1", channel="sms", text="{{ app_link('cart') }}")
    assert push["unrendered"]["reason"] == "template_error" and "app_scheme" in push["unrendered"]["detail"]
    assert "web_url" in sms["unrendered"]["detail"]
    for bad in ({"app_scheme": "https"}, {"app_scheme": "my shop"}, {"web_url": "shop.example"}):
        with pytest.raises(ValueError):
            Workspace.init(shop.settings.home.parent / "bad", links=bad)
