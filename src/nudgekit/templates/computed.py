"""`computed` in a template: what a person looked at, has in their cart and bought, and products to show
them, worked out from the event store for a batch of people at once — and only the values the template
reads (`computed.cart` costs nothing to a template that does not use it).

Products come from the commerce events named in `[commerce]` (Segment's e-commerce spec by default: the
product is a view's or a cart event's properties, an order's are `properties.products`). A product is a
record: `id`, and whatever the events said of it lately (`name`, `price`, `category`, `brand`, `url`,
`image_url`) — an order line that only gives a sku still has its name from the product's views.

A value a person has none of (no views, an empty cart, nothing due) is left out: the template's strict
rule then skips them as `missing_data` unless it tests for it (`{% if computed.cart is defined %}`).

:TRICKY: reads the workspace's own DuckDB event store; warehouse mode (`events_url`) has no `computed`
values yet, and a template that uses them is refused there (FieldError) rather than sent half-empty.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from nudgekit.config import Settings
from nudgekit.templates.render import names_under

KNOWN = {
    "last_viewed": "the product they viewed last",
    "last_purchased": "the first product of their latest order",
    "last_purchase_at": "when they last ordered",
    "days_since_purchase": "whole days since their latest order (in the workspace's time zone)",
    "cart": "products added to the cart since their latest order and not removed, each with quantity",
    "cart_total": "the cart's total (price x quantity)",
    "recently_viewed": "products they viewed lately and have not bought since, latest first",
    "frequently_bought": "products they ordered at least twice, most ordered first",
    "bought_together": "products other people ordered together with what is in their cart (else their latest "
                       "order)",
    "popular": "the products most people bought lately ([commerce] popular_days), not ones they bought",
    "popular_in_segment": "the products most bought lately by people in the same group as them (their lifecycle "
                          "stage, or the trait [commerce] popular_by names), then `popular`; not ones they bought",
    "due_for_repurchase": "products they bought whose repurchase cycle has passed without buying again",
}
PRODUCT_FIELDS = ("name", "price", "category", "brand", "url", "image_url", "repurchase_days")
MIN_GAPS = 3
"""A product's repurchase cycle is inferred from at least this many repeat purchases (people buying it again)."""


def used(texts: Iterable[str]) -> set[str]:
    """The names templates read under `computed` (`computed.cart`, `computed["cart"]`)."""
    return names_under(texts, "computed")


def unknown(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - set(KNOWN))


@dataclass
class Shared:
    """What every person of a send shares: the catalogue, the popular list, repurchase cycles, pairs bought
    together — read once per send (a campaign's batches reuse it)."""

    catalogue: dict[str, dict[str, Any]] | None = None
    popular: list[str] | None = None
    popular_in: dict[str, list[str]] | None = None
    """Group -> its popular list, for the groups with enough buyers."""
    cycles: dict[str, float] | None = None
    together: dict[str, Counter[str]] = field(default_factory=dict)


