"""The AlimTalk template registry: every template Kakao reviewed for the workspace, with its status.

An AlimTalk is only accepted when its text equals an approved template with the `#{variables}` filled in,
so the registry is what every AlimTalk is checked against before any provider call. It is kept in sync with
the provider (`nudge kakao templates sync`); with the sandbox, templates are added by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nudgekit.channels.check import Checked
from nudgekit.channels.kakao.buttons import KakaoButton, check_buttons
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.state import KakaoTemplate
from nudgekit.vocabulary import MessageChannel, TemplateStatus

VARIABLE = re.compile(r"#\{([^{}\n]{1,50})\}")
MAX_VARIABLES = 40
TEXT_CHARS = 1000
"""AlimTalk's limit on the text with its variables filled (CHANNEL_RULES B)."""
MAX_BUTTONS = 5
CODE = re.compile(r"^[A-Za-z0-9_\-.]{1,64}$")


@dataclass(frozen=True)
class Template:
    code: str
    name: str
    content: str
    status: TemplateStatus
    buttons: tuple[KakaoButton, ...] = ()
    comment: str | None = None
    source: str = "local"
    """"local" when added by hand, else the provider it came from."""

    @property
    def variables(self) -> list[str]:
        """The text's variables, then those only the buttons' links use (AlimTalk links may carry them)."""
        links = "\n".join(v for b in self.buttons for v in b.links().values())
        return list(dict.fromkeys([*variables_of(self.content), *variables_of(links)]))

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "content": self.content, "status": self.status.value,
                "variables": self.variables, "buttons": [b.model_dump(exclude_none=True, mode="json")
                                                         for b in self.buttons],
                "comment": self.comment, "source": self.source}


def variables_of(text: str) -> list[str]:
    """The `#{name}` variables of a text, each once, in order."""
    return list(dict.fromkeys(VARIABLE.findall(text)))


def fill_text(text: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """The text with its variables replaced by the values, and the names that had no value (left as they were)."""
    missing: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        missing.append(name)
        return match.group(0)

    return VARIABLE.sub(one, text), list(dict.fromkeys(missing))


def validate(template: Template) -> None:
    """Refuse a template Kakao would refuse to review; FieldError naming the part."""
    if not CODE.match(template.code):
        raise FieldError("code", "a template code is 1-64 letters, digits, '-', '_' or '.'")
    if not template.name.strip():
        raise FieldError("name", "a template needs a name")
    if not template.content.strip():
        raise FieldError("text", "a template needs a text")
    if len(template.content) > TEXT_CHARS:
        raise FieldError("text", f"an AlimTalk template holds at most {TEXT_CHARS:,} characters, "
                                 f"not {len(template.content):,}")
    if len(template.variables) > MAX_VARIABLES:
        raise FieldError("text", f"a template may have at most {MAX_VARIABLES} variables, not "
                                 f"{len(template.variables)}")
    checked = Checked(MessageChannel.ALIMTALK, None, 0)
    check_buttons(checked, list(template.buttons), MAX_BUTTONS)
    if checked.problems:
        first = checked.problems[0]
        raise FieldError(first.field, first.en)


def _from_row(row: KakaoTemplate) -> Template:
    return Template(row.code, row.name, row.content, TemplateStatus(row.status),
                    tuple(KakaoButton.model_validate(b) for b in row.buttons), row.comment, row.source)


def get(session: Session, code: str) -> Template | None:
    row = session.get(KakaoTemplate, code)
    return _from_row(row) if row is not None else None


def listed(session: Session, status: TemplateStatus | None = None) -> list[Template]:
    query = select(KakaoTemplate).order_by(KakaoTemplate.code)
    if status is not None:
        query = query.where(KakaoTemplate.status == status.value)
    return [_from_row(r) for r in session.scalars(query)]


def save(session: Session, template: Template, now: datetime) -> None:
    """Insert or replace one template."""
    row = session.get(KakaoTemplate, template.code) or KakaoTemplate(code=template.code)
    row.name, row.content, row.status = template.name, template.content, template.status.value
    row.buttons = [b.model_dump(exclude_none=True, mode="json") for b in template.buttons]
    row.comment, row.source, row.updated_at = template.comment, template.source, now
    session.add(row)


def remove(session: Session, code: str) -> bool:
    return bool(session.execute(delete(KakaoTemplate).where(KakaoTemplate.code == code)).rowcount)  # type: ignore[attr-defined]


@dataclass
class SyncReport:
    """What a sync changed: the provider's list replaces every template it had given before."""

    source: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    """Codes whose status or text changed, as "CODE: pending -> approved"."""
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "added": self.added, "changed": self.changed, "removed": self.removed,
                "unchanged": self.unchanged}


def sync(session: Session, fetched: list[Template], source: str, now: datetime) -> SyncReport:
    """Make the registry hold exactly `fetched` for this provider; templates added by hand stay."""
    report = SyncReport(source)
    known = {t.code: t for t in listed(session)}
    for template in fetched:
        before = known.get(template.code)
        if before is None:
            report.added.append(template.code)
        elif before == template:
            report.unchanged += 1
            continue
        elif before.status != template.status:
            report.changed.append(f"{template.code}: {before.status.value} -> {template.status.value}")
        else:
            report.changed.append(f"{template.code}: text or buttons changed")
        save(session, template, now)
    seen = {t.code for t in fetched}
    for code, before in known.items():
        if before.source == source and code not in seen:
            remove(session, code)
            report.removed.append(code)
    return report
