"""The demo data set: a seeded, realistic shop for a Korean health-food app, written as two Parquet files.

This module owns who the demo users are (Korean names, unique 010 numbers, consents, acquisition
channel, push tokens) and how they behave (install, browse before signing up, sign up, shop through a
view -> cart -> checkout -> order funnel, opt out of push, churn, uninstall, come back, and re-buy the
30-day probiotic every month). The files are ordinary import files: `nudge import users users.parquet`
and `nudge import events events.parquet` read them through the same rules as any customer file.

Users are drawn in chunks of CHUNK_USERS with numpy and pyarrow and written one row group per chunk,
so two million users fit in bounded memory; there is no Python loop per user or per event.

:TRICKY: determinism. Chunk k draws from `default_rng([seed, k])` in a fixed order. Changing the order
of draws, CHUNK_USERS or any table below changes the data set for every seed; tests pin behaviour,
not exact values, so that is allowed, but do it on purpose.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CHUNK_USERS = 50_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: int
    """KRW, tax included."""
    supply_days: int | None
    """How long one unit lasts when taken daily; None when it is not a daily supply."""
    category: str


PRODUCTS: tuple[Product, ...] = (
    Product("P-PROBIO-30", "프로바이오틱스 30일분", 32_900, 30, "장건강"),
    Product("P-PROTEIN-14", "단백질 쉐이크 14입", 29_900, None, "단백질"),
    Product("P-VITC-1000", "비타민C 1000 120정", 19_900, 120, "비타민"),
    Product("P-OMEGA3-90", "오메가3 90일분", 45_900, 90, "혈행건강"),
    Product("P-COLLAGEN-14", "콜라겐 젤리 14포", 24_900, None, "이너뷰티"),
    Product("P-SALAD-SUB", "샐러드 정기배송 주3회", 39_900, None, "식단"),
)
MONTHLY = next(i for i, p in enumerate(PRODUCTS) if p.supply_days == 30)
"""Index of the one product bought again every month: the "repurchase due" story of the demo."""
PRODUCT_WEIGHTS = np.array([0.30, 0.20, 0.15, 0.12, 0.13, 0.10])
PRICES = np.array([p.price for p in PRODUCTS], dtype=np.int64)
QUANTITIES = np.array([1, 2, 3])
QUANTITY_WEIGHTS = np.array([0.85, 0.12, 0.03])


@dataclass(frozen=True)
class DemoFiles:
    users: Path
    events: Path
    users_count: int
    events_count: int


class EventCode(IntEnum):
    """Event codes while drawing; the value indexes EVENT_NAMES."""

    INSTALLED = 0
    SIGNED_UP = 1
    OPENED = 2
    VIEWED = 3
    CARTED = 4
    CHECKOUT = 5
    ORDERED = 6
    PUSH_OFF = 7
    UNINSTALLED = 8


EVENT_NAMES = ("app_installed", "signed_up", "app_opened", "product_viewed", "added_to_cart",
               "checkout_started", "order_completed", "push_permission_changed", "app_uninstalled")


class Device(IntEnum):
    IOS = 0
    ANDROID = 1
    WEB = 2


DEVICE_WEIGHTS = np.array([0.35, 0.55, 0.10])
INSTALL_SOURCES = ("app_store", "play_store", "web")
PUSH_PLATFORMS = ("ios", "android", "web")
OS_NAMES = ("iOS", "Android", "Web")
APP_VERSIONS = ("3.2.1", "3.1.4", "3.0.9")
APP_VERSION_WEIGHTS = np.array([0.62, 0.28, 0.10])
LANGUAGES = ("ko", "en")
LOCALES = ("ko-KR", "en-US")

# -- who the users are -----------------------------------------------------------------------

SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("김", "kim", 21.6), ("이", "lee", 14.7), ("박", "park", 8.4), ("최", "choi", 4.7), ("정", "jung", 4.3),
    ("강", "kang", 2.4), ("조", "cho", 2.1), ("윤", "yoon", 2.1), ("장", "jang", 2.0), ("임", "lim", 1.7),
    ("한", "han", 1.5), ("오", "oh", 1.5), ("서", "seo", 1.5), ("신", "shin", 1.5), ("권", "kwon", 1.4),
    ("황", "hwang", 1.4), ("안", "ahn", 1.4), ("송", "song", 1.3), ("류", "ryu", 1.2), ("전", "jeon", 1.1),
    ("홍", "hong", 1.1), ("고", "ko", 0.9), ("문", "moon", 0.9), ("양", "yang", 0.8), ("손", "son", 0.9),
    ("배", "bae", 0.8), ("백", "baek", 0.7), ("허", "heo", 0.6), ("남", "nam", 0.5), ("심", "shim", 0.5),
)
FEMALE_NAMES: tuple[tuple[str, str], ...] = (
    ("서연", "seoyeon"), ("서윤", "seoyun"), ("지우", "jiwoo"), ("지민", "jimin"), ("수빈", "subin"),
    ("하은", "haeun"), ("예은", "yeeun"), ("민서", "minseo"), ("지현", "jihyun"), ("수현", "suhyun"),
    ("지은", "jieun"), ("유진", "yujin"), ("민지", "minji"), ("은지", "eunji"), ("혜진", "hyejin"),
    ("지영", "jiyoung"), ("미영", "miyoung"), ("수진", "sujin"), ("은영", "eunyoung"), ("현주", "hyunju"),
    ("정희", "junghee"), ("영희", "younghee"), ("미경", "mikyung"), ("선영", "sunyoung"), ("지혜", "jihye"),
    ("다은", "daeun"), ("채원", "chaewon"), ("소연", "soyeon"), ("예린", "yerin"), ("하윤", "hayun"),
    ("은정", "eunjung"), ("윤아", "yuna"),
)
MALE_NAMES: tuple[tuple[str, str], ...] = (
    ("민준", "minjun"), ("서준", "seojun"), ("도윤", "doyun"), ("예준", "yejun"), ("시우", "siwoo"),
    ("하준", "hajun"), ("지호", "jiho"), ("주원", "juwon"), ("지훈", "jihoon"), ("현우", "hyunwoo"),
    ("준서", "junseo"), ("건우", "gunwoo"), ("우진", "woojin"), ("민재", "minjae"), ("성민", "sungmin"),
    ("동현", "donghyun"), ("상훈", "sanghoon"), ("성호", "sungho"), ("영수", "youngsoo"), ("정훈", "junghoon"),
    ("재현", "jaehyun"), ("승현", "seunghyun"), ("태민", "taemin"), ("준영", "junyoung"), ("진우", "jinwoo"),
    ("영호", "youngho"), ("민수", "minsu"), ("광수", "kwangsoo"), ("성진", "sungjin"), ("종현", "jonghyun"),
)
GIVEN_NAMES = FEMALE_NAMES + MALE_NAMES
EMAIL_DOMAINS = ("naver.com", "gmail.com", "kakao.com", "daum.net", "hanmail.net")
EMAIL_DOMAIN_WEIGHTS = np.array([0.42, 0.30, 0.12, 0.09, 0.07])
EMAIL_SEPARATORS = ("", ".", "_")
TIMEZONES = ("Asia/Seoul", "America/Los_Angeles", "America/New_York", "Europe/London", "Asia/Tokyo",
             "Asia/Singapore")
ABROAD_WEIGHTS = np.array([0.0, 0.28, 0.22, 0.12, 0.22, 0.16])
ACQUISITION: tuple[tuple[str, str | None, str | None, float], ...] = (
    ("naver", "cpc", "brand_search", 0.14), ("naver", "cpc", "probiotics_keyword", 0.08),
    ("kakao", "display", "bizboard_spring_sale", 0.12),
    ("google", "cpc", "generic_health", 0.10),
    ("instagram", "paid_social", "collagen_reels", 0.09), ("instagram", "paid_social", "protein_influencer", 0.05),
    ("youtube", "video", "probiotics_review", 0.07),
    ("referral", "friend_invite", "invite_5000won", 0.08),
    ("organic", None, None, 0.27),
)
MEMBERSHIP_TIERS = ("basic", "silver", "gold")
MEMBERSHIP_MIN_SPEND = np.array([80_000, 250_000])
"""Lifetime spend (KRW) at which a member becomes silver, then gold."""

# Consent rates for the whole user base; night consent is asked only of those who granted advertising.
CONSENT_RATES = {"push": 0.60, "sms": 0.40, "kakao": 0.45, "email": 0.38}
NIGHT_RATE = 0.30
CONSENT_CORRELATION = 0.6
"""How much one user's answers agree: people who say yes to one channel tend to say yes to others."""

