"""Rendering a message's fields for one person: sandboxed Jinja compiled once per text, strict about missing
data, with Korean-aware filters.

What a template may read is what `Context` gives it — `user`, `event`, `computed`, `workspace` — as plain
values: no Python object crosses into a template, and the sandbox refuses attributes such as `__class__`
whatever a template tries. A value that is absent, None, blank or the text "null"/"undefined"/"None" that
SDKs send for nothing counts as missing: using it ends the render with `missing_data` unless the template
gives a default (`{{ user.name | default("고객") }}`). Rendering never raises: a person's message comes
back `Rendered` or `Unrendered(reason, detail)`, the reason the send records when it skips them.

:TRICKY: message editors turn quotes into curly ones (“고객”) and spaces into no-break spaces, which Jinja
cannot parse; inside `{{ }}` and `{% %}` both are put back before compiling, the text outside is left as
written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateError, TemplateSyntaxError, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateNotFound, TemplateRuntimeError, UndefinedError
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from nudgekit.templates import korean

MAX_CHARS = 200_000
"""A render longer than this is a template fault (a runaway loop), not a message."""
NOTHING = {"", "none", "null", "undefined", "nan"}
"""Values that mean "no value" however they arrived (case and surrounding spaces ignored)."""
LEFTOVERS = ("{{", "}}", "{%", "%}")
_TAG = re.compile(r"{{.*?}}|{%.*?%}", re.DOTALL)
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "\u00a0": " ", "\u3000": " "})

Reason = Literal["missing_data", "no_coupon", "template_error"]


class TemplateProblem(ValueError):
    """A template that cannot be compiled, said with its line."""

    def __init__(self, line: int | None, words: str) -> None:
        super().__init__(f"line {line}: {words}" if line else words)
        self.line = line
        self.words = words


class Missing(UndefinedError):
    """A value the template uses is missing for this person ("user.name is missing")."""


class NoCoupon(Missing):
    """The message reads a code from a coupon pool that has none left for it (templates/coupons.py)."""


@dataclass(frozen=True)
class Rendered:
    fields: dict[str, Any]


@dataclass(frozen=True)
class Unrendered:
    reason: Reason
    detail: str
    field: str | None = None
    """The message's field whose text failed (`title`, `buttons.0.url`)."""

    @property
    def said(self) -> str:
        """The detail with the field it is about ("title: user.name is missing")."""
        return f"{self.field}: {self.detail}" if self.field else self.detail


@dataclass(frozen=True)
class Context:
    """Everything a template may read about one message to one person."""

    user: Mapping[str, Any]
    event: Mapping[str, Any] | None = None
    computed: Mapping[str, Any] = field(default_factory=dict)
    workspace: Mapping[str, Any] = field(default_factory=dict)
    locale: str = "ko"
    zone: ZoneInfo = ZoneInfo("Asia/Seoul")
    channel: str | None = None
    """The message's channel: a text message (sms) writes amounts without the ₩ its character set lacks."""
    coupon: Mapping[str, str] = field(default_factory=dict)
    """The code each coupon pool the message reads gave it (`coupon.welcome`)."""

    def variables(self) -> dict[str, Any]:
        """What the texts read: these records and the sandbox's globals (`range`, `app_link`), in one dict that
        every text of the message renders from as it is (Jinja's shared context: no copy per text)."""
        found: dict[str, Any] = {**GLOBALS, "user": Fields("user", self.user), "computed": Fields("computed", self.computed),
                                 "coupon": Fields("coupon", self.coupon),
                                 "workspace": Fields("workspace", self.workspace),
                                 "_locale": self.locale, "_zone": self.zone, "_channel": self.channel}
        if self.event is not None:
            found["event"] = Fields("event", self.event)
        return found


class Fields:
    """A record a template reads (`user`, `event` ...): its values by name and nothing else (a dict's methods
    would answer for a missing `items` or `keys`), a missing one left out, a nested record named so a missing
    value can be named ("user.address.city is missing"). Values are looked at when a template reads them,
    not before: a person with fifty traits costs what the template uses."""

    __slots__ = ("_path", "_values")

    def __init__(self, path: str, values: Mapping[str, Any]) -> None:
        self._path = path
        self._values = values

    def lookup(self, name: object) -> Any:
        """The value, made plain, or ABSENT."""
        value = self._values.get(name, ABSENT) if isinstance(name, str) else ABSENT
        kind = type(value)
        if kind is int or kind is bool:  # the common cases first: a render reads many values
            return value
        if kind is str:
            return ABSENT if value.strip().lower() in NOTHING else value
        if value is ABSENT or blank(value):
            return ABSENT
        return plain(f"{self._path}.{name}", value)

    def __getitem__(self, name: str) -> Any:
        value = self.lookup(name)
        if value is ABSENT:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return self.lookup(name) is not ABSENT

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._values if key in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __str__(self) -> str:
        raise TypeError(f"{self._path} is a record, not a text: write one of its values, e.g. {self._path}.name")


