"""Typed custom traits: a trait's type is fixed the first time it is seen (or declared in nudge.toml).

Segments compare traits, so "plan" must not be a number for one user and a
word for the next. A later value of another type is converted when nothing
is lost ("42" for a number trait) and refused otherwise, naming the trait.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nudgekit.profiles.contacts import FieldError, to_bool
from nudgekit.store.state import TraitDefinition


class TraitType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    LIST = "list"
    OBJECT = "object"


def infer(value: Any) -> TraitType:
    if isinstance(value, bool):
        return TraitType.BOOLEAN
    if isinstance(value, int | float):
        return TraitType.NUMBER
    if isinstance(value, list):
        return TraitType.LIST
    if isinstance(value, dict):
        return TraitType.OBJECT
    if isinstance(value, datetime):
        return TraitType.DATETIME
    return TraitType.STRING


def coerce(name: str, value: Any, kind: TraitType) -> Any:
    """Return the value in the trait's type, or raise FieldError naming the trait."""
    if value is None:
        return None
    field = f"traits.{name}"
    actual = infer(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(field, f"{value} is not a number a segment can compare; use a finite number")
    if actual == kind:
        return value.isoformat() if isinstance(value, datetime) else value
    if kind == TraitType.STRING and actual in (TraitType.NUMBER, TraitType.BOOLEAN):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if kind == TraitType.NUMBER and actual == TraitType.STRING:
        text = str(value).strip().replace(",", "")
        try:
            number = float(text)
        except ValueError:
            raise FieldError(field, f'expected a number like the earlier values of "{name}", got "{value}"') from None
        if not math.isfinite(number):
            raise FieldError(field, f'"{value}" is not a number a segment can compare; use a finite number')
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if kind == TraitType.BOOLEAN and actual in (TraitType.STRING, TraitType.NUMBER):
        return to_bool(value, field)
    if kind == TraitType.DATETIME and actual == TraitType.STRING:
        try:
            return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")).isoformat()
        except ValueError:
            raise FieldError(field, f'expected a date like 2026-11-22 for "{name}", got "{value}"') from None
    raise FieldError(field, f'"{name}" holds {kind.value} values; got {actual.value} {value!r}')


class TraitRegistry:
    """Known trait types, read once per unit of work and extended as new traits appear."""

    def __init__(self, session: Session, declared: dict[str, str] | None = None) -> None:
        self.session = session
        self.types = {d.name: TraitType(d.type) for d in session.scalars(select(TraitDefinition))}
        for name, kind in (declared or {}).items():
            self.types.setdefault(name, TraitType(kind))
        self._pending: dict[str, TraitType] = {}

    def check(self, traits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, TraitType]]:
        """Values in their trait's type, plus the types this message would introduce. Changes nothing."""
        out: dict[str, Any] = {}
        new: dict[str, TraitType] = {}
        for name, value in traits.items():
            kind = self.types.get(name) or self._pending.get(name) or new.get(name)
            if kind is None and value is not None:
                kind = new[name] = infer(value)
            out[name] = coerce(name, value, kind) if kind else value
        return out, new

    def remember(self, new: dict[str, TraitType]) -> None:
        """Types a prepared (valid) message introduces, so later messages in the batch are checked against them."""
        self._pending.update({k: v for k, v in new.items() if k not in self.types})

    def adopt(self, new: dict[str, TraitType], now: datetime) -> None:
        for name, kind in new.items():
            if name in self.types:
                continue
            self.types[name] = kind
            if self.session.get(TraitDefinition, name) is None:
                self.session.add(TraitDefinition(name=name, type=kind.value, created_at=now))