# Valid 010 middle blocks start with 2-9; 5 is left out because 010-597x..599x are not valid numbers.
PHONE_LEADS = np.array([2, 3, 4, 6, 7, 8, 9])
PHONE_SPACE = len(PHONE_LEADS) * 1000 * 10_000
PHONE_STEP = 48_271_009
"""Coprime with PHONE_SPACE (2^7 * 5^7 * 7), so user index -> number is a permutation: unique phones."""

# -- how they behave -------------------------------------------------------------------------

SESSIONS_PER_DAY_MEDIAN = 0.035
SESSIONS_PER_DAY_SIGMA = 1.3
"""Log-normal activity: the median user opens the app about monthly, the top 2% most days."""
CHURN_MEAN_DAYS = 60
COMEBACK_RATE = 0.35
COMEBACK_GAP_DAYS = 30
UNINSTALL_RATE = 0.15
"""Of app users who churn; about 8% of all users."""
PUSH_OFF_RATE = 0.12
"""Of users with a push token; about 10% of all users."""
VIEW_TO_CART, CART_TO_CHECKOUT, CHECKOUT_TO_ORDER = 0.25, 0.50, 0.65
MONTHLY_REBUY_RATE = 0.75
"""Chance a monthly buyer orders the next month's supply, month after month."""
REBUY_MAX = 7