ABSENT = object()


def plain(path: str, value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return value
    if kind is dict or isinstance(value, Mapping):
        return Fields(path, value)
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        return [plain(path, v) for v in value if not blank(v)]
    return value


def blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in NOTHING
    return isinstance(value, float) and math.isnan(value)


class _Strict(StrictUndefined):
    """Any use of a missing value fails as Missing, naming it; an unsafe attribute still fails as unsafe."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None,
                 exc: type[TemplateRuntimeError] = UndefinedError) -> None:
        if exc is UndefinedError:
            exc = NoCoupon if isinstance(obj, Fields) and obj._path == "coupon" else Missing
        super().__init__(hint, obj, name, exc)

    @property
    def _undefined_message(self) -> str:
        if self._undefined_exception not in (Missing, NoCoupon):
            return super()._undefined_message
        if self._undefined_hint is not None:
            return self._undefined_hint
        owner = self._undefined_obj
        if self._undefined_exception is NoCoupon:
            return (f"coupon.{self._undefined_name}: the coupon pool {self._undefined_name!r} has no free code left "
                    f"for this message (load more: nudge coupon load {self._undefined_name} FILE)")
        if isinstance(owner, Fields):
            return f"{owner._path}.{self._undefined_name} is missing"
        if owner is missing:
            return f"{self._undefined_name} is missing"
        return f"{self._undefined_name} is missing from {type(owner).__name__}"


def _finalize(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return value
    if kind is str:
        if value.strip().lower() in NOTHING:
            raise Missing("a value in the message is missing (empty)")
        return value
    if isinstance(value, StrictUndefined):
        return value
    if blank(value):
        raise Missing("a value in the message is missing (empty)")
    return value


def _default(value: Any, default: Any = "", boolean: bool = False) -> Any:
    """Jinja's `default`, also for None and blank text: what is missing for `Context` is missing here."""
    if isinstance(value, StrictUndefined) or blank(value) or (boolean and not value):
        return default
    return value


def _locale(context: JinjaContext) -> str:
    return str(context.get("_locale", "ko"))


def _zone(context: JinjaContext) -> ZoneInfo:
    zone = context.get("_zone")
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo("Asia/Seoul")


@pass_context
def _won(context: JinjaContext, value: Any) -> str:
    return korean.won(value, locale=_locale(context), text_message=context.get("_channel") == "sms")


def _number(value: Any, digits: int = 0) -> str:
    return f"{korean.amount(value):,.{digits}f}"


@pass_context
def _date(context: JinjaContext, value: Any, year: bool = False, weekday: bool = True, time: bool = False) -> str:
    shown = korean.korean_date if _locale(context) == "ko" else korean.english_date
    return shown(value, _zone(context), year=year, weekday=weekday, time=time)


APP_CHANNELS = ("push",)
"""Channels whose messages open in the app itself: `app_link` writes the app's scheme there. Elsewhere (a text,
an email, Kakao, in-app and cards that may show in a browser) it writes the web address, which opens the app
when installed (iOS universal links, Android app links) and the web page when not."""


@pass_context
def _app_link(context: JinjaContext, path: Any, web: Any = None) -> str:
    """A link to a place in the app: `myshop://product/1` in a push, the web address elsewhere
    (`https://shop.example/product/1`, or `web` when given: a full address or a path on the web site)."""
    if not isinstance(path, str) or not path.strip():
        raise TemplateError("app_link needs the place in the app, e.g. app_link('product/' ~ p.id)")
    path = path.strip().lstrip("/")
    if any(c.isspace() for c in path):
        raise TemplateError(f"app_link({path!r}) has a space in it: encode values put in links (|urlencode)")
    values = context.get("workspace")
    if not isinstance(values, Fields):
        values = Fields("workspace", {})
    if context.get("_channel") in APP_CHANNELS:
        scheme = values.lookup("app_scheme")
        if scheme is ABSENT:
            raise TemplateError("app_link in a push needs the app's scheme: set [links] app_scheme in nudge.toml")
        return f"{scheme}{path}"
    if isinstance(web, str) and "://" in web:
        return web
    site = values.lookup("web_url")
    if site is ABSENT:
        raise TemplateError("app_link outside a push needs the web site it falls back to: set [links] web_url "
                            "in nudge.toml (or give web=)")
    tail = web.strip().lstrip("/") if isinstance(web, str) and web.strip() else path
    return f"{str(site).rstrip('/')}/{tail}"


def _particle(wanted: str) -> Any:
    return lambda word: korean.josa(word, wanted)


_LIBRARY: ContextVar[Mapping[str, str]] = ContextVar("nudgekit_snippets", default=MappingProxyType({}))
"""The snippets (name -> text) the render under way may include or extend."""


class _Snippets(BaseLoader):
    """Snippets and layouts (`{% include "footer" %}`, `{% extends "layout" %}`) come from the library given
    to `render`; Jinja keeps each compiled and asks again when the library's text for the name changed."""

    def get_source(self, environment: Environment, name: str) -> tuple[str, str | None, Any]:
        source = _LIBRARY.get().get(name)
        if source is None:
            raise TemplateNotFound(name, f"there is no snippet called {name!r}: save it first (nudge template save)")
        return normalise(source), None, lambda: _LIBRARY.get().get(name) == source


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, reading our records (plain data only) without its per-attribute safety checks."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is Fields:
            value = obj.lookup(attribute)
            return self.undefined(obj=obj, name=attribute) if value is ABSENT else value
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if type(obj) is Fields:
            value = obj.lookup(argument)
            return self.undefined(obj=obj, name=str(argument)) if value is ABSENT else value
        return super().getitem(obj, argument)


def _environment(html: bool) -> ImmutableSandboxedEnvironment:
    env = _Sandbox(loader=_Snippets(), undefined=_Strict, autoescape=html, finalize=_finalize,
                   keep_trailing_newline=True, auto_reload=True)
    env.filters.update(default=_default, d=_default, josa=korean.josa, won=_won, number=_number, nim=korean.nim,
                       date=_date)
    env.globals["app_link"] = _app_link
    for pair in korean.PAIRS:  # {{ product|을 }} and {{ product|를 }} both write the right one
        for form in pair:
            env.filters[form] = _particle(form)
    return env


ENVIRONMENTS = {False: _environment(False), True: _environment(True)}
GLOBALS = MappingProxyType(dict(ENVIRONMENTS[False].globals))


def normalise(source: str) -> str:
    """Curly quotes and odd spaces inside template tags made plain (see the module's :TRICKY:)."""
    return _TAG.sub(lambda tag: tag.group(0).translate(_QUOTES), source)


@lru_cache(maxsize=4096)
def compiled(source: str, html: bool = False) -> Any:
    """The compiled template (kept: compiling costs a thousand renders), or TemplateProblem."""
    try:
        return ENVIRONMENTS[html].from_string(normalise(source))
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.lineno, exc.message or "the template cannot be read") from None


