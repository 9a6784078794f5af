"""Rendering benchmark: a typical push + LMS template (5 variables, 2 filters, one recommendation list) rendered
for many people with warm caches, as complete messages — rendered, labelled as advertising with the free
opt-out line, and the LMS measured in carrier bytes — per second on one core.

    .venv/bin/python bench/render.py [--people 20000]

Floor: `str.format` of the same texts with the values already formatted, then the same label and byte count
(what any sender must do). Reference: plain sandboxed Jinja (no strict missing-data checks, no Korean filters,
no record wrapping) rendering the same texts. Target (issue #7): >= 50,000 complete messages/s per core, within
12x of the floor.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from jinja2.sandbox import SandboxedEnvironment
from rich.console import Console
from rich.table import Table

from nudgekit.channels.push.message import PushMessage
from nudgekit.channels.sms.message import carrier_bytes, choose_type
from nudgekit.config import SenderSettings
from nudgekit.policy import label
from nudgekit.templates import Context, Rendered, render
from nudgekit.templates.korean import josa, nim, won
from nudgekit.vocabulary import MessageChannel

SENDER = SenderSettings(name="넛지샵", optout_080="0801234567", sms_numbers=["0212345678"],
                        push_optout="수신거부: 마이 > 설정 > 알림")
PUSH_TITLE = "{{ user.name|nim }}, {{ event.properties.item|을 }} 잊지 않으셨죠?"
PUSH_TEXT = "지금 주문하면 {{ event.properties.price|won }}, {{ user.city }} 내일 도착"
LMS_TEXT = ("{{ user.name|nim }}, 장바구니에 담은 {{ event.properties.item|이 }} 기다려요.\n"
            "오늘까지 {{ event.properties.price|won }}에 드려요 ({{ user.points }}포인트 사용 가능).\n"
            "함께 많이 본 상품:\n"
            "{% for p in computed.recommended %}- {{ p.name }} {{ p.price|won }}\n{% endfor %}"
            "{{ user.city }} 내일 도착")
FORMAT_TITLE = "{name}, {item} 잊지 않으셨죠?"
FORMAT_TEXT = "지금 주문하면 {price}, {city} 내일 도착"
FORMAT_LMS = ("{name}, 장바구니에 담은 {item_subject} 기다려요.\n오늘까지 {price}에 드려요 ({points}포인트 사용 가능).\n"
              "함께 많이 본 상품:\n{recommended}{city} 내일 도착")
NAMES = ["민수", "지민", "서연", "도윤", "하은", "Alex", "준서", "예린"]
ITEMS = ["운동화", "가방", "iPhone 케이스", "텀블러", "셔츠", "양말"]
CITIES = ["서울", "부산", "대구", "인천", "광주"]


def people(count: int, rng: random.Random) -> list[Context]:
    out = []
    for i in range(count):
        recommended = [{"name": rng.choice(ITEMS), "price": rng.randrange(5, 200) * 100} for _ in range(3)]
        out.append(Context(
            user={"user_id": f"u{i}", "name": rng.choice(NAMES), "city": rng.choice(CITIES),
                  "points": rng.randrange(0, 5000)},
            event={"name": "Cart Abandoned", "properties": {"item": rng.choice(ITEMS),
                                                            "price": rng.randrange(10, 2000) * 100}},
            computed={"recommended": recommended}))
    return out


def finish(title: str, push: str, lms: str) -> int:
    """What a sender does to every message after the text: the label rule's rewrite (label, opt-out line),
    carrier bytes."""
    labelled = label.REWRITE[MessageChannel.PUSH](PushMessage(title=title, text=push), SENDER)
    assert isinstance(labelled, PushMessage), labelled
    body, _ = label.text_message(lms, None, SENDER)
    size = carrier_bytes(body).bytes
    choose_type(size, None, [])
    return size + len(labelled.title or "") + len(labelled.text or "")


def ours(contexts: list[Context]) -> int:
    total = 0
    for context in contexts:
        push = render({"title": PUSH_TITLE, "text": PUSH_TEXT}, context)
        lms = render({"text": LMS_TEXT}, context)
        assert isinstance(push, Rendered) and isinstance(lms, Rendered), (push, lms)
        total += finish(push.fields["title"], push.fields["text"], lms.fields["text"])
    return total


def floor(contexts: list[Context]) -> int:
    total = 0
    for context in contexts:
        user, event = context.user, context.event or {}
        item, price = event["properties"]["item"], won(event["properties"]["price"])
        values = {"name": nim(user["name"]), "item": josa(item, "을"), "item_subject": josa(item, "이"),
                  "price": price, "city": user["city"], "points": user["points"],
                  "recommended": "".join(f"- {p['name']} {won(p['price'])}\n" for p in context.computed["recommended"])}
        total += finish(FORMAT_TITLE.format(**values), FORMAT_TEXT.format(**values), FORMAT_LMS.format(**values))
    return total


def plain_jinja(contexts: list[Context]) -> int:
    env = SandboxedEnvironment()
    env.filters.update(nim=nim, won=won, 을=lambda w: josa(w, "을"), 이=lambda w: josa(w, "이"))
    title, text, lms = (env.from_string(s) for s in (PUSH_TITLE, PUSH_TEXT, LMS_TEXT))
    total = 0
    for context in contexts:
        values = {"user": context.user, "event": context.event, "computed": context.computed}
        total += len(title.render(values)) + len(text.render(values)) + len(lms.render(values))
    return total


def rate(run: Callable[[list[Context]], int], contexts: list[Context]) -> float:
    run(contexts[:200])  # warm: templates compiled, caches filled
    started = time.perf_counter()
    run(contexts)
    return len(contexts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=20_000)
    args = parser.parse_args()
    contexts = people(args.people, random.Random(7))
    measured = {"floor": rate(floor, contexts), "plain": rate(plain_jinja, contexts), "ours": rate(ours, contexts)}
    table = Table("measure", "complete messages/s", "floor ÷ it")
    table.add_row("str.format + label + bytes (floor)", f"{measured['floor']:,.0f}", "1.0×")
    table.add_row("plain sandboxed Jinja, render only (reference)", f"{measured['plain']:,.0f}",
                  f"{measured['floor'] / measured['plain']:.1f}×")
    table.add_row("nudgekit: render + label + bytes", f"{measured['ours']:,.0f}",
                  f"{measured['floor'] / measured['ours']:.1f}×")
    console = Console()
    console.print(table)
    console.print(f"target: >= 50,000 complete messages/s per core (measured {measured['ours']:,.0f}); within 12× "
                  f"of the floor (measured {measured['floor'] / measured['ours']:.1f}×)")


if __name__ == "__main__":
    main()
