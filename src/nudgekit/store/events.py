"""The event store: append-only behaviour and message events in a DuckDB file, fed through a spool.

:TRICKY: a DuckDB file admits one writing process at a time, and a writer
locks out readers in other processes. So nothing holds the file open for
long: every door first writes accepted events to the spool (an Arrow IPC file
written under a temporary name, fsynced, then renamed — a crash never leaves
half a part), acknowledges, and a drain moves spooled parts into the DuckDB
file in one short transaction. Readers (`nudge events tail`, lifecycle runs)
open the file read-only for the length of one query. Either side that finds
the file locked waits and retries; the spool absorbs ingestion meanwhile.

A messageId is stored once, ever: each insert skips event ids the store (or
the same insert) already holds. `properties` and `context` are JSON objects
stored as text (checked once, at the door; DuckDB's json_* functions read them).
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc

from nudgekit.store import rollup as rollup_tables
from nudgekit.store.rollup import Rollup

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("previous_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("properties", pa.string()),
        ("context", pa.string()),
        ("source", pa.string()),
    ]
)
COLUMNS = ", ".join(EVENT_SCHEMA.names)

DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    event VARCHAR,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    previous_id VARCHAR,
    timestamp TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    properties VARCHAR,
    context VARCHAR,
    source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_links (
    alias_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    linked_at TIMESTAMPTZ NOT NULL
);
CREATE OR REPLACE VIEW events_resolved AS
SELECT e.*,
       COALESCE(by_user.user_id, e.user_id, by_anon.user_id, 'anon:' || e.anonymous_id) AS person_id
FROM events e
LEFT JOIN identity_links by_user ON by_user.alias_id = e.user_id
LEFT JOIN identity_links by_anon ON by_anon.alias_id = e.anonymous_id;
"""

LINKS_INDEX = "links_by_user"
LINKS_INDEX_DDL = f"CREATE INDEX IF NOT EXISTS {LINKS_INDEX} ON identity_links (user_id)"
"""A person's aliases in a millisecond (about 12 ms scanning 2M links), for the single-user segment check."""


_LOCK_WORDS = ("Could not set lock", "Conflicting lock", "database is locked", "being used by another")


class EventStoreBusy(RuntimeError):
    """Another process held the event store longer than we were willing to wait."""


@dataclass(frozen=True)
class AppendResult:
    received: int
    inserted: int
    active: list[tuple[str, datetime]] = field(default_factory=list)
    """(person, last activity) of the people active in the inserted rows."""

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