@lru_cache(maxsize=4096)
def _dynamic(source: str) -> bool:
    """Whether Jinja must read the text: any tag opened, closed or not (an unclosed one is an error to
    report, not text to send)."""
    return "{{" in source or "{%" in source or "{#" in source


def check(source: str, *, html: bool = False) -> None:
    """TemplateProblem when the text cannot be compiled (the editor's check before saving)."""
    compiled(source, html)


def render_text(source: str, context: Context, *, html: bool = False) -> str:
    """One text rendered; raises Missing, TemplateProblem or another fault (`render` turns them into reasons)."""
    return _render_text(source, context.variables(), html)


def _render_text(source: str, variables: dict[str, Any], html: bool) -> str:
    if _dynamic(source):
        template = compiled(source, html)
        out: list[str] = []
        add = out.append
        for chunk in template.root_render_func(template.new_context(variables, shared=True)):
            add(chunk)
            if len(out) % 512 == 0 and sum(map(len, out)) > MAX_CHARS:  # a runaway loop, stopped as it runs
                raise TemplateError(f"the text grew past {MAX_CHARS:,} characters")
        text = "".join(out)
        if len(text) > MAX_CHARS:
            raise TemplateError(f"the text grew past {MAX_CHARS:,} characters")
    else:
        text = source
    if "{" in text or "}" in text:
        left = next((mark for mark in LEFTOVERS if mark in text), None)
        if left is not None:
            raise TemplateError(f"the text would go out with {left!r} in it")
    return text


