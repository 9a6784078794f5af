"""`computed` values from a shop's events: the last product viewed and bought, the cart since the last
order, recommendations (recently viewed, frequently bought, bought together, popular, due for repurchase),
each for the person, only the ones a template reads, and a person who has none skipped as missing data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FakeClock

from nudgekit.profiles.contacts import FieldError
from nudgekit.templates.computed import Computer, used
from nudgekit.workspace import Workspace

NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


@pytest.fixture
def shop(tmp_path: Path) -> Workspace:
    ws, _ = Workspace.init(tmp_path / "ws", clock=FakeClock(NOW), policy={"control_group_percent": 0.0})
    for user in ("minsu", "jieun", "new", "regular"):
        ws.identify(user, {"name": user})

    def track(user: str, event: str, days: float, **properties: object) -> None:
        ws.track(event, user, properties, timestamp=(NOW - timedelta(days=days)).isoformat())

    # minsu: an old order of socks and gloves, then looked at shoes and socks, put 2 socks in the cart
    track("minsu", "order_completed", 40, products=[{"sku": "SOCKS", "price": 3000}, {"sku": "GLOVES", "price": 5000}])
    track("minsu", "product_viewed", 5, sku="SHOES", name="운동화", price=89000, url="https://shop.example/p/shoes")
    track("minsu", "product_viewed", 4, sku="SOCKS", name="양말", price=3000)
    track("minsu", "added_to_cart", 4, sku="SOCKS", name="양말", price=3000, quantity=2)
    track("minsu", "added_to_cart", 3, sku="SHOES", name="운동화", price=89000)
    track("minsu", "removed_from_cart", 2, sku="SHOES")
    # jieun: bought socks with a hat lately (Segment's own event names and product_id work too)
    track("jieun", "Order Completed", 3, products=[{"product_id": "SOCKS", "price": 3000},
                                                   {"product_id": "HAT", "name": "모자", "price": 7000}])
    track("jieun", "Product Viewed", 50, product_id="GLOVES", name="장갑", price=5000, repurchase_days=30)
    # regular: coffee every 10 days, so coffee's cycle is learnt; last bought 15 days ago
    for days in (45, 35, 25, 15):
        track("regular", "order_completed", days, products=[{"sku": "COFFEE", "name": "원두", "price": 15000}])
    ws.flush()
    return ws


def rendered(ws: Workspace, user: str, text: str) -> str:
    found = ws.preview(user, channel="push", title="t", text=text)
    assert found["rendered"] is not None, found["unrendered"]
    return found["rendered"]["text"]


def test_the_last_product_viewed_and_bought_and_days_since(shop: Workspace) -> None:
    text = "{{ computed.last_viewed.name }} {{ computed.last_viewed.price|won }} / {{ computed.last_purchased.id }} " \
           "{{ computed.last_purchased.price|won }} / {{ computed.days_since_purchase }}일 / " \
           "{{ computed.last_purchase_at|date }}"
    assert rendered(shop, "minsu", text) == "양말 3,000원 / SOCKS 3,000원 / 40일 / 10월 13일 (화)"
    assert rendered(shop, "minsu", "{{ computed.last_viewed.url|default('-') }}") == "-"  # socks have no page


def test_an_order_line_without_a_name_takes_it_from_the_products_views(shop: Workspace) -> None:
    assert rendered(shop, "minsu", "{{ computed.last_purchased.name }}") == "양말"


def test_the_cart_is_what_was_added_since_the_last_order_less_what_was_removed(shop: Workspace) -> None:
    text = "{% for p in computed.cart %}{{ p.name }} x{{ p.quantity }}{% endfor %} = {{ computed.cart_total|won }}"
    assert rendered(shop, "minsu", text) == "양말 x2 = 6,000원"


def test_recommendations(shop: Workspace) -> None:
    names = "{% for p in computed.X %}{{ p.id }} {% endfor %}"
    # viewed lately and not bought since, latest first
    assert rendered(shop, "minsu", names.replace("X", "recently_viewed")) == "SOCKS SHOES "
    # with the socks in the cart: what others bought with socks (gloves from minsu's order, the hat from jieun's)
    assert rendered(shop, "minsu", names.replace("X", "bought_together")) == "GLOVES HAT "
    # the most bought over 30 days, less what the person bought in that time
    assert rendered(shop, "minsu", names.replace("X", "popular")) == "COFFEE HAT SOCKS "
    assert rendered(shop, "jieun", names.replace("X", "popular")) == "COFFEE "
    assert rendered(shop, "regular", names.replace("X", "frequently_bought")) == "COFFEE "


def test_due_for_repurchase_by_the_products_cycle_written_or_learnt(shop: Workspace) -> None:
    text = "{% for p in computed.due_for_repurchase %}{{ p.id }} {{ p.cycle_days }}d +{{ p.days_overdue }}; {% endfor %}"
    # gloves: a 30-day product (its events say so) bought 40 days ago; socks have no known cycle
    assert rendered(shop, "minsu", text) == "GLOVES 30d +10; "
    # coffee: bought every 10 days, last 15 days ago
    assert rendered(shop, "regular", text) == "COFFEE 10d +5; "


def test_a_person_with_none_is_missing_data_unless_the_template_tests_for_it(shop: Workspace) -> None:
    found = shop.preview("new", channel="push", title="t", text="{{ computed.cart|length }}개 남았어요")
    assert found["rendered"] is None and found["unrendered"]["detail"] == "computed.cart is missing"
    guarded = "{% if computed.cart is defined %}장바구니{% else %}둘러보세요{% endif %}"
    assert rendered(shop, "new", guarded) == "둘러보세요"


def test_only_the_values_a_template_reads_are_worked_out() -> None:
    texts = ["{{ computed.cart|length }}", "{% for p in computed['popular'] %}{{ p.name }}{% endfor %}",
             "{{ user.name }}"]
    assert used(texts) == {"cart", "popular"}
    assert used(["no tags here"]) == set()


def test_a_value_nudgekit_does_not_work_out_is_refused_when_saved(shop: Workspace) -> None:
    with pytest.raises(FieldError, match="computed.points is not a value nudgekit works out"):
        shop.save_template({"name": "t", "channel": "push", "message": {"title": "{{ computed.points }}"}})


def test_shared_lists_are_read_once_per_send(shop: Workspace) -> None:
    calls: list[str] = []

    class Counting:
        def query(self, sql: str, params: list | None = None) -> list:
            calls.append(sql)
            return shop.events.query(sql, params)

    computer = Computer(Counting(), shop.settings, NOW)
    computer.compute({"popular", "recently_viewed"}, ["minsu"])
    computer.compute({"popular", "recently_viewed"}, ["jieun"])
    assert len(calls) == 4  # the popular list and the catalogue once, each batch's people once


@pytest.fixture
def towns(tmp_path: Path) -> Workspace:
    """Buyers in Seoul favour tea, in Busan fish; one buyer in Jeju is too few to speak for Jeju."""
    ws, _ = Workspace.init(tmp_path / "ws", clock=FakeClock(NOW),
                           commerce={"popular_by": "city", "popular_min_buyers": 2})
    bought = {"s1": ("서울", ["TEA", "COFFEE"]), "s2": ("서울", ["TEA", "COFFEE"]), "s3": ("서울", ["TEA"]),
              "b1": ("부산", ["FISH", "COFFEE"]), "b2": ("부산", ["FISH"]), "j1": ("제주", ["ORANGE"])}
    for user, (city, products) in bought.items():
        ws.identify(user, {"city": city})
        ws.track("order_completed", user, {"products": [{"sku": p} for p in products]},
                 timestamp=(NOW - timedelta(days=2)).isoformat())
    ws.track("order_completed", "s1", {"products": [{"sku": "FISH"}]},
             timestamp=(NOW - timedelta(days=60)).isoformat())  # before popular_days: not counted
    for user, city in (("s9", "서울"), ("b9", "부산"), ("j9", "제주"), ("x9", None)):
        ws.identify(user, {"city": city} if city else {"name": "x"})
    ws.flush()
    return ws


def test_popular_in_segment_is_what_people_of_the_same_group_bought(towns: Workspace) -> None:
    names = "{% for p in computed.popular_in_segment %}{{ p.id }} {% endfor %}"
    # the group's list first, then the workspace's (COFFEE 3 buyers, TEA 3, FISH 2, ORANGE 1)
    assert rendered(towns, "s9", names) == "TEA COFFEE FISH ORANGE "
    assert rendered(towns, "b9", names) == "FISH COFFEE TEA ORANGE "
    assert rendered(towns, "b1", names) == "TEA ORANGE "  # less what they bought lately
    # too few buyers in Jeju, and no city at all: the workspace-wide list
    assert rendered(towns, "j9", names) == rendered(towns, "x9", names) == "COFFEE TEA FISH ORANGE "


def test_popular_in_segment_groups_by_lifecycle_stage_by_default(shop: Workspace) -> None:
    shop.run_lifecycle()
    stages = {u: shop.lifecycle_of(shop.resolve(u))["stage"] for u in ("minsu", "jieun", "regular")}
    names = "{% for p in computed.popular_in_segment %}{{ p.id }} {% endfor %}"
    # fewer than 20 buyers in any stage here: everyone gets the workspace-wide list
    assert rendered(shop, "new", names) == "COFFEE HAT SOCKS "
    computer = Computer(shop.events, shop.settings.model_copy(update={"commerce": shop.settings.commerce.model_copy(
        update={"popular_min_buyers": 1})}), NOW, shop._groups)
    by_stage = computer.popular_in()
    assert by_stage[stages["regular"]][0] == "COFFEE" and "HAT" in by_stage[stages["jieun"]]
