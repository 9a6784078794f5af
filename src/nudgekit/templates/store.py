"""Saved templates: message templates (one channel's fields, per language) and snippets (texts that templates
include or extend: a header, a footer, the legal line, a layout), every saved version kept in the state DB.

A template file (YAML or JSON) reads:

    name: cart_reminder            # letters, digits, _ . - ; what campaigns and `nudge preview` name
    channel: push
    language: ko                   # the language of `message` (default ko)
    message: {title: ..., text: ..., link: ...}
    languages:                     # other languages: only the fields that differ
      en: {title: ..., text: ...}

or, for a snippet, `kind: snippet` and `text`. Saving checks every text compiles, every snippet it names
exists, and the fields fit the channel (with each tag standing in for a value); a file that is the same as
the latest version adds nothing.

A render reads the latest version of every snippet, so fixing a footer fixes every template that includes
it; which versions a message used is on record (`Prepared.snippets`, the outbox's `template`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import MessageTemplate
from nudgekit.templates import computed, coupons
from nudgekit.templates.render import _TAG, TemplateProblem, check, dynamic, reachable, snippets_used
from nudgekit.vocabulary import MessageChannel

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
HTML_FIELDS = frozenset({"html"})
"""Fields written as HTML on every channel that has one (email, in-app): values put into them are escaped."""
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")


class TemplateFile(BaseModel):
    """A template as written in a file (or sent to the API)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["message", "snippet"] = "message"
    channel: MessageChannel | None = None
    language: str = "ko"
    message: dict[str, Any] | None = None
    languages: dict[str, dict[str, Any]] = {}
    text: str | None = None
    note: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError("a template name is 1 to 100 letters, digits, '_', '.' or '-', starting with a letter "
                             "or digit")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not LANGUAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not a language tag (ko, en, en-US)")
        return value

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for tag in value:
            cls._language(tag)
        return value

    @model_validator(mode="after")
    def _shape(self) -> TemplateFile:
        if self.kind == "snippet":
            if self.text is None or self.message is not None or self.languages or self.channel is not None:
                raise ValueError("a snippet has a text, and no channel, message or languages")
        elif self.channel is None or not self.message or self.text is not None:
            raise ValueError("a message template has a channel and a message (its fields), and no text")
        return self

    def body(self) -> dict[str, Any]:
        if self.kind == "snippet":
            return {"text": self.text}
        return {"language": self.language, "message": self.message, "languages": self.languages}


@dataclass(frozen=True)
class Saved:
    name: str
    version: int
    kind: str
    channel: str | None
    changed: bool
    """False when the file was the same as the latest version (nothing was added)."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "channel": self.channel,
                "changed": self.changed}


@dataclass(frozen=True)
class Prepared:
    """A message ready to render for anyone: its fields per language (one variant when written inline), the
    snippets it may use, and where it came from."""

    channel: MessageChannel
    variants: Mapping[str, Mapping[str, Any]]
    fallback: str = "ko"
    library: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    version: int | None = None
    snippets: Mapping[str, int] = field(default_factory=dict)
    """The versions of the snippets in `library`."""
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What a send works out once for all its people (the computed values its texts use, shared lists)."""

    def texts(self) -> list[str]:
        """Every text it may render: its fields' in every language, and the snippets they include."""
        return reachable([t for fields in self.variants.values() for _, t in _texts(fields, "")], self.library)

    @property
    def label(self) -> str | None:
        """name@version; a file not saved yet shows as `name (unsaved)`."""
        if self.name is None:
            return None
        return f"{self.name}@{self.version}" if self.version is not None else f"{self.name} (unsaved)"


def read_file(path: Path) -> TemplateFile:
    """A template file (.yaml, .yml, .json); FieldError naming the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise FieldError(str(path), f"cannot read it: {exc}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise FieldError(str(path), f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise FieldError(str(path), "a template file holds one template: name, channel, message (or kind: snippet, "
                         "name, text)")
    return parse(data, str(path))


def parse(data: Mapping[str, Any], where: str = "template") -> TemplateFile:
    try:
        return TemplateFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "template"
        raise FieldError(where, f"{place}: {first['msg'].removeprefix('Value error, ')}") from None


def variants_of(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A message template's fields per language: each other language's fields over the main one's."""
    main = dict(body["message"])
    found = {body.get("language", "ko"): main}
    for tag, fields in (body.get("languages") or {}).items():
        found[tag] = {**main, **fields}
    return found