class WriterLease:
    """Keeps one writer connection across chunks, closing it after `hold_seconds` so readers get a turn.

    :TRICKY: closing a DuckDB file checkpoints it; closing after every chunk made
    checkpoints a third of an import's time, holding the file for a whole import
    would lock `nudge events tail` out for minutes. A lease is the middle way.
    """

    def __init__(self, store: EventStore, hold_seconds: float) -> None:
        self.store = store
        self.hold_seconds = hold_seconds
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened = 0.0

    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None and time.monotonic() - self._opened > self.hold_seconds:
            self.release()
        if self._con is None:
            self._con = self.store._open(read_only=False)
            self._opened = time.monotonic()
        return self._con

    def release(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


ActivityListener = Callable[[list[tuple[str, datetime]]], None]


class EventStore:
    def __init__(self, path: Path, spool_dir: Path, *, lock_timeout: float = 60.0, rollup: Rollup | None = None,
                 memory_limit: str = "") -> None:
        self.path = Path(path)
        self.memory_limit = memory_limit
        """DuckDB's memory_limit for every connection ("" for its default); one value per process, as DuckDB
        refuses a second connection to a file with a different configuration."""
        self.spool_dir = Path(spool_dir)
        self.lock_timeout = lock_timeout
        self.rollup = rollup
        self.on_activity: ActivityListener | None = None
        """Called after every insert that committed activity (the lifecycle's at-once resurrection)."""
        self.wants_activity: Callable[[], bool] = lambda: self.on_activity is not None
        self.on_rows: Callable[[pa.Table], None] | None = None
        """Called with every appended batch, duplicates included, after it is stored (journeys' triggers). It
        may raise: a drain then keeps its spool parts for the next try (their events are stored once)."""
        """Whether anyone could be resurrected now; when not, inserts skip working out who was active."""

    # -- connections ---------------------------------------------------------------------------

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                config = {"memory_limit": self.memory_limit} if self.memory_limit else {}
                con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                break
            except duckdb.Error as exc:
                if not any(word in str(exc) for word in _LOCK_WORDS):
                    raise
                if time.monotonic() > deadline:
                    raise EventStoreBusy(
                        f"the event store {self.path} stayed locked by another process for "
                        f"{self.lock_timeout:.0f}s; try again when the other command finishes"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        con.execute("SET TimeZone = 'UTC'")
        return con

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def lease(self, hold_seconds: float = 2.0) -> Iterator[WriterLease]:
        """A writer for a long job (an import) that lets readers in every `hold_seconds`."""
        if not self.path.exists():
            self.create()
        lease = WriterLease(self, hold_seconds)
        try:
            yield lease
        finally:
            lease.release()

    @staticmethod
    def ensure_index(con: duckdb.DuckDBPyConnection) -> None:
        """Stores made before the index on identity links get it."""
        con.execute(LINKS_INDEX_DDL)

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one query or a few; do not keep it."""
        if not self.path.exists():
            self.create()
        with self._connect(read_only=True) as con:
            yield con

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect(read_only=False) as con:
            yield con

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with self.writer() as con:
            con.execute(DDL)
            self.ensure_index(con)
            con.execute(rollup_tables.DDL)

    # -- writing -------------------------------------------------------------------------------

    def spool(self, rows: pa.Table) -> Path | None:
        """Durably park accepted rows for the next drain. Returns the part written."""
        if rows.num_rows == 0:
            return None
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = self.spool_dir / f".{name}.tmp"
        final = self.spool_dir / f"{name}.arrow"
        with open(tmp, "wb") as handle:
            with ipc.new_file(handle, EVENT_SCHEMA) as part:
                part.write_table(rows.cast(EVENT_SCHEMA))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        return final

    def pending_parts(self) -> list[Path]:
        if not self.spool_dir.exists():
            return []
        return sorted(self.spool_dir.glob("*.arrow"))

    def drain(self, max_parts: int = 2000) -> AppendResult:
        """Move spooled parts into the store. Only one process drains at a time; others return at once."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.spool_dir / ".drain.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return AppendResult(0, 0)
            self._sweep_abandoned()
            parts = self.pending_parts()[:max_parts]
            if not parts:
                return AppendResult(0, 0)
            tables = [ipc.open_file(pa.memory_map(str(p))).read_all() for p in parts]
            result = self.append(pa.concat_tables(tables))
            for part in parts:
                part.unlink(missing_ok=True)
            return result

    def _sweep_abandoned(self, older_than: float = 3600.0) -> None:
        """Temporary part files left by a process killed mid-write were never acknowledged: remove them.

        :TRICKY: another process may rename its part (finished) between the listing and the look."""
        cutoff = time.time() - older_than
        for tmp in self.spool_dir.glob(".*.tmp"):
            try:
                abandoned = tmp.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if abandoned:
                tmp.unlink(missing_ok=True)

    def append(self, rows: pa.Table) -> AppendResult:
        """Insert rows (EVENT_SCHEMA) that passed validation, skipping event ids already stored."""
        if rows.num_rows == 0:
            return AppendResult(0, 0)
        if not self.path.exists():
            self.create()
        with self.writer() as con:
            result = insert_new(con, rows, self.rollup, self.wants_activity())
        self.notify(result)
        if self.on_rows is not None:
            self.on_rows(rows)
        return result

    def insert(self, con: duckdb.DuckDBPyConnection, relation: str, where: str = "true") -> AppendResult:
        """insert_from on a connection the caller holds (bulk imports), keeping the rollup and listeners."""
        result = insert_from(con, relation, where, self.rollup, self.wants_activity())
        self.notify(result)
        return result

    def notify(self, result: AppendResult) -> None:
        if result.active and self.on_activity is not None:
            self.on_activity(result.active)

    # -- reading -------------------------------------------------------------------------------

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts. Goes through Arrow: timestamps come back as aware datetimes without pytz."""
        with self.reader() as con:
            return con.sql(sql, params=params or []).to_arrow_table().to_pylist()

    def count(self) -> int:
        with self.reader() as con:
            return con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]

    def tail(
        self, limit: int = 20, *, after: datetime | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        where, params = ["1=1"], []
        if after is not None:
            where.append("received_at > ?")
            params.append(after)
        if name:
            where.append("event = ?")
            params.append(name)
        sql = (
            f"SELECT * FROM (SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY received_at DESC, timestamp DESC, event_id DESC LIMIT {int(limit)}) "
            "ORDER BY received_at, timestamp, event_id"
        )
        return self.query(sql, params)

    def since(self, after: datetime, limit: int = 10_000, *, name: str | None = None,
              key: tuple[datetime, str] | None = None) -> list[dict[str, Any]]:
        """The earliest events received after `after`, oldest first.

        Page through with `key` = (received_at, event_id) of the last row of the previous page: an import
        gives every row of a chunk the same received_at, so time alone cannot say where a page ended.
        """
        where, params = ["received_at > ?"], [after]
        if key is not None:
            where.append("(received_at > ? OR (received_at = ? AND event_id > ?))")
            params += [key[0], key[0], key[1]]
        if name:
            where.append("event = ?")
            params.append(name)
        return self.query(
            f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY received_at, event_id LIMIT {int(limit)}", params,
        )

    def person_events(self, person_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest events of one person, anonymous history included once it was linked."""
        sql = (
            f"SELECT {COLUMNS} FROM events_resolved WHERE person_id = ? "
            f"ORDER BY timestamp DESC LIMIT {int(limit)}"
        )
        return self.query(sql, [person_id])

    def person_summary(self, person_id: str) -> dict[str, Any]:
        rows = self.query(
            "SELECT count(*) AS events, min(timestamp) AS first_seen, max(timestamp) AS last_seen, "
            "list(DISTINCT anonymous_id) FILTER (WHERE anonymous_id IS NOT NULL) AS anonymous_ids "
            "FROM events_resolved WHERE person_id = ?",
            [person_id],
        )
        return rows[0]


def insert_new(con: duckdb.DuckDBPyConnection, rows: pa.Table, rollup: Rollup | None = None,
               want_active: bool = True) -> AppendResult:
    """Insert an Arrow table of EVENT_SCHEMA rows (see insert_from)."""
    con.register("incoming_raw", rows)
    try:
        return insert_from(con, "incoming_raw", rollup=rollup, want_active=want_active)
    finally:
        con.unregister("incoming_raw")


def insert_from(con: duckdb.DuckDBPyConnection, relation: str, where: str = "true",
                rollup: Rollup | None = None, want_active: bool = True) -> AppendResult:
    """One transaction: the rows of `relation` matching `where` go in, identity links and the rollup are updated.

    Event ids already stored, or repeated within the rows, are dropped (the first received wins).
    """
    rows = f"(SELECT {COLUMNS} FROM {relation} WHERE {where})"
    try:
        con.execute("BEGIN")
        received, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT event_id) FROM {rows}"
        ).fetchone()  # type: ignore[misc]
        if received != distinct:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE incoming_once AS SELECT * FROM {rows} "
                "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY received_at) = 1"
            )
            rows = "incoming_once"
        seen = con.execute(
            "CREATE OR REPLACE TEMP TABLE seen AS SELECT DISTINCT event_id FROM events "
            f"WHERE event_id IN (SELECT event_id FROM {rows})"
        ).fetchone()[0]  # type: ignore[index]
        new_only = "WHERE event_id NOT IN (SELECT event_id FROM seen)" if seen else ""
        inserted = con.execute(f"INSERT INTO events SELECT {COLUMNS} FROM {rows} {new_only}").fetchone()[0]  # type: ignore[index]
        _link_identities(con, rows)
        active = (rollup.add(con, f"(SELECT * FROM {rows} {new_only})", want_active=want_active)
                  if rollup and inserted else [])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return AppendResult(int(received), int(inserted), active)


