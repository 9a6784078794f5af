"""API keys: write keys for the Segment-compatible ingestion API, admin keys for /api/v1.

A key is shown once, when created; only its SHA-256 is stored. Keys are
long random tokens, so a plain hash (not a slow password hash) is the right
tool: the lookup is an indexed equality on the digest.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from nudgekit.store.state import ApiKey
from nudgekit.vocabulary import KeyScope


@dataclass(frozen=True)
class KeyInfo:
    id: str
    scope: KeyScope
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "scope": self.scope.value,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, KeyScope(row.scope), row.name, row.created_at, row.revoked_at)


class Keys:
    """Create, list, revoke and check keys. Checks are cached for a few seconds per process."""

    CACHE_SECONDS = 5.0

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._cache: dict[str, tuple[float, KeyScope | None]] = {}

    def create(self, scope: KeyScope, name: str | None, now: datetime) -> tuple[KeyInfo, str]:
        key_id = secrets.token_hex(4)
        key = f"nk_{scope.value}_{key_id}{secrets.token_urlsafe(24)}"
        row = ApiKey(id=key_id, secret_hash=_digest(key), scope=scope.value, name=name, created_at=now)
        with self.sessions.begin() as session:
            session.add(row)
        return _info(row), key

    def list(self) -> list[KeyInfo]:
        with self.sessions() as session:
            return [_info(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.created_at))]

    def revoke(self, key_id: str, now: datetime) -> KeyInfo | None:
        with self.sessions.begin() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = now
            info = _info(row)
        self._cache.clear()
        return info

    def scope_of(self, key: str) -> KeyScope | None:
        """The scope a presented key grants, or None for an unknown or revoked key."""
        digest = _digest(key)
        hit = self._cache.get(digest)
        if hit and time.monotonic() - hit[0] < self.CACHE_SECONDS:
            return hit[1]
        with self.sessions() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
            scope = KeyScope(row.scope) if row is not None and row.revoked_at is None else None
        self._cache[digest] = (time.monotonic(), scope)
        return scope