def render(message: Mapping[str, Any], context: Context, *, html: frozenset[str] = frozenset(),
           library: Mapping[str, str] | None = None) -> Rendered | Unrendered:
    """Every text in the message's fields rendered for the person (`html`: the fields written as HTML, whose
    values are escaped; `library`: the snippets and layouts, by name, its templates may include)."""
    variables = context.variables()
    token = _LIBRARY.set(library or {})
    where: list[str] = []
    try:
        return Rendered({key: _walk(value, variables, key in html, where, key) for key, value in message.items()})
    except NoCoupon as exc:
        return Unrendered("no_coupon", str(exc), _field(where))
    except Missing as exc:
        return Unrendered("missing_data", str(exc), _field(where))
    except SecurityError as exc:
        return Unrendered("template_error", f"the template tried something not allowed: {exc}", _field(where))
    except TemplateProblem as exc:
        return Unrendered("template_error", f"the template cannot be read: {exc}", _field(where))
    except TemplateNotFound as exc:
        return Unrendered("template_error", exc.message or f"no snippet called {exc.name!r}", _field(where))
    except TemplateSyntaxError as exc:
        return Unrendered("template_error", f"the snippet {exc.name!r} cannot be read: line {exc.lineno}: "
                          f"{exc.message}", _field(where))
    except Exception as exc:  # noqa: BLE001 — whatever a template written by a person raises is that template's fault
        return Unrendered("template_error", str(exc) or type(exc).__name__, _field(where))
    finally:
        _LIBRARY.reset(token)


def _field(where: list[str]) -> str | None:
    return where[-1] if where else None


def _walk(value: Any, variables: dict[str, Any], html: bool, where: list[str], path: str) -> Any:
    """The value with its texts rendered; `where` ends with the path of the text being rendered."""
    if isinstance(value, str):
        where.append(path)
        text = _render_text(value, variables, html)
        where.pop()
        return text
    if isinstance(value, Mapping):
        return {k: _walk(v, variables, html, where, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, variables, html, where, f"{path}.{i}") for i, v in enumerate(value)]
    return value


def choose(variants: Mapping[str, Any], language: str | None, fallback: str = "ko") -> tuple[str, Any]:
    """The variant for the person's language ("en-US" takes "en-US", then "en"), else the workspace's
    `fallback`, else Korean, else the first written."""
    if not variants:
        raise ValueError("a message needs at least one language")
    wanted = []
    if language:
        tag = language.strip().replace("_", "-")
        wanted += [tag, tag.split("-")[0]]
    wanted += [fallback, "ko"]
    lowered = {key.lower(): key for key in variants}
    for tag in wanted:
        if tag.lower() in lowered:
            key = lowered[tag.lower()]
            return key, variants[key]
    key = next(iter(variants))
    return key, variants[key]


def snippets_used(source: str) -> set[str]:
    """The snippets and layouts a text includes or extends by a written name (TemplateProblem when it
    cannot be read)."""
    return {name for name in _referenced(source) if name is not None}


def _referenced(source: str) -> list[str | None]:
    """Names included or extended; None for one the text works out as it renders."""
    from jinja2 import meta

    try:
        tree = ENVIRONMENTS[False].parse(normalise(source))
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.lineno, exc.message or "the template cannot be read") from None
    return list(meta.find_referenced_templates(tree))


def reachable(texts: Iterable[str], library: Mapping[str, str]) -> list[str]:
    """The texts and every snippet they may include, directly or through another snippet (all of them when
    a name is worked out as the text renders); a text that cannot be read includes nothing."""
    out, seen, todo = [], set(), list(texts)
    while todo:
        text = todo.pop()
        out.append(text)
        try:
            names = _referenced(text) if "{%" in text else []
        except TemplateProblem:
            continue
        if None in names:
            names = list(library)
        for name in names:
            if name is not None and name not in seen and name in library:
                seen.add(name)
                todo.append(library[name])
    return out


def names_under(texts: Iterable[str], root: str) -> set[str]:
    """The names texts read under a record (`computed.cart`, `computed["cart"]` for root `computed`); a text
    that cannot be read reads none (saving and rendering say what is wrong with it)."""
    found: set[str] = set()
    for text in texts:
        if root not in text:
            continue
        try:
            tree = ENVIRONMENTS[False].parse(normalise(text))
        except TemplateSyntaxError:
            continue
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if isinstance(node.node, nodes.Name) and node.node.name == root:
                if isinstance(node, nodes.Getattr):
                    found.add(node.attr)
                elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    found.add(node.arg.value)
    return found


def dynamic(value: Any) -> bool:
    """Whether any text in a message's fields is a template (has a tag or a comment)."""
    if isinstance(value, str):
        return _dynamic(value)
    if isinstance(value, Mapping):
        return any(dynamic(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(dynamic(v) for v in value)
    return False