def _link_identities(con: duckdb.DuckDBPyConnection, rows: str) -> None:
    """First link by client timestamp wins: an anonymous id (or an aliased id) belongs to one user."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE new_links AS
        SELECT alias_id, arg_min(user_id, ts) AS user_id, min(ts) AS linked_at FROM (
            SELECT anonymous_id AS alias_id, user_id, timestamp AS ts FROM {rows}
             WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL AND anonymous_id <> user_id
            UNION ALL
            SELECT previous_id, user_id, timestamp FROM {rows}
             WHERE type = 'alias' AND previous_id IS NOT NULL AND user_id IS NOT NULL
               AND previous_id <> user_id
        ) GROUP BY alias_id
        """
    )
    # chains stay one hop long: a link to an id that is itself an alias points at that alias's user ...
    con.execute(
        "UPDATE new_links SET user_id = l.user_id FROM identity_links l WHERE new_links.user_id = l.alias_id"
    )
    con.execute("DELETE FROM new_links WHERE alias_id = user_id")  # B -> A after A -> B: the first link stands
    con.execute(
        "DELETE FROM identity_links WHERE alias_id IN (SELECT n.alias_id FROM new_links n "
        "JOIN identity_links l USING (alias_id) WHERE n.linked_at < l.linked_at)"
    )
    con.execute(
        "INSERT INTO identity_links SELECT * FROM new_links n "
        "WHERE n.alias_id NOT IN (SELECT alias_id FROM identity_links)"
    )
    # ... and links to a user id that has just become an alias move on to its user (repeated for chains
    # that arrived in one batch; each pass moves a link one hop, and no chain is longer than the batch)
    for _ in range(16):
        moved = con.execute(
            "UPDATE identity_links SET user_id = n.user_id FROM new_links n "
            "WHERE identity_links.user_id = n.alias_id AND identity_links.alias_id <> n.user_id "
            "RETURNING identity_links.alias_id"
        ).fetchall()
        if not moved:
            break
        # the rollup re-keys these aliases' rows (see Rollup._log_links); rare, so no table until needed
        con.execute("CREATE TEMP TABLE IF NOT EXISTS moved_links (alias_id VARCHAR)")
        con.executemany("INSERT INTO moved_links VALUES (?)", moved)
        con.execute(
            "UPDATE new_links SET user_id = l.user_id FROM identity_links l "
            "WHERE new_links.alias_id = l.alias_id AND new_links.user_id <> l.user_id"
        )