# -- JSON templates, rendered once -----------------------------------------------------------


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _strings(values: object) -> pa.Array:
    return pa.array(list(values), pa.string())  # type: ignore[call-overload]


VIEW_PROPS = _strings(_json({"sku": p.sku, "name": p.name, "price": p.price, "category": p.category})
                      for p in PRODUCTS)
CART_PROPS = _strings(_json({"sku": p.sku, "name": p.name, "price": p.price, "quantity": int(q)})
                      for p in PRODUCTS for q in QUANTITIES)
ORDER_ITEMS = _strings(_json({"sku": p.sku, "price": p.price, "quantity": int(q)}) for p in PRODUCTS for q in QUANTITIES)
INSTALL_PROPS = _strings(_json({"install_source": s}) for s in INSTALL_SOURCES)
SIGNUP_METHODS = ("kakao", "phone", "naver", "apple")
SIGNUP_METHOD_WEIGHTS = np.array([0.48, 0.27, 0.17, 0.08])
SIGNUP_PROPS = _strings(_json({"method": m}) for m in SIGNUP_METHODS)
NO_PROPS = "{}"
PUSH_OFF_PROPS = _json({"enabled": False})
REINSTALL_PROPS = _json({"install_source": "reinstall"})
CONTEXTS = _strings(
    _json({"app": {"version": v}, "os": {"name": OS_NAMES[d]}, "locale": loc})
    for d in Device for v in APP_VERSIONS for loc in LOCALES
)

EVENT_NAME_VALUES = _strings(EVENT_NAMES)
SURNAME_WEIGHTS = np.array([w for _, _, w in SURNAMES]) / sum(w for _, _, w in SURNAMES)
SURNAME_HANGUL = _strings(s for s, _, _ in SURNAMES)
SURNAME_ROMAN = _strings(r for _, r, _ in SURNAMES)
GIVEN_HANGUL = _strings(g for g, _ in GIVEN_NAMES)
GIVEN_ROMAN = _strings(r for _, r in GIVEN_NAMES)


def _context_index(device: np.ndarray, version: np.ndarray, language: np.ndarray) -> np.ndarray:
    return (device * len(APP_VERSIONS) + version) * len(LOCALES) + language


USER_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("anonymous_id", pa.string()), ("name", pa.string()), ("phone", pa.string()),
    ("email", pa.string()), ("language", pa.string()), ("timezone", pa.string()), ("kakao_reachable", pa.bool_()),
    ("utm_source", pa.string()), ("utm_medium", pa.string()), ("utm_campaign", pa.string()),
    ("install_source", pa.string()), ("signup_at", pa.timestamp("us", tz="UTC")), ("birth_year", pa.int32()),
    ("gender", pa.string()), ("membership", pa.string()),
    ("consent_push_advertising", pa.bool_()), ("consent_push_night", pa.bool_()),
    ("consent_sms_advertising", pa.bool_()), ("consent_sms_night", pa.bool_()),
    ("consent_kakao_advertising", pa.bool_()), ("consent_email_advertising", pa.bool_()),
    ("consent_at", pa.timestamp("us", tz="UTC")), ("consent_source", pa.string()),
    ("push_token", pa.string()), ("push_platform", pa.string()),
])
EVENT_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("type", pa.string()), ("event", pa.string()), ("user_id", pa.string()),
    ("anonymous_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")), ("properties", pa.string()),
    ("context", pa.string()),
])


# -- public entry point ----------------------------------------------------------------------


def generate(out_dir: Path, *, users: int = 20_000, seed: int = 7, as_of: datetime, days: int = 180,
             progress: Callable[[int], None] | None = None) -> DemoFiles:
    """Write users.parquet and events.parquet into out_dir. `as_of` is an aware datetime (the "now"
    of the data set); all event timestamps are in (as_of - days, as_of]. progress(n) is called with the
    number of users just generated after each chunk.

    The files appear under their final names only when complete, so a crash leaves no half file
    that `nudge import` could mistake for a data set.
    """
    if as_of.utcoffset() is None:
        raise ValueError("as_of must be an aware datetime, e.g. datetime.now(UTC)")
    if not 1 <= users <= PHONE_SPACE or days < 1:
        raise ValueError(f"users must be between 1 and {PHONE_SPACE:,} and days at least 1")
    end = (as_of - EPOCH) // timedelta(microseconds=1)
    frame = _Frame(start=end - days * DAY, end=end, seed=seed, id_width=max(7, len(str(users))))
    out_dir.mkdir(parents=True, exist_ok=True)
    users_path, events_path = out_dir / "users.parquet", out_dir / "events.parquet"
    users_partial, events_partial = (p.with_name(p.name + ".partial") for p in (users_path, events_path))
    events_count = 0
    with (pq.ParquetWriter(users_partial, USER_SCHEMA, compression="zstd") as user_writer,
          pq.ParquetWriter(events_partial, EVENT_SCHEMA, compression="zstd") as event_writer):
        for index, first in enumerate(range(0, users, CHUNK_USERS)):
            count = min(CHUNK_USERS, users - first)
            user_table, event_table = _chunk(np.random.default_rng([seed, index]), frame, first, count)
            user_writer.write_table(user_table)
            event_writer.write_table(event_table)
            events_count += event_table.num_rows
            if progress:
                progress(count)
    os.replace(users_partial, users_path)
    os.replace(events_partial, events_path)
    return DemoFiles(users_path, events_path, users, events_count)


