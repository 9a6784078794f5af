"""Segments covering every condition kind and operator, used by the reference and parity tests."""

from __future__ import annotations

CONDITIONS: list[dict] = [
    # traits
    {"trait": "plan", "op": "eq", "value": "premium"},
    {"trait": "plan", "op": "ne", "value": "premium"},
    {"trait": "plan", "op": "in", "value": ["plus", "premium"]},
    {"trait": "plan", "op": "not_in", "value": ["free"]},
    {"trait": "plan", "op": "contains", "value": "re"},
    {"trait": "plan", "op": "exists"},
    {"trait": "plan", "op": "not_exists"},
    {"trait": "points", "op": "lt", "value": 250},
    {"trait": "points", "op": "lte", "value": 250},
    {"trait": "points", "op": "gt", "value": 250},
    {"trait": "points", "op": "gte", "value": 1200},
    {"trait": "points", "op": "between", "value": [10, 1200]},
    {"trait": "vip", "op": "eq", "value": True},
    {"trait": "signup_at", "within_last_days": 7},
    {"trait": "signup_at", "at_least_days_ago": 30},
    {"trait": "signup_at", "op": "gte", "value": "2026-11-01"},
    {"trait": "tags", "op": "contains", "value": "vegan"},
    {"trait": "unknown_trait", "op": "exists"},
    # behaviour
    {"event": "order_completed"},
    {"event": "order_completed", "within_last_days": 30},
    {"event": "app_opened", "count": {"gte": 3}, "within_last_days": 60},
    {"event": "app_opened", "count": {"lte": 1}, "within_last_days": 60},
    {"event": "app_opened", "count": {"eq": 2}},
    {"event": "app_opened", "performed": False, "within_last_days": 14},
    {"event": "product_viewed", "where": [{"property": "sku", "op": "eq", "value": "P-PROBIO-30"}],
     "within_last_days": 45},
    {"event": "product_viewed", "where": [{"property": "sku", "op": "in", "value": ["P-VITC-1000", "P-OMEGA3-90"]}]},
    {"event": "order_completed", "where": [{"property": "revenue", "op": "gte", "value": 30000}], "count": {"gte": 1}},
    {"event": "order_completed", "sum": {"property": "revenue", "gte": 60000}, "within_last_days": 90},
    {"event": "order_completed", "sum": {"property": "revenue", "lt": 10000}, "within_last_days": 90},
    {"event": "order_completed", "avg": {"property": "revenue", "gt": 30000}},
    {"event": "order_completed", "first": {"within_last_days": 30}},
    {"event": "app_opened", "last": {"at_least_days_ago": 20}},
    {"event": "added_to_cart", "between": ["2026-10-01", "2026-10-31"]},
    {"event": "added_to_cart", "last": {"between": ["2026-11-01", "2026-11-20"]}},
    # lifecycle
    {"stage": "churn"},
    {"stage": ["current", "power", "resurrected"]},
    {"stage": ["current", "churn"], "entered_within_last_days": 30},
    {"stage": "current", "lapsing": True},
    # reachability and consent
    {"reachable": "push"},
    {"reachable": "sms"},
    {"reachable": "email"},
    {"reachable": "kakao"},
    {"consent": {"channel": "sms", "purpose": "advertising"}},
    {"consent": {"channel": "push"}, "granted": False},
    {"consent": {"channel": "email", "purpose": "night"}},
    # acquisition, buckets, lists
    {"utm_source": "naver"},
    {"utm_source": ["kakao", "google"]},
    {"utm_source": {"op": "not_in", "value": ["naver"]}},
    {"bucket": {"salt": "spring", "from": 0, "to": 30}},
    {"bucket": {"salt": "other", "from": 50, "to": 100}},
    {"list": "picked"},
    {"list": "no_such_list"},
]

COMBINED: list[dict] = [
    {"all": [CONDITIONS[25], {"not": CONDITIONS[34]}, CONDITIONS[42]]},
    {"any": [CONDITIONS[0], {"all": [CONDITIONS[19], CONDITIONS[38]]}, {"not": {"any": [CONDITIONS[48], CONDITIONS[50]]}}]},
    {"not": {"all": [CONDITIONS[27], CONDITIONS[23]]}},
]