def check_texts(variants: Mapping[str, Mapping[str, Any]], library: Mapping[str, str],
                session: Session | None = None) -> None:
    """FieldError for a text that cannot be compiled, names a snippet that is not saved, a computed value
    nudgekit does not work out or (given the session) a coupon pool with no codes loaded."""
    for tag, fields in variants.items():
        for path, text in _texts(fields, ""):
            where = f"{tag}.{path}" if len(variants) > 1 else path
            try:
                check(text, html=path.split(".")[0] in HTML_FIELDS)
                unknown = sorted(snippets_used(text) - set(library))
                strange = computed.unknown(computed.used([text]))
            except TemplateProblem as exc:
                raise FieldError(where, f"the template cannot be read: {exc}") from None
            if unknown:
                raise FieldError(where, f"there is no snippet called {unknown[0]!r}: save it first")
            if strange:
                raise FieldError(where, f"computed.{strange[0]} is not a value nudgekit works out (it knows "
                                 f"{', '.join(computed.KNOWN)})")
            if session is None:
                continue
            pools = coupons.used(reachable([text], library))
            empty = sorted(pools - coupons.known(session, pools))
            if empty:
                raise FieldError(where, f"there is no coupon pool called {empty[0]!r}: load its codes first "
                                 f"(nudge coupon load {empty[0]} FILE)")


Checker = Callable[[MessageChannel, dict[str, Any]], Any]
"""Checks a message as the channel would (Workspace.check_message): returns its `Checked`."""


def check_fields(channel: MessageChannel, variants: Mapping[str, Mapping[str, Any]],
                 checker: Checker | None = None) -> None:
    """FieldError when the fields cannot be the channel's message whatever the values: each tag stands in
    for a short word while the channel's model reads them, and a field written without tags that the
    channel refuses (a link with no scheme, an AlimTalk template not registered) is refused now. A field
    with tags is judged for each person when it is rendered (preview shows it)."""
    from nudgekit.channels.registry import parse_message

    for tag, fields in variants.items():
        stood_in = _stand_in(fields)
        try:
            parse_message(channel, stood_in)
            problems = checker(channel, stood_in).problems if checker is not None else []
        except FieldError as exc:
            raise FieldError(f"{tag}.{exc.field}" if len(variants) > 1 else exc.field, exc.reason) from None
        for problem in problems:
            name = re.split(r"[.\[]", problem.field)[0]
            if name in fields and not dynamic(fields[name]):
                raise FieldError(f"{tag}.{problem.field}" if len(variants) > 1 else problem.field, problem.en)