# -- one chunk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    """The data set's time window in UTC microseconds, (start, end], and what ids look like."""

    start: int
    end: int
    seed: int
    id_width: int

    @property
    def year(self) -> int:
        return (EPOCH + timedelta(microseconds=self.end)).year


@dataclass(frozen=True)
class _Cohort:
    """Per-user behaviour of one chunk, one array entry per user (times in UTC microseconds)."""

    count: int
    device: np.ndarray
    language: np.ndarray
    context: np.ndarray
    signup: np.ndarray
    active_until: np.ndarray
    """End of the first active spell: the churn time, or the end of the data set."""
    back_at: np.ndarray
    """Start of the second spell for users who come back after 30+ days; the end of the data set otherwise."""
    uninstalled: np.ndarray
    has_token: np.ndarray
    rate: np.ndarray
    """Sessions per day while active."""
    favourite: np.ndarray


@dataclass(frozen=True)
class _Block:
    """Some events of one chunk, in no particular order."""

    user: np.ndarray
    ts: np.ndarray
    code: np.ndarray
    known: np.ndarray
    """Whether the event carries the user_id (False: before sign-up, anonymous_id only)."""
    props: pa.Array


@dataclass(frozen=True)
class _Orders:
    """Orders (or checkouts) with their line items; items are grouped by order, in order."""

    user: np.ndarray
    ts: np.ndarray
    item_order: np.ndarray
    item_product: np.ndarray
    item_quantity: np.ndarray

    def __add__(self, other: _Orders) -> _Orders:
        return _Orders(np.r_[self.user, other.user], np.r_[self.ts, other.ts],
                       np.r_[self.item_order, other.item_order + self.user.size],
                       np.r_[self.item_product, other.item_product], np.r_[self.item_quantity, other.item_quantity])

    def until(self, end: int) -> _Orders:
        kept = self.ts <= end
        renumber = np.cumsum(kept) - 1
        items = kept[self.item_order]
        return _Orders(self.user[kept], self.ts[kept], renumber[self.item_order[items]], self.item_product[items],
                       self.item_quantity[items])

    def value_and_lines(self) -> tuple[np.ndarray, np.ndarray]:
        """Per order: the value in KRW and the number of lines."""
        n = self.user.size
        amounts = PRICES[self.item_product] * QUANTITIES[self.item_quantity]
        return (np.bincount(self.item_order, weights=amounts, minlength=n).astype(np.int64),
                np.bincount(self.item_order, minlength=n))

    def items_json(self) -> pa.Array:
        """Per order: the JSON list body of its line items."""
        offsets = pa.array(np.r_[0, np.cumsum(self.value_and_lines()[1])], pa.int32())
        items = ORDER_ITEMS.take(_item_index(self.item_product, self.item_quantity))
        return pc.binary_join(pa.ListArray.from_arrays(offsets, items), ",")


def _chunk(rng: np.random.Generator, frame: _Frame, first: int, count: int) -> tuple[pa.Table, pa.Table]:
    cohort = _draw_cohort(rng, frame, count)
    user_ids = _user_ids(frame, first, count)
    session_blocks, orders = _sessions(rng, frame, cohort)
    orders = orders.until(frame.end)
    blocks = [*_lifecycle(rng, frame, cohort), *session_blocks, _order_block(orders, user_ids)]
    spend = np.bincount(orders.user, weights=orders.value_and_lines()[0], minlength=count)
    anonymous_ids = _uuids(rng, count)
    users = _users_table(rng, frame, cohort, first, user_ids, anonymous_ids, spend)
    return users, _events_table(frame, blocks, cohort, user_ids, anonymous_ids)


def _draw_cohort(rng: np.random.Generator, frame: _Frame, count: int) -> _Cohort:
    span = frame.end - frame.start
    # sign-ups grow over the period: the density rises linearly to three times its first-day value
    share = (np.sqrt(1 + 8 * rng.random(count)) - 1) / 2
    signup = frame.start + 1 + (share * (span - 1)).astype(np.int64)
    device = rng.choice(len(Device), count, p=DEVICE_WEIGHTS)
    rate = np.clip(np.exp(rng.normal(np.log(SESSIONS_PER_DAY_MEDIAN), SESSIONS_PER_DAY_SIGMA, count)), 0.004, 3.0)
    churn = signup + DAY + _days(rng.exponential(CHURN_MEAN_DAYS, count))
    churned = churn < frame.end
    back_at = churn + COMEBACK_GAP_DAYS * DAY + _days(rng.exponential(20, count))
    comes_back = churned & (rng.random(count) < COMEBACK_RATE) & (back_at < frame.end - HOUR)
    app = device != Device.WEB
    uninstalled = churned & app & (rng.random(count) < UNINSTALL_RATE)
    has_token = np.where(app, rng.random(count) < 0.93, rng.random(count) < 0.2)
    version = rng.choice(len(APP_VERSIONS), count, p=APP_VERSION_WEIGHTS)
    language = (rng.random(count) >= 0.92).astype(np.int64)
    return _Cohort(
        count=count, device=device, language=language, context=_context_index(device, version, language),
        signup=signup, active_until=np.where(churned, churn, frame.end),
        back_at=np.where(comes_back, back_at, frame.end), uninstalled=uninstalled, has_token=has_token, rate=rate,
        favourite=rng.choice(len(PRODUCTS), count, p=PRODUCT_WEIGHTS),
    )


