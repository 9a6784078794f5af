"""A dry copy of the workspace for `nudge plan`: the same code as an apply runs against it — the same policy
chain, frequency-cap claims, budget, coupon codes and outbox rows — and everything it writes is thrown away.
So what plan shows is what apply does on unchanged data, by construction rather than by a second
implementation kept in step.

On SQLite the state DB is copied (SQLite's online backup, a consistent snapshot that blocks no writer) and
the copy deleted afterwards; holding one write transaction open for the whole plan instead would stop every
other process writing to the workspace. On PostgreSQL the plan runs in one transaction that is rolled back,
each step of it in a savepoint; it takes no advisory locks on people (`Workspace.dry`), which a large
audience would exhaust and which would make workers wait on a plan.
"""

from __future__ import annotations

import copy
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import sessionmaker

from nudgekit.store.state import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace


@contextmanager
def dry_copy(ws: Workspace, at: datetime) -> Iterator[Workspace]:
    """The workspace as a throw-away copy whose clock stands at `at` (when the run would launch)."""
    clone = copy.copy(ws)
    clone.clock = lambda: at
    clone.dry = True
    if ws.engine.dialect.name == "sqlite":
        database = ws.engine.url.database
        assert database, "an in-memory state DB cannot be planned against"
        with tempfile.TemporaryDirectory(prefix="nudge-plan-") as folder:
            target = Path(folder) / "state.db"
            source, copied = sqlite3.connect(database), sqlite3.connect(target)
            try:
                source.backup(copied)
            finally:
                copied.close()
                source.close()
            clone.engine = make_engine(f"sqlite:///{target}")
            clone.sessions = make_sessionmaker(clone.engine)
            try:
                yield clone
            finally:
                clone.engine.dispose()
        return
    with ws.engine.connect() as connection:
        outer = connection.begin()
        clone.sessions = sessionmaker(bind=connection, expire_on_commit=False,
                                      join_transaction_mode="create_savepoint")
        try:
            yield clone
        finally:
            outer.rollback()