def _stand_in(value: Any) -> Any:
    if isinstance(value, str):
        return _TAG.sub("x", value) if dynamic(value) else value
    if isinstance(value, Mapping):
        return {k: _stand_in(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stand_in(v) for v in value]
    return value


def _texts(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [t for k, v in value.items() for t in _texts(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list | tuple):
        return [t for i, v in enumerate(value) for t in _texts(v, f"{path}.{i}")]
    return []


def library(session: Session) -> tuple[dict[str, str], dict[str, int]]:
    """The latest version of every snippet: texts by name, and their versions."""
    latest = select(MessageTemplate.name, func.max(MessageTemplate.version).label("version")).where(
        MessageTemplate.kind == "snippet").group_by(MessageTemplate.name).subquery()
    rows = session.execute(select(MessageTemplate.name, MessageTemplate.version, MessageTemplate.body).join(
        latest, (MessageTemplate.name == latest.c.name) & (MessageTemplate.version == latest.c.version))).all()
    return {r.name: r.body["text"] for r in rows}, {r.name: r.version for r in rows}


def find(session: Session, name: str, version: int | None = None) -> MessageTemplate | None:
    query = select(MessageTemplate).where(MessageTemplate.name == name)
    if version is not None:
        query = query.where(MessageTemplate.version == version)
    return session.scalars(query.order_by(MessageTemplate.version.desc()).limit(1)).first()


def save(session: Session, spec: TemplateFile, now: datetime, checker: Checker | None = None) -> Saved:
    """Add a version unless the latest is the same; FieldError when a text cannot be compiled, names a
    snippet not saved, or does not fit the channel, or when the name is taken by the other kind."""
    texts, _ = library(session)
    if spec.kind == "snippet":
        assert spec.text is not None
        check_texts({"": {"text": spec.text}}, {**texts, spec.name: spec.text})
    else:
        assert spec.channel is not None
        variants = variants_of(spec.body())
        check_texts(variants, texts, session)
        check_fields(spec.channel, variants, checker)
    body = spec.body()
    digest = hashlib.sha256(orjson.dumps([spec.kind, spec.channel, body], option=orjson.OPT_SORT_KEYS)).hexdigest()
    latest = find(session, spec.name)
    if latest is not None and latest.kind != spec.kind:
        raise FieldError("name", f"{spec.name!r} is already a {latest.kind}: give the {spec.kind} another name")
    if latest is not None and latest.digest == digest:
        return Saved(spec.name, latest.version, latest.kind, latest.channel, False)
    version = (latest.version if latest else 0) + 1
    session.add(MessageTemplate(name=spec.name, version=version, kind=spec.kind,
                                channel=spec.channel.value if spec.channel else None, body=body, digest=digest,
                                note=spec.note, created_at=now))
    session.flush()
    return Saved(spec.name, version, spec.kind, spec.channel.value if spec.channel else None, True)


def prepare(session: Session, name: str, version: int | None, fallback: str) -> Prepared:
    """A saved message template, ready to render (FieldError when there is no such template or version)."""
    row = find(session, name, version)
    if row is None:
        known = find(session, name)
        raise FieldError("template", f"no template called {name!r}" if known is None else
                         f"{name!r} has no version {version} (the latest is {known.version})")
    if row.kind != "message":
        raise FieldError("template", f"{name!r} is a snippet: templates include it, it is not sent on its own")
    texts, versions = library(session)
    return Prepared(MessageChannel(row.channel), variants_of(row.body), fallback, texts, row.name, row.version,
                    versions)


def inline(channel: MessageChannel, fields: Mapping[str, Any], session: Session, fallback: str) -> Prepared:
    """Fields written with the send (not saved) whose texts are templates (the send checks the rest)."""
    texts, versions = library(session)
    variants = {fallback: dict(fields)}
    check_texts(variants, texts, session)
    check_fields(channel, variants)
    return Prepared(channel, variants, fallback, texts, snippets=versions)


def unsaved(session: Session, spec: TemplateFile, fallback: str, checker: Checker | None = None) -> Prepared:
    """A template file read but not saved (to preview it first), checked as saving would."""
    if spec.kind != "message" or spec.channel is None:
        raise FieldError("template", f"{spec.name!r} is a snippet: preview a message template that includes it")
    texts, versions = library(session)
    variants = variants_of(spec.body())
    check_texts(variants, texts, session)
    check_fields(spec.channel, variants, checker)
    return Prepared(spec.channel, variants, fallback, texts, spec.name, None, versions)


def listing(session: Session) -> list[dict[str, Any]]:
    """Every template and snippet: its latest version, channel, languages and when it was saved."""
    latest = select(MessageTemplate.name, func.max(MessageTemplate.version).label("version")).group_by(
        MessageTemplate.name).subquery()
    rows = session.scalars(select(MessageTemplate).join(
        latest, (MessageTemplate.name == latest.c.name) & (MessageTemplate.version == latest.c.version))
        .order_by(MessageTemplate.kind, MessageTemplate.name)).all()
    return [{"name": r.name, "kind": r.kind, "channel": r.channel, "version": r.version,
             "languages": sorted(variants_of(r.body)) if r.kind == "message" else [],
             "saved_at": r.created_at.isoformat(), "note": r.note} for r in rows]


def history(session: Session, name: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(MessageTemplate).where(MessageTemplate.name == name)
                           .order_by(MessageTemplate.version)).all()
    return [{"version": r.version, "saved_at": r.created_at.isoformat(), "note": r.note, "body": r.body}
            for r in rows]