def _days(values: np.ndarray) -> np.ndarray:
    return (values * DAY).astype(np.int64)


def _repeat(counts: np.ndarray) -> np.ndarray:
    """Owner index per item: [2, 0, 1] -> [0, 0, 2]."""
    return np.repeat(np.arange(counts.size), counts)


def _rank(owner: np.ndarray) -> np.ndarray:
    """Position of each item among its owner's items; `owner` must be sorted."""
    index = np.arange(owner.size)
    if not owner.size:
        return index
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return index - np.repeat(starts, np.diff(np.r_[starts, owner.size]))


def _block(user: np.ndarray, ts: np.ndarray, code: EventCode, props: pa.Array | str, *, known: bool = True) -> _Block:
    size = user.size
    values = props if isinstance(props, pa.Array) else pa.repeat(pa.scalar(props), size)
    return _Block(user, ts, np.full(size, code, np.int8), np.full(size, known), values)


def _lifecycle(rng: np.random.Generator, frame: _Frame, c: _Cohort) -> list[_Block]:
    """Install and browse anonymously, sign up; later maybe turn push off, uninstall, reinstall."""
    n = c.count
    everyone = np.arange(n)
    # the install comes minutes (most) or days before sign-up, never before the data set starts
    lead = np.where(rng.random(n) < 0.55, rng.exponential(10 * MINUTE, n), rng.exponential(1.5 * DAY, n))
    room = c.signup - frame.start - 1
    lead = np.where(lead < room, lead, rng.random(n) * room).astype(np.int64)
    installed = c.signup - lead
    app = c.device != Device.WEB
    browser = _repeat(np.minimum(rng.poisson(1.5, n), 4))
    browse_ts = installed[browser] + (rng.uniform(0.05, 0.95, browser.size) * lead[browser]).astype(np.int64)
    viewed = rng.random(browser.size) < 0.6
    browsed = VIEW_PROPS.take(rng.choice(len(PRODUCTS), browser.size, p=PRODUCT_WEIGHTS))
    method = rng.choice(len(SIGNUP_METHODS), n, p=SIGNUP_METHOD_WEIGHTS)
    push_off = everyone[c.has_token & (rng.random(n) < PUSH_OFF_RATE)]
    push_off_ts = c.signup + (rng.uniform(0.02, 0.98, n) * (c.active_until - c.signup)).astype(np.int64)
    gone = everyone[c.uninstalled]
    reinstalled = everyone[c.uninstalled & (c.back_at < frame.end)]
    return [
        _block(everyone[app], installed[app], EventCode.INSTALLED, INSTALL_PROPS.take(c.device[app]), known=False),
        _Block(browser, browse_ts, np.where(viewed, EventCode.VIEWED, EventCode.OPENED).astype(np.int8),
               np.zeros(browser.size, bool), pc.if_else(pa.array(viewed), browsed, NO_PROPS)),
        _block(everyone, c.signup, EventCode.SIGNED_UP, SIGNUP_PROPS.take(method)),
        _block(push_off, push_off_ts[push_off], EventCode.PUSH_OFF, PUSH_OFF_PROPS),
        _block(gone, c.active_until[gone], EventCode.UNINSTALLED, NO_PROPS),
        _block(reinstalled, c.back_at[reinstalled], EventCode.INSTALLED, REINSTALL_PROPS),
    ]