class Computer:
    """Reads the event store for the values a send's templates use."""

    def __init__(self, events: Any, settings: Settings, now: datetime,
                 groups: Callable[[list[str]], dict[str, str]] | None = None) -> None:
        self.events = events
        self.settings = settings
        self.commerce = settings.commerce
        self.now = now
        self.shared = Shared()
        self.groups = groups or (lambda people: {})
        """People's groups for `popular_in_segment` (person id -> group; a person with none is left out)."""

    # -- SQL -------------------------------------------------------------------------------------------

    def _product_sql(self, item: str) -> str:
        keys = ", ".join(f"json_extract_string({item}, '$.\"{k}\"')" for k in self.commerce.product_keys)
        return f"coalesce({keys})"

    def _items_sql(self, where: str) -> str:
        """(person_id, event, kind, timestamp, event_id, item, product) for every commerce event under `where`."""
        c = self.commerce
        names = {"view": c.view_events, "add": c.cart_add_events, "remove": c.cart_remove_events,
                 "order": c.order_events}
        kind = "CASE " + " ".join(f"WHEN event IN ({_quoted(v)}) THEN '{k}'" for k, v in names.items() if v) + " END"
        every = [n for v in names.values() for n in v]
        orders = _quoted(c.order_events) if c.order_events else "NULL"
        return f"""
            WITH ev AS (SELECT person_id, event, {kind} AS kind, timestamp, event_id, properties
                        FROM events_resolved WHERE event IN ({_quoted(every)}) AND ({where})),
            items AS (SELECT person_id, event, kind, timestamp, event_id, properties AS item FROM ev
                      WHERE event NOT IN ({orders})
                      UNION ALL
                      SELECT person_id, event, kind, timestamp, event_id,
                             unnest(json_extract(properties, '$.products[*]'))::VARCHAR AS item
                      FROM ev WHERE event IN ({orders}))
            SELECT *, {self._product_sql('item')} AS product FROM items"""

    # -- shared values ---------------------------------------------------------------------------------

    def catalogue(self) -> dict[str, dict[str, Any]]:
        if self.shared.catalogue is None:
            picks = ", ".join(f"arg_max(json_extract_string(item, '$.{f}'), timestamp) FILTER "
                              f"(WHERE json_extract_string(item, '$.{f}') IS NOT NULL) AS {f}" for f in PRODUCT_FIELDS)
            rows = self.events.query(f"SELECT product, {picks} FROM ({self._items_sql('TRUE')}) "
                                     "WHERE product IS NOT NULL GROUP BY product")
            self.shared.catalogue = {r["product"]: {k: _number(k, v) for k, v in r.items() if k != "product"
                                                    and v is not None} for r in rows}
        return self.shared.catalogue

    def popular(self) -> list[str]:
        if self.shared.popular is None:
            since = self.now - timedelta(days=self.commerce.popular_days)
            rows = self.events.query(
                f"SELECT product, count(DISTINCT person_id) AS buyers FROM ({self._items_sql('TRUE')}) "
                "WHERE kind = 'order' AND product IS NOT NULL AND timestamp >= ? "
                "GROUP BY product ORDER BY buyers DESC, product LIMIT ?", [since, self.commerce.recommend * 4])
            self.shared.popular = [r["product"] for r in rows]
        return self.shared.popular

    def popular_in(self) -> dict[str, list[str]]:
        """Each group's most bought products (by distinct buyers), for groups with enough buyers."""
        if self.shared.popular_in is None:
            since = self.now - timedelta(days=self.commerce.popular_days)
            rows = self.events.query(
                f"SELECT DISTINCT person_id, product FROM ({self._items_sql('TRUE')}) "
                "WHERE kind = 'order' AND product IS NOT NULL AND timestamp >= ?", [since])
            group_of = self.groups(sorted({r["person_id"] for r in rows}))
            counts: dict[str, Counter[str]] = defaultdict(Counter)
            buyers: dict[str, set[str]] = defaultdict(set)
            for r in rows:
                group = group_of.get(r["person_id"])
                if group is not None:
                    counts[group][r["product"]] += 1
                    buyers[group].add(r["person_id"])
            self.shared.popular_in = {
                g: [p for p, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))][:self.commerce.recommend * 4]
                for g, c in counts.items() if len(buyers[g]) >= self.commerce.popular_min_buyers}
        return self.shared.popular_in

    def cycles(self) -> dict[str, float]:
        """Each product's repurchase cycle in days: the median gap between one person's orders of it."""
        if self.shared.cycles is None:
            rows = self.events.query(
                f"""WITH bought AS (SELECT DISTINCT person_id, product, timestamp FROM ({self._items_sql('TRUE')})
                                    WHERE kind = 'order' AND product IS NOT NULL),
                    gaps AS (SELECT product, date_diff('second', lag(timestamp) OVER (
                                 PARTITION BY person_id, product ORDER BY timestamp), timestamp) / 86400.0 AS days
                             FROM bought)
                    SELECT product, median(days) AS days, count(*) AS gaps FROM gaps WHERE days > 0
                    GROUP BY product HAVING count(*) >= ?""", [MIN_GAPS])
            self.shared.cycles = {r["product"]: float(r["days"]) for r in rows}
        return self.shared.cycles

    def together(self, anchors: set[str]) -> dict[str, Counter[str]]:
        wanted = anchors - set(self.shared.together)
        if wanted:
            rows = self.events.query(
                f"""WITH lines AS (SELECT DISTINCT event_id, product FROM ({self._items_sql('TRUE')})
                                   WHERE kind = 'order' AND product IS NOT NULL)
                    SELECT a.product AS anchor, b.product AS other, count(*) AS orders
                    FROM lines a JOIN lines b ON a.event_id = b.event_id AND a.product <> b.product
                    WHERE a.product IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL""", [sorted(wanted)])
            for anchor in wanted:
                self.shared.together[anchor] = Counter()
            for r in rows:
                self.shared.together[r["anchor"]][r["other"]] = r["orders"]
        return {a: self.shared.together[a] for a in anchors}

    # -- people ----------------------------------------------------------------------------------------

    def compute(self, names: set[str], people: list[str]) -> dict[str, dict[str, Any]]:
        """The values named, for each person (a value they have none of is left out)."""
        if not names or not people:
            return {p: {} for p in people}
        rows = self.events.query(
            f"SELECT * FROM ({self._items_sql('person_id IN (SELECT unnest(?::VARCHAR[]))')}) "
            "WHERE product IS NOT NULL ORDER BY timestamp, event_id", [sorted(set(people))])
        history: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            history[row["person_id"]].append(row)
        group_of = self.groups(sorted(set(people))) if "popular_in_segment" in names else {}
        return {p: self._values(names, history[p], group_of.get(p)) for p in people}

    def _product(self, product: str, item: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        found = {"id": product, **self.catalogue().get(product, {})}
        for key in PRODUCT_FIELDS:
            if item is not None and item.get(key) is not None:
                found[key] = item[key]
        return {**found, **extra}

    def _values(self, names: set[str], rows: list[dict[str, Any]], group: str | None = None) -> dict[str, Any]:
        n = self.commerce.recommend
        views = [r for r in rows if r["kind"] == "view"]
        orders: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["kind"] == "order":
                orders.setdefault(r["event_id"], []).append(r)
        last_order = list(orders.values())[-1] if orders else None
        out: dict[str, Any] = {}
        if "last_viewed" in names and views:
            out["last_viewed"] = self._product(views[-1]["product"], _item(views[-1]), viewed_at=views[-1]["timestamp"])
        if last_order is not None:
            at = last_order[0]["timestamp"]
            first = last_order[0]
            out["last_purchased"] = self._product(first["product"], _item(first), bought_at=at)
            out["last_purchase_at"] = at
            zone = self.settings.zone
            out["days_since_purchase"] = (self.now.astimezone(zone).date() - at.astimezone(zone).date()).days
        cart = self._cart(rows, last_order[0]["timestamp"] if last_order else None)
        if cart:
            out["cart"] = cart
            out["cart_total"] = sum(float(c.get("price") or 0) * c["quantity"] for c in cart)
        bought_at: dict[str, datetime] = {}
        for r in rows:
            if r["kind"] == "order":
                bought_at[r["product"]] = r["timestamp"]
        if "recently_viewed" in names:
            seen: dict[str, datetime] = {}
            for v in views:
                seen[v["product"]] = v["timestamp"]
            fresh = [p for p, t in sorted(seen.items(), key=lambda kv: kv[1], reverse=True)
                     if p not in bought_at or bought_at[p] < t]
            out["recently_viewed"] = [self._product(p, viewed_at=seen[p]) for p in fresh[:n]]
        if "frequently_bought" in names:
            counts = Counter(p for lines in orders.values() for p in {r["product"] for r in lines})
            often = sorted((p for p, k in counts.items() if k >= 2), key=lambda p: (-counts[p], -bought_at[p].timestamp()))
            out["frequently_bought"] = [self._product(p, orders=counts[p]) for p in often[:n]]
        if "bought_together" in names:
            anchors = {c["id"] for c in cart} or ({r["product"] for r in last_order} if last_order else set())
            scores: Counter[str] = Counter()
            for counter in self.together(anchors).values():
                scores.update(counter)
            picks = [p for p, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if p not in anchors]
            out["bought_together"] = [self._product(p) for p in picks[:n]]
        recent = {p for p, t in bought_at.items() if t >= self.now - timedelta(days=self.commerce.popular_days)}
        if "popular" in names:
            out["popular"] = [self._product(p) for p in self.popular() if p not in recent][:n]
        if "popular_in_segment" in names:
            listed = self.popular_in().get(group, []) if group is not None else []
            picks = listed + [p for p in self.popular() if p not in listed]  # the group's first, then everyone's
            out["popular_in_segment"] = [self._product(p) for p in picks if p not in recent][:n]
        if "due_for_repurchase" in names:
            out["due_for_repurchase"] = self._due(bought_at)[:n]
        return {k: v for k, v in out.items() if k in names and v != []}

    def _cart(self, rows: list[dict[str, Any]], since: datetime | None) -> list[dict[str, Any]]:
        """Added since the latest order, less what was removed, in the order first added."""
        held: dict[str, int] = {}
        items: dict[str, dict[str, Any]] = {}
        for r in rows:
            if since is not None and r["timestamp"] <= since or r["kind"] not in ("add", "remove"):
                continue
            item = _item(r)
            quantity = _quantity(item.get("quantity"))
            if r["kind"] == "add":
                held[r["product"]] = held.get(r["product"], 0) + quantity
                items[r["product"]] = item
            else:
                held[r["product"]] = held.get(r["product"], 0) - quantity
        return [self._product(p, items[p], quantity=q) for p, q in held.items() if q > 0 and p in items]

    def _due(self, bought_at: dict[str, datetime]) -> list[dict[str, Any]]:
        found = []
        for product, at in bought_at.items():
            days = self.catalogue().get(product, {}).get("repurchase_days") or self.cycles().get(product)
            if not days:
                continue
            due = at + timedelta(days=float(days))
            if due <= self.now:
                found.append(self._product(product, bought_at=at, due_at=due,
                                           days_overdue=(self.now - due).days, cycle_days=round(float(days))))
        return sorted(found, key=lambda p: p["due_at"])


def _quoted(names: Iterable[str]) -> str:
    return ", ".join("'" + n.replace("'", "''") + "'" for n in names)


def _item(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        value = orjson.loads(row["item"])
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _quantity(value: Any) -> int:
    try:
        return max(int(float(value)), 0) if value is not None else 1
    except (TypeError, ValueError):
        return 1


def _number(name: str, value: Any) -> Any:
    """The catalogue reads JSON as text: prices and cycles back to numbers."""
    if name in ("price", "repurchase_days"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value
        return int(number) if number.is_integer() else number
    return value

