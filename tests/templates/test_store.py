"""Saved templates and snippets: every change a new version, a template that cannot work refused when saved
(with the field and the line), snippets and layouts included by name, a fixed footer reaching every
template that includes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nudgekit.profiles.contacts import FieldError
from nudgekit.templates import store
from nudgekit.templates.render import Context, Rendered, Unrendered, render
from nudgekit.workspace import Workspace

FOOTER = {"name": "footer", "kind": "snippet", "text": "{{ workspace.brand }} 고객센터 1588-0000"}
WELCOME = {"name": "welcome", "channel": "push", "message": {
    "title": "{{ user.name|nim }}, 반가워요", "text": "첫 주문 {{ 3000|won }} 할인\n{% include 'footer' %}"},
    "languages": {"en": {"title": "Welcome, {{ user.name }}"}}}


def test_saving_again_adds_a_version_only_when_the_content_changed(ws: Workspace) -> None:
    first = ws.save_template(FOOTER)
    same = ws.save_template(FOOTER)
    changed = ws.save_template({**FOOTER, "text": "{{ workspace.brand }} 고객센터 1588-1111", "note": "new number"})

    assert (first.version, first.changed) == (1, True)
    assert (same.version, same.changed) == (1, False)
    assert (changed.version, changed.changed) == (2, True)
    history = ws.template_history("footer")
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["body"]["text"].endswith("1588-0000") and history[1]["note"] == "new number"


def test_a_template_lists_its_languages_and_reads_its_english_variant_over_the_korean(ws: Workspace) -> None:
    ws.save_template(FOOTER)
    ws.save_template(WELCOME)
    listed = {t["name"]: t for t in ws.templates()}
    assert listed["welcome"]["languages"] == ["en", "ko"] and listed["welcome"]["channel"] == "push"
    assert listed["footer"]["kind"] == "snippet"
    variants = store.variants_of(ws.template_history("welcome")[-1]["body"])
    assert variants["en"]["title"] == "Welcome, {{ user.name }}"
    assert variants["en"]["text"] == variants["ko"]["text"]  # fields not written for English are the main ones


@pytest.mark.parametrize(("template", "field", "words"), [
    ({"name": "t", "channel": "push", "message": {"title": "{{ user.name ", "text": "x"}}, "title", "line 1"),
    ({"name": "t", "channel": "push", "message": {"title": "x", "text": "{% if user.vip %}VIP"}}, "text",
     "endif"),
    ({"name": "t", "channel": "push", "message": {"title": "x", "text": "{% include 'nowhere' %}"}}, "text",
     "no snippet called 'nowhere'"),
    ({"name": "t", "channel": "push", "message": {"title": "x", "text": "y"},
      "languages": {"en": {"title": "{{ oops }"}}}, "en.title", "cannot be read"),
    ({"name": "t", "channel": "sms", "message": {"txt": "{{ user.name }}"}}, "txt", ""),
    ({"name": "t", "channel": "push", "message": {"title": "x", "text": "y", "link": "not a link"}},
     "link", "not a link with a scheme"),
    ({"name": "t", "channel": "alimtalk", "message": {"template": "NOPE", "variables": {"name": "{{ user.name }}"}}},
     "template", "NOPE"),
    ({"name": "has space", "channel": "push", "message": {"title": "x"}}, "template", "name"),
    ({"name": "t", "channel": "push"}, "template", "a message template has a channel and a message"),
    ({"name": "t", "kind": "snippet", "text": "x", "channel": "sms"}, "template", "a snippet has a text"),
    ({"name": "t", "channel": "push", "language": "한국어", "message": {"title": "x"}}, "template",
     "not a language tag"),
])
def test_a_template_that_cannot_work_is_refused_when_saved_naming_the_field(
        ws: Workspace, template: dict, field: str, words: str) -> None:
    with pytest.raises(FieldError) as caught:
        ws.save_template(template)
    assert caught.value.field == field or caught.value.reason.startswith(field)
    assert words in caught.value.reason
    assert ws.templates() == []


def test_a_name_is_a_template_or_a_snippet_not_both(ws: Workspace) -> None:
    ws.save_template(FOOTER)
    with pytest.raises(FieldError, match="already a snippet"):
        ws.save_template({"name": "footer", "channel": "push", "message": {"title": "x"}})


def test_a_fixed_footer_reaches_every_template_that_includes_it(ws: Workspace) -> None:
    ws.save_template(FOOTER)
    ws.save_template(WELCOME)
    ws.identify("u1", {"name": "민수"})
    ws.flush()
    before = ws.preview("u1", template="welcome")
    ws.save_template({**FOOTER, "text": "{{ workspace.brand }} 고객센터 1588-1111"})
    after = ws.preview("u1", template="welcome")

    assert before["rendered"]["text"].endswith("1588-0000") and before["snippets"] == {"footer": 1}
    assert after["rendered"]["text"].endswith("1588-1111") and after["snippets"] == {"footer": 2}
    assert after["template"] == "welcome@1"


def test_layouts_are_extended_and_their_blocks_filled() -> None:
    library = {"layout": "[{{ workspace.brand }}] {% block body %}{% endblock %}\n— 수신거부: 앱 설정",
               "legal": "(주)넛지샵"}
    source = "{% extends 'layout' %}{% block body %}{{ user.name|nim }} 안녕하세요 {% include 'legal' %}{% endblock %}"
    out = render({"text": source}, Context({"name": "민수"}, workspace={"brand": "넛지샵"}), library=library)
    assert out == Rendered({"text": "[넛지샵] 민수님 안녕하세요 (주)넛지샵\n— 수신거부: 앱 설정"})


def test_a_snippet_gone_or_broken_at_render_time_is_that_persons_template_error() -> None:
    context = Context({"name": "민수"})
    gone = render({"text": "{% include 'footer' %}"}, context, library={})
    broken = render({"text": "x {% include 'footer' %}"}, context, library={"footer": "{{ oops"})
    looping = render({"text": "{% include 'a' %}"}, context, library={"a": "{% include 'a' %}"})
    assert isinstance(gone, Unrendered) and gone.reason == "template_error" and "footer" in gone.detail
    assert isinstance(broken, Unrendered) and "the snippet 'footer' cannot be read: line 1" in broken.detail
    assert isinstance(looping, Unrendered) and looping.reason == "template_error" and looping.field == "text"


def test_the_same_snippet_name_in_two_libraries_renders_each_ones_text() -> None:
    context = Context({"name": "민수"})
    one = render({"text": "{% include 'f' %}"}, context, library={"f": "one"})
    two = render({"text": "{% include 'f' %}"}, context, library={"f": "two"})
    assert (one, two) == (Rendered({"text": "one"}), Rendered({"text": "two"}))


def test_template_files_are_read_with_their_problems_named(tmp_path: Path) -> None:
    good = tmp_path / "welcome.yaml"
    good.write_text("name: welcome\nchannel: push\nmessage:\n  title: '{{ user.name|nim }}'\n", encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")

    assert store.read_file(good).channel == "push"
    with pytest.raises(FieldError, match="not valid YAML"):
        store.read_file(broken)
    with pytest.raises(FieldError, match="holds one template"):
        store.read_file(listed)