def _session_starts(rng: np.random.Generator, begin: np.ndarray, until: np.ndarray, rate: np.ndarray,
                    active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sessions in [begin, until) of active users: one right away, then Poisson at `rate` per day.

    Later sessions start at least an hour before `until`, so a whole session (under 40 minutes)
    ends before the user churns or uninstalls.
    """
    room = np.maximum(until - begin - HOUR - MINUTE, 0)
    counts = np.where(active, 1 + rng.poisson(rate * room / DAY), 0)
    user = _repeat(counts)
    later = begin[user] + MINUTE + (rng.random(user.size) * room[user]).astype(np.int64)
    right_away = begin[user] + rng.integers(5 * SECOND, 2 * MINUTE, user.size)
    return user, np.where(_rank(user) == 0, right_away, later)


def _sessions(rng: np.random.Generator, frame: _Frame, c: _Cohort) -> tuple[list[_Block], _Orders]:
    """App opens with product views and the funnel, plus the monthly re-buys; orders come back unrendered."""
    comes_back = c.back_at < frame.end
    u1, t1 = _session_starts(rng, c.signup, c.active_until, c.rate, np.ones(c.count, bool))
    u2, t2 = _session_starts(rng, c.back_at, np.full(c.count, frame.end), c.rate * 0.7, comes_back)
    s_user, s_ts = np.r_[u1, u2], np.r_[t1, t2]
    sessions = s_user.size

    views = np.minimum(1 + rng.poisson(1.2, sessions), 8)
    v_session = _repeat(views)
    gaps = rng.integers(15 * SECOND, 3 * MINUTE, v_session.size)
    walked = np.cumsum(gaps)
    first_view = np.cumsum(views) - views
    v_ts = s_ts[v_session] + walked - (walked[first_view] - gaps[first_view])[v_session]
    v_user = s_user[v_session]
    product = np.where(rng.random(v_session.size) < 0.45, c.favourite[v_user],
                       rng.choice(len(PRODUCTS), v_session.size, p=PRODUCT_WEIGHTS))
    quantity = rng.choice(len(QUANTITIES), v_session.size, p=QUANTITY_WEIGHTS)
    carted = rng.random(v_session.size) < VIEW_TO_CART
    cart_ts = v_ts + rng.integers(5 * SECOND, 90 * SECOND, v_session.size)

    checkout = (np.bincount(v_session[carted], minlength=sessions) > 0) & (rng.random(sessions) < CART_TO_CHECKOUT)
    checkout_ts = v_ts[first_view + views - 1] + rng.integers(100 * SECOND, 5 * MINUTE, sessions)
    ordered = checkout & (rng.random(sessions) < CHECKOUT_TO_ORDER)
    order_ts = checkout_ts + rng.integers(30 * SECOND, 4 * MINUTE, sessions)

    def basket(chosen: np.ndarray, ts: np.ndarray) -> _Orders:
        items = carted & chosen[v_session]
        number = np.cumsum(chosen) - 1
        return _Orders(s_user[chosen], ts[chosen], number[v_session[items]], product[items], quantity[items])

    shop = basket(ordered, order_ts)
    rebuyer, rebuy_ts = _monthly_rebuys(rng, frame, c, shop)
    monthly = np.full(rebuyer.size, MONTHLY)
    blocks = [
        _block(s_user, s_ts, EventCode.OPENED, NO_PROPS),
        _block(v_user, v_ts, EventCode.VIEWED, VIEW_PROPS.take(product)),
        _block(v_user[carted], cart_ts[carted], EventCode.CARTED, CART_PROPS.take(_item_index(product, quantity)[carted])),
        _checkout_block(basket(checkout, checkout_ts) + _monthly_orders(rebuyer, rebuy_ts + 150 * SECOND)),
        _block(rebuyer, rebuy_ts, EventCode.OPENED, NO_PROPS),
        _block(rebuyer, rebuy_ts + 30 * SECOND, EventCode.VIEWED, VIEW_PROPS.take(monthly)),
        _block(rebuyer, rebuy_ts + 70 * SECOND, EventCode.CARTED, CART_PROPS.take(_item_index(monthly, 0))),
    ]
    return blocks, shop + _monthly_orders(rebuyer, rebuy_ts + 4 * MINUTE)


def _monthly_rebuys(rng: np.random.Generator, frame: _Frame, c: _Cohort,
                    shop: _Orders) -> tuple[np.ndarray, np.ndarray]:
    """A user's first order with MONTHLY starts re-orders every 28-35 days, until they stop or churn.

    Re-orders fall only in active spells, so churned buyers are left "due": the audience a
    repurchase reminder is for.
    """
    has_monthly = np.zeros(shop.user.size, bool)
    has_monthly[shop.item_order[shop.item_product == MONTHLY]] = True
    buyer, bought = shop.user[has_monthly], shop.ts[has_monthly]
    by_time = np.lexsort((bought, buyer))
    buyer, bought = buyer[by_time], bought[by_time]
    first = _rank(buyer) == 0
    buyer, bought = buyer[first], bought[first]
    steps = (buyer.size, REBUY_MAX)
    due = bought[:, None] + np.cumsum(_days(rng.uniform(28, 35, steps)), axis=1)
    keeps_buying = np.cumprod(rng.random(steps) < MONTHLY_REBUY_RATE, axis=1).astype(bool)
    first_spell = due <= (c.active_until[buyer] - HOUR)[:, None]
    second_spell = (due > (c.back_at[buyer] + 5 * MINUTE)[:, None]) & (due <= frame.end - HOUR)
    happens = keeps_buying & (first_spell | second_spell)
    return np.broadcast_to(buyer[:, None], steps)[happens], due[happens]


def _monthly_orders(user: np.ndarray, ts: np.ndarray) -> _Orders:
    return _Orders(user, ts, np.arange(user.size), np.full(user.size, MONTHLY), np.zeros(user.size, np.int64))


def _item_index(product: np.ndarray, quantity: np.ndarray | int) -> np.ndarray:
    return product * len(QUANTITIES) + quantity


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values, pa.int64()), pa.string())


def _checkout_block(checkouts: _Orders) -> _Block:
    value, lines = checkouts.value_and_lines()
    props = pc.binary_join_element_wise('{"cart_value":', _text(value), ',"item_count":', _text(lines),
                                        ',"currency":"KRW"}', "")
    return _block(checkouts.user, checkouts.ts, EventCode.CHECKOUT, props)


def _order_block(orders: _Orders, user_ids: pa.Array) -> _Block:
    """order_completed; the order_id is the user's number and the order's place in their history."""
    by_time = np.lexsort((orders.ts, orders.user))
    place = np.empty(orders.user.size, np.int64)
    place[by_time] = _rank(orders.user[by_time]) + 1
    order_id = pc.binary_join_element_wise("ORD-", pc.utf8_slice_codeunits(user_ids.take(orders.user), 1), "-",
                                           pc.utf8_lpad(_text(place), 3, "0"), "")
    props = pc.binary_join_element_wise('{"order_id":"', order_id, '","revenue":', _text(orders.value_and_lines()[0]),
                                        ',"currency":"KRW","products":[', orders.items_json(), "]}", "")
    return _block(orders.user, orders.ts, EventCode.ORDERED, props)


# -- the two tables --------------------------------------------------------------------------


def _events_table(frame: _Frame, blocks: list[_Block], c: _Cohort, user_ids: pa.Array,
                  anonymous_ids: pa.Array) -> pa.Table:
    """All events of the chunk in time order; events after `end` (sessions cut short) are dropped.

    message_id is the user's id and the event's place in that user's history, so it is unique and
    the same on every run with the same arguments.
    """
    ts = np.concatenate([b.ts for b in blocks])
    kept = np.flatnonzero(ts <= frame.end)
    rows = kept[np.argsort(ts[kept], kind="stable")]
    user = np.concatenate([b.user for b in blocks])[rows]
    by_user = np.argsort(user, kind="stable")
    seq = np.empty(rows.size, np.int64)
    seq[by_user] = _rank(user[by_user])
    ids = user_ids.take(user)
    known = pa.array(np.concatenate([b.known for b in blocks])[rows])
    return pa.table({
        "message_id": pc.binary_join_element_wise(f"demo-{frame.seed}-", ids, "-", _text(seq), ""),
        "type": pa.repeat(pa.scalar("track"), rows.size),
        "event": EVENT_NAME_VALUES.take(np.concatenate([b.code for b in blocks])[rows]),
        "user_id": pc.if_else(known, ids, pa.scalar(None, pa.string())),
        "anonymous_id": anonymous_ids.take(user),
        "timestamp": pa.array(ts[rows], pa.timestamp("us", tz="UTC")),
        "properties": pa.concat_arrays([b.props for b in blocks]).take(rows),
        "context": CONTEXTS.take(c.context[user]),
    }, schema=EVENT_SCHEMA)


def _users_table(rng: np.random.Generator, frame: _Frame, c: _Cohort, first: int, user_ids: pa.Array,
                 anonymous_ids: pa.Array, spend: np.ndarray) -> pa.Table:
    n = c.count
    female = rng.random(n) < 0.62
    given = np.where(female, rng.integers(0, len(FEMALE_NAMES), n),
                     len(FEMALE_NAMES) + rng.integers(0, len(MALE_NAMES), n))
    surname = rng.choice(len(SURNAMES), n, p=SURNAME_WEIGHTS)
    has_email = rng.random(n) >= 0.08
    emails = _emails(rng, first, given, surname, has_email)
    seoul = rng.random(n) < np.where(c.language == 0, 0.935, 0.5)
    timezone = np.where(seoul, 0, rng.choice(len(TIMEZONES), n, p=ABROAD_WEIGHTS))
    kakao_reachable = rng.random(n) < 0.85
    channel = rng.choice(len(ACQUISITION), n, p=[a[3] for a in ACQUISITION])
    age = np.clip(np.rint(rng.normal(38, 11, n)), 19, 75).astype(np.int32)
    consents = _consents(rng, c, has_email)
    settings_screen = rng.random(n) < 0.1
    consent_at = np.where(settings_screen, np.minimum(c.signup + _days(rng.exponential(2, n)), frame.end), c.signup)
    tokens = _hex_strings(rng.integers(0, 16, (n, 64), dtype=np.uint8))
    no_text = pa.scalar(None, pa.string())
    return pa.table({
        "user_id": user_ids,
        "anonymous_id": anonymous_ids,
        "name": pc.binary_join_element_wise(SURNAME_HANGUL.take(surname), GIVEN_HANGUL.take(given), ""),
        "phone": _phones(frame.seed, first + np.arange(n)),
        "email": emails,
        "language": _strings(LANGUAGES).take(c.language),
        "timezone": _strings(TIMEZONES).take(timezone),
        "kakao_reachable": pa.array(kakao_reachable),
        **{name: _strings(a[i] for a in ACQUISITION).take(channel)
           for i, name in enumerate(("utm_source", "utm_medium", "utm_campaign"))},
        "install_source": _strings(INSTALL_SOURCES).take(c.device),
        "signup_at": pa.array(c.signup, pa.timestamp("us", tz="UTC")),
        "birth_year": pa.array(frame.year - age, pa.int32()),
        "gender": pa.array(np.where(female, "F", "M")),
        "membership": _strings(MEMBERSHIP_TIERS).take(np.searchsorted(MEMBERSHIP_MIN_SPEND, spend, side="right")),
        **consents,
        "consent_at": pa.array(consent_at, pa.timestamp("us", tz="UTC")),
        "consent_source": pa.array(np.where(settings_screen, "settings_screen", "signup_form")),
        # the importer refuses a push_platform without a token, so both are null together
        "push_token": pc.if_else(pa.array(c.has_token), tokens, no_text),
        "push_platform": pc.if_else(pa.array(c.has_token), _strings(PUSH_PLATFORMS).take(c.device), no_text),
    }, schema=USER_SCHEMA)


def _consents(rng: np.random.Generator, c: _Cohort, has_email: np.ndarray) -> dict[str, pa.Array]:
    """Advertising consent per channel, correlated per user; night consent asked only after a yes.

    Null means never asked: push on the web, email without an address, night after a no.
    """
    openness = rng.standard_normal(c.count)
    spread = np.sqrt(1 - CONSENT_CORRELATION**2)
    said_yes = {
        channel: CONSENT_CORRELATION * openness + spread * rng.standard_normal(c.count) > NormalDist().inv_cdf(1 - rate)
        for channel, rate in CONSENT_RATES.items()
    }
    asked = {"push": c.device != Device.WEB, "sms": np.ones(c.count, bool), "kakao": np.ones(c.count, bool),
             "email": has_email}
    columns = {f"consent_{ch}_advertising": pa.array(said_yes[ch], mask=~asked[ch]) for ch in CONSENT_RATES}
    for ch in ("push", "sms"):
        columns[f"consent_{ch}_night"] = pa.array(rng.random(c.count) < NIGHT_RATE, mask=~(said_yes[ch] & asked[ch]))
    return columns


def _emails(rng: np.random.Generator, first: int, given: np.ndarray, surname: np.ndarray,
            has_email: np.ndarray) -> pa.Array:
    """minjun.kim1234@naver.com: romanised name plus the user's number, so addresses are unique."""
    n = given.size
    separator = rng.integers(0, len(EMAIL_SEPARATORS), n)
    domain = rng.choice(len(EMAIL_DOMAINS), n, p=EMAIL_DOMAIN_WEIGHTS)
    address = pc.binary_join_element_wise(
        GIVEN_ROMAN.take(given), _strings(EMAIL_SEPARATORS).take(separator), SURNAME_ROMAN.take(surname),
        _text(first + 1 + np.arange(n)), "@", _strings(EMAIL_DOMAINS).take(domain), "",
    )
    return pc.if_else(pa.array(has_email), address, pa.scalar(None, pa.string()))


# -- fixed-width text built as bytes ---------------------------------------------------------

HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
UUID_HEX_COLUMNS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _fixed_width(chars: np.ndarray) -> pa.Array:
    """A string array from an (n, width) array of ASCII codes, without a Python string per row."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, np.uint8)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (values[:, None] // powers) % 10).astype(np.uint8)


def _user_ids(frame: _Frame, first: int, count: int) -> pa.Array:
    chars = np.empty((count, 1 + frame.id_width), np.uint8)
    chars[:, 0] = ord("u")
    chars[:, 1:] = _digits(first + 1 + np.arange(count, dtype=np.int64), frame.id_width)
    return _fixed_width(chars)


def _phones(seed: int, index: np.ndarray) -> pa.Array:
    """010-XXXX-XXXX from the user index through a fixed permutation of PHONE_SPACE: unique per user."""
    number = (index.astype(np.int64) * PHONE_STEP + (seed * 7_654_321 + 1_234_567) % PHONE_SPACE) % PHONE_SPACE
    middle, last = number // 10_000, number % 10_000
    chars = np.full((index.size, 13), ord("-"), np.uint8)
    chars[:, 0:3] = np.frombuffer(b"010", np.uint8)
    chars[:, 4] = 48 + PHONE_LEADS[middle // 1000]
    chars[:, 5:8] = _digits(middle % 1000, 3)
    chars[:, 9:13] = _digits(last, 4)
    return _fixed_width(chars)


def _hex_strings(nibbles: np.ndarray) -> pa.Array:
    return _fixed_width(HEX_DIGITS[nibbles])


def _uuids(rng: np.random.Generator, count: int) -> pa.Array:
    """Random (version 4) UUIDs from the chunk's generator: the device id a user had before signing up."""
    raw = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    chars = np.full((count, 36), ord("-"), np.uint8)
    chars[:, UUID_HEX_COLUMNS] = HEX_DIGITS[np.stack([raw >> 4, raw & 0x0F], axis=2).reshape(count, 32)]
    return _fixed_width(chars)
