"""Rendering: the sandbox holds, missing data never reaches a person, editors' quotes do not break a
template, the person's language is chosen with a fallback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgekit.templates import Context, Rendered, TemplateProblem, Unrendered, check, choose, render
from nudgekit.templates.render import compiled

USER = {"name": "민수", "product": "iPhone", "tier": None, "nick": "  ", "city": "undefined", "points": 12900,
        "address": {"city": "서울", "zip": None}, "tags": ["vip", None, "new"]}
CONTEXT = Context(user=USER, event={"name": "Cart Abandoned", "properties": {"item": "운동화", "price": 89000}},
                  computed={"cart": [{"name": "운동화", "price": 89000}, {"name": "양말", "price": 3000}]},
                  workspace={"brand": "넛지샵", "optout_080": "080-123-4567"})


def text(source: str, context: Context = CONTEXT) -> str:
    out = render({"text": source}, context)
    assert isinstance(out, Rendered), out
    return out.fields["text"]


def fails(source: str, context: Context = CONTEXT) -> Unrendered:
    out = render({"text": source}, context)
    assert isinstance(out, Unrendered), out
    return out


def test_a_typical_message_with_filters_and_a_list() -> None:
    source = ("{{ user.name|nim }}, 장바구니에 담은 {{ event.properties.item|이 }} 기다려요. "
              "{% for item in computed.cart %}{{ item.name }} {{ item.price|won }}{% if not loop.last %}, "
              "{% endif %}{% endfor %} — {{ workspace.brand }}")
    assert text(source) == "민수님, 장바구니에 담은 운동화가 기다려요. 운동화 89,000원, 양말 3,000원 — 넛지샵"


@pytest.mark.parametrize(("source", "what"), [
    ("안녕하세요 {{ user.nickname }}님", "user.nickname is missing"),
    ("안녕하세요 {{ user.tier }}님", "user.tier is missing"),          # None
    ("안녕하세요 {{ user.nick }}님", "user.nick is missing"),          # blank
    ("{{ user.city }}점", "user.city is missing"),                    # "undefined" from a JavaScript SDK
    ("{{ user.address.zip }}", "user.address.zip is missing"),
    ("{{ voucher }}", "voucher is missing"),
    ("{% if user.vip %}VIP{% endif %}", "user.vip is missing"),        # strict in tests too
    ("{{ user.tier|nim }}", "user.tier is missing"),
    ("{{ user.nickname ~ '님' }}", "user.nickname is missing"),
    ("{% for t in user.missing_list %}{{ t }}{% endfor %}", "user.missing_list is missing"),
])
def test_missing_data_skips_the_person_and_names_the_value(source: str, what: str) -> None:
    out = fails(source)
    assert out.reason == "missing_data"
    assert out.detail == what


def test_a_default_covers_what_is_missing_none_or_blank() -> None:
    assert text('안녕하세요 {{ user.nickname|default("고객") }}님') == "안녕하세요 고객님"
    assert text('안녕하세요 {{ user.tier|default("고객") }}님') == "안녕하세요 고객님"
    assert text('안녕하세요 {{ user.nick|d("고객") }}님') == "안녕하세요 고객님"
    assert text('{{ user.name|default("고객") }}님') == "민수님"
    assert text("{% if user.vip is defined %}VIP {% endif %}{{ user.tags|join(',') }}") == "vip,new"


@pytest.mark.parametrize("source", ["{{ '' }}님", "{{ user.name[5:] }}님", "{{ none }}"])
def test_an_empty_value_is_never_sent(source: str) -> None:
    assert fails(source).reason == "missing_data"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ user.__class__ }}",
    "{{ user._values }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ (1).__class__.__base__.__subclasses__() }}",
    "{{ computed.cart.append(1) }}",
    "{{ 'a'.format.__globals__ }}",
    "{% for x in range(10**9) %}{% endfor %}",
    "{{ 'x' * 10**7 }}",
    "{% for a in range(100000) %}{% for b in range(100) %}xx{% endfor %}{% endfor %}",
])
def test_escapes_and_runaways_fail_safely(source: str) -> None:
    out = fails(source)
    assert out.reason in ("template_error", "missing_data")


def test_an_escape_attempt_says_it_was_not_allowed() -> None:
    assert "not allowed" in fails("{{ ''.__class__ }}").detail


@pytest.mark.parametrize(("source", "line"), [("안녕 {{ user.name ", 1), ("첫 줄\n{% if user.name %}열고 안 닫음", 2)])
def test_a_template_that_cannot_be_read_says_its_line(source: str, line: int) -> None:
    with pytest.raises(TemplateProblem) as caught:
        check(source)
    assert caught.value.line == line
    out = fails(source)
    assert out.reason == "template_error" and f"line {line}" in out.detail


@pytest.mark.parametrize("source", ["{{ 1/0 }}", "{{ 'abc'|won }}", "{{ user.name|josa('에게') }}",
                                    "{{ user }}", "{{ user.name ~ '}}' }}", "{{ '{{' }}x"])
def test_a_fault_while_rendering_is_a_reason_not_a_crash(source: str) -> None:
    assert fails(source).reason == "template_error"


def test_curly_quotes_and_no_break_spaces_from_an_editor_are_read_as_plain() -> None:
    assert text("안녕하세요 {{ user.nickname | default(“고객”) }}님") == "안녕하세요 고객님"
    assert text("{{\u00a0user.nickname|default(‘고객’)\u00a0}}님, “특가” 안내") == "고객님, “특가” 안내"


def test_compiled_once() -> None:
    source = "{{ user.name }}님 {{ 'cache-test' }}"
    assert compiled(source) is compiled(source)


def test_html_fields_escape_values_text_fields_do_not() -> None:
    context = Context(user={"name": "<b>민수</b> & co"})
    out = render({"subject": "{{ user.name }}", "html": "<p>{{ user.name }}</p>"}, context,
                 html=frozenset({"html"}))
    assert isinstance(out, Rendered)
    assert out.fields == {"subject": "<b>민수</b> & co", "html": "<p>&lt;b&gt;민수&lt;/b&gt; &amp; co</p>"}


def test_nested_fields_and_non_text_values() -> None:
    message = {"text": "{{ user.name }}", "buttons": [{"name": "{{ workspace.brand }} 가기", "url": "https://x.kr"}],
               "ad": True, "ttl": 3600}
    out = render(message, CONTEXT)
    assert isinstance(out, Rendered)
    assert out.fields == {"text": "민수", "buttons": [{"name": "넛지샵 가기", "url": "https://x.kr"}], "ad": True,
                          "ttl": 3600}


def test_filters_follow_the_locale() -> None:
    english = Context(user={"points": 12900}, locale="en")
    assert text("{{ user.points|won }} {{ '2026-11-22'|date }}", english) == "₩12,900 Sun, Nov 22"
    assert text("{{ user.points|won }} {{ '2026-11-22'|date }}") == "12,900원 11월 22일 (일)"
    assert text("{{ user.points|number }}") == "12,900"


@pytest.mark.parametrize(("language", "fallback", "expected"), [
    ("en", "ko", "en"), ("en-US", "ko", "en"), ("EN_us", "ko", "en"), ("ja", "ko", "ko"), (None, "ko", "ko"),
    ("ja", "en", "en"), ("zh-TW", "zh", "ko"),
])
def test_the_language_variant_with_fallbacks(language: str | None, fallback: str, expected: str) -> None:
    variants = {"ko": {"text": "안녕하세요"}, "en": {"text": "Hello"}}
    assert choose(variants, language, fallback)[0] == expected


def test_a_variant_set_without_korean_or_the_fallback_takes_the_first() -> None:
    assert choose({"en": 1, "ja": 2}, "fr", "ko") == ("en", 1)
    assert choose({"en-US": 1}, "en", "ko") == ("en-US", 1)
    with pytest.raises(ValueError, match="at least one"):
        choose({}, "ko")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("{}%#()|.'\"~ +-*/0123456789abc민수을") +
                                ["{{", "}}", "{%", "%}", "user.name", "user.nope", "if ", "endif", "for x in ",
                                 "endfor", "|won", "|을", "|nim", "|default('고객')", "range(", "__class__"]),
                max_size=30).map("".join))
def test_any_text_renders_or_says_why_never_raises(source: str) -> None:
    out = render({"text": source}, CONTEXT)
    if isinstance(out, Rendered):
        assert not any(mark in out.fields["text"] for mark in ("{{", "{%", "}}", "%}"))
    else:
        assert out.reason in ("missing_data", "template_error") and out.detail


@pytest.mark.parametrize("source", [
    "{% for i in range(100000) %}0123456789{% endfor %}",
    "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",  # 10^10 if not stopped
    "{{ 'x' * 300000 }}",
])
def test_a_runaway_text_is_stopped_as_a_template_error(source: str) -> None:
    out = fails(source)
    assert out.reason == "template_error" and "grew past 200,000 characters" in out.detail
