"""Bulk import of users and events from CSV, JSONL and Parquet, streamed in chunks.

Every row passes the same rules as the HTTP API. Good rows are stored, bad
rows are counted, the first few shown, and all written to a reject file with
the row number, field, reason and the row itself — nothing is lost silently.

Events (CSV / Parquet): known columns are mapped by name (user_id or userId,
event or event_name, timestamp, message_id, ...); every other column becomes
a property. Naive timestamps are read in the workspace time zone; integer
timestamps as Unix seconds (or milliseconds when larger than 10^11).
Events (JSONL): one Segment message per line (type defaults to track).
Users: one row per user; see docs/ingestion.md for the column names.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nudgekit.ingest.validate import STORED_WHERE, Reject
from nudgekit.profiles.identify import RESERVED
from nudgekit.store.events import AppendResult, WriterLease
from nudgekit.vocabulary import ConsentSource, EventSource

if TYPE_CHECKING:
    from nudgekit.workspace import Workspace

CHUNK_ROWS = 500_000
USER_CHUNK_ROWS = 5_000
SAMPLE_REJECTS = 10

Progress = Callable[[int], None]

EVENT_ALIASES: dict[str, tuple[str, ...]] = {
    "message_id": ("message_id", "messageId", "event_id", "eventId"),
    "type": ("type",),
    "event": ("event", "event_name", "eventName", "name"),
    "user_id": ("user_id", "userId"),
    "anonymous_id": ("anonymous_id", "anonymousId"),
    "previous_id": ("previous_id", "previousId"),
    "timestamp": ("timestamp", "time", "ts", "occurred_at", "event_time"),
    "original_timestamp": ("original_timestamp", "originalTimestamp"),
    "sent_at": ("sent_at", "sentAt"),
    "properties": ("properties",),
    "context": ("context",),
}


@dataclass
class ImportReport:
    file: str
    kind: str
    rows: int = 0
    accepted: int = 0
    stored: int = 0
    rejected: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    reject_file: str | None = None
    seconds: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.accepted - self.stored

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "kind": self.kind, "rows": self.rows, "accepted": self.accepted,
            "stored": self.stored, "duplicates": self.duplicates, "rejected": self.rejected,
            "first_rejects": self.sample, "reject_file": self.reject_file, "seconds": round(self.seconds, 3),
        }


class RejectWriter:
    """Writes every reject as one JSON line: row (1-based data row), field, reason, record."""

    def __init__(self, path: Path, report: ImportReport) -> None:
        self.path = path
        self.report = report
        self._handle: Any = None

    def write(self, reject: Reject, record: Any, row_number: int | None) -> None:
        entry = {"row": row_number, "field": reject.field, "reason": reject.reason, "record": record}
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "wb")
            self.report.reject_file = str(self.path)
        self._handle.write(orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        self.report.rejected += 1
        if len(self.report.sample) < SAMPLE_REJECTS:
            self.report.sample.append({k: entry[k] for k in ("row", "field", "reason")})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    for fmt, names in (("parquet", {".parquet", ".pq"}), ("jsonl", {".jsonl", ".ndjson", ".json"}),
                       ("csv", {".csv", ".tsv"})):
        if names & set(suffixes):
            return fmt
    raise ValueError(f"{path.name}: cannot tell the format; name it .csv, .jsonl or .parquet")


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows to expect, for the progress bar (a fast newline count for text files)."""
    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return max(lines - (1 if fmt == "csv" else 0), 0)


def csv_encoding(path: Path) -> str:
    """UTF-8, or CP949 (EUC-KR and its superset), which is what Korean Excel saves as "CSV"."""
    with open(path, "rb") as handle:
        sample = handle.read(1 << 20)
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3:  # a character cut by the end of the sample
            return "utf-8"
    try:
        sample.decode("cp949")
        return "cp949"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 1:
            return "cp949"
    raise ValueError(f"{path.name}: the text is neither UTF-8 nor CP949/EUC-KR; save the file as UTF-8 CSV")


class BrokenLines:
    """CSV lines with the wrong number of fields: skipped by the reader, reported as rejects."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def skip(self, row: Any) -> str:
        reason = f"has {row.actual_columns} values but the header has {row.expected_columns} columns"
        self.found.append((reason, row.text))
        return "skip"

    def report(self, rejects: RejectWriter) -> None:
        for reason, text in self.found:
            rejects.write(Reject(-1, "row", reason), text, None)
        self.found.clear()


def _csv_batches(path: Path, chunk_rows: int, broken: BrokenLines, kind: str) -> Iterator[pa.RecordBatch]:
    """CSV rows as text columns: types are read per value later, so a file cannot change type halfway."""
    encoding = csv_encoding(path)
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8-sig" if encoding == "utf-8" else encoding)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    names = next(csv.reader([header], delimiter=delimiter))
    require_columns(path, [n.strip() for n in names], kind)
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=16 << 20, encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                         invalid_row_handler=broken.skip),
        convert_options=pacsv.ConvertOptions(column_types={n.strip(): pa.string() for n in names},
                                             strings_can_be_null=True),
    )
    yield from _rechunk(reader, chunk_rows)


def _rechunk(batches: Any, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, chunk_rows):
            yield batch.slice(start, chunk_rows)


def _user_batches(path: Path, fmt: str, chunk_rows: int, broken: BrokenLines) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        parquet = pq.ParquetFile(path)
        require_columns(path, parquet.schema_arrow.names, "user")
        yield from parquet.iter_batches(batch_size=chunk_rows)
    else:
        yield from _csv_batches(path, chunk_rows, broken, "user")


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                chunk.append({"__blank__": number})
            else:
                try:
                    chunk.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    chunk.append(_BadLine(str(exc)))
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _BadLine:
    error: str


def _default_reject_path(ws: Workspace, path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return ws.settings.home / "rejects" / f"{path.stem}-{stamp}.rejects.jsonl"


# -- events ----------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?"
"""A number as a CSV cell writes it; "01234" (a zip code, a phone) is not one and stays text."""


def _typed_json(name: str) -> str:
    """A CSV cell as a JSON value: numbers and true/false typed, empty cells left out, the rest text."""
    col = _quote(name)
    return (f"CASE WHEN {col} IS NULL OR trim({col}) = '' THEN NULL::JSON "
            f"WHEN regexp_full_match(trim({col}), '{NUMBER}') THEN CAST(trim({col}) AS JSON) "
            f"WHEN lower(trim({col})) IN ('true', 'false') THEN CAST(lower(trim({col})) AS JSON) "
            f"ELSE to_json({col}) END")


EPOCH_MS = 100_000_000_000
"""Integer times above this are milliseconds (10^11 seconds is the year 5138)."""


def _epoch(col: str) -> str:
    """Unix seconds or milliseconds as text DuckDB reads back as a time; out of range stays digits (refused)."""
    return (f"CASE WHEN abs({col}) < {EPOCH_MS} THEN CAST(to_timestamp({col}) AS VARCHAR) "
            f"WHEN abs({col}) < {EPOCH_MS * 1000} THEN CAST(to_timestamp({col} / 1000.0) AS VARCHAR) "
            f"ELSE CAST({col} AS VARCHAR) END")


def _json_value(name: str, schema: pa.Schema) -> str:
    """A typed column as a JSON value; NaN and infinities are not JSON, so they are left out."""
    col = _quote(name)
    if pa.types.is_floating(schema.field(name).type):
        return f"CASE WHEN isnan({col}) OR isinf({col}) THEN NULL ELSE {col} END"
    return col


def typed_text(value: str) -> Any:
    """The same reading of a CSV cell in Python (for user traits)."""
    text = value.strip()
    if re.fullmatch(NUMBER, text):
        number = float(text)
        return int(number) if re.fullmatch(r"-?(0|[1-9][0-9]*)", text) else number
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return value


def _event_mapping_sql(schema: pa.Schema, text_values: bool = False) -> str:
    """SQL turning any event file's columns into RAW_SCHEMA rows."""
    names = list(schema.names)
    taken: dict[str, str] = {}
    for target, aliases in EVENT_ALIASES.items():
        for alias in aliases:
            if alias in names and alias not in taken.values():
                taken[target] = alias
                break
    extra = [n for n in names if n not in taken.values() and n != "_row"]

    def text(target: str) -> str:
        source = taken.get(target)
        return f"CAST({_quote(source)} AS VARCHAR)" if source else "NULL::VARCHAR"

    def moment(target: str) -> str:
        source = taken.get(target)
        if not source:
            return "NULL::VARCHAR"
        kind = schema.field(source).type
        col = _quote(source)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            return _epoch(col)
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            return col  # typed already: the rules' TRY_CAST reads a naive one in the workspace zone
        if text_values:  # a CSV cell of digits is an epoch too
            return (f"CASE WHEN regexp_full_match(trim({col}), '-?[0-9]{{9,15}}') "
                    f"THEN {_epoch(f'CAST(trim({col}) AS BIGINT)')} ELSE CAST({col} AS VARCHAR) END")
        return f"CAST({col} AS VARCHAR)"

    def as_json(source: str | None) -> str:
        """Text columns pass as they are (the shared rules check them); structs and maps become JSON text."""
        if not source:
            return "'{}'"
        kind = schema.field(source).type
        col = _quote(source)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return col
        return f"CAST(to_json({col}) AS VARCHAR)"

    props = as_json(taken.get("properties"))
    if extra:
        packed = ", ".join(f"{_quote(n)} := {_typed_json(n) if text_values else _json_value(n, schema)}"
                           for n in extra)
        merged = f"json_merge_patch(coalesce(TRY_CAST({props} AS JSON), '{{}}'), to_json(struct_pack({packed})))"
        # a properties value that is not an object stays as it is, so the shared rule rejects it
        props = (f"CASE WHEN {props} IS NULL OR coalesce(json_type(TRY_CAST({props} AS JSON)) = 'OBJECT', false) "
                 f"THEN CAST({merged} AS VARCHAR) ELSE {props} END")  # both text: never cast the bad one to JSON
    context = as_json(taken.get("context")) if taken.get("context") else "NULL::VARCHAR"
    kind = f"coalesce(nullif(trim({text('type')}), ''), 'track')"
    return f"""
        SELECT *, strlen(properties) + coalesce(strlen(context), 0) AS _size FROM (
        SELECT _row, {text('message_id')} AS message_id, {kind} AS type, {text('event')} AS event,
               {text('user_id')} AS user_id, {text('anonymous_id')} AS anonymous_id,
               {text('previous_id')} AS previous_id, {moment('timestamp')} AS "timestamp",
               {moment('original_timestamp')} AS original_timestamp, {moment('sent_at')} AS sent_at,
               CAST({props} AS VARCHAR) AS properties, CAST({context} AS VARCHAR) AS context
        FROM src)
    """


PROFILE_TYPES = ("identify", "alias")


def _import_chunk(ws: Workspace, lease: WriterLease, rows_sql: str, schema: pa.Schema, offset: int, source: str,
                  rejects: RejectWriter, report: ImportReport, *, text_values: bool) -> None:
    """Map, judge and insert one chunk in one writer transaction — no round trip through Python.

    `rows_sql` selects the chunk's rows (columns as in `schema`) plus `_row`, their place in the chunk.
    """
    profile_types = ", ".join(f"'{t}'" for t in PROFILE_TYPES)
    con = lease.connection()
    ws.validator.prepare(con)
    con.execute("SET preserve_insertion_order = false")  # lets DuckDB append in parallel
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW src AS {rows_sql}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW raw_rows AS {_event_mapping_sql(schema, text_values)}")
        found = ws.validator.judge_sql(con, "raw_rows", received_at=ws.clock(), source_name=source)
        for row, kind in con.execute(
            f"SELECT _row, type FROM judged WHERE rule IS NULL AND type IN ({profile_types})"
        ).fetchall():
            found.append(Reject(row, "type", f"{kind} rows change profiles: import them with "
                                             "`nudge import users` or as JSONL"))
        result = ws.events.insert(con, "judged", f"{STORED_WHERE} AND type NOT IN ({profile_types})")
        records = {}
        if found:
            wanted = ", ".join(str(r.row) for r in found)
            for record in con.sql(f"SELECT * FROM src WHERE _row IN ({wanted})").to_arrow_table().to_pylist():
                records[record.pop("_row")] = record
    finally:
        for view in ("raw_rows", "src"):
            con.execute(f"DROP VIEW IF EXISTS {view}")
        con.execute("DROP TABLE IF EXISTS judged")
    for reject in sorted(found, key=lambda r: r.row):
        rejects.write(reject, records.get(reject.row), offset + reject.row + 1)
    report.accepted += result.received
    report.stored += result.inserted


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def require_columns(path: Path, names: list[str], kind: str) -> None:
    """A file without any id column is a file-level mistake (wrong delimiter, wrong file), not a million rejects."""
    ids = ("user_id", "userId", "anonymous_id", "anonymousId")
    if any(n in names for n in ids):
        return
    hint = ""
    if len(names) == 1 and any(sep in names[0] for sep in ";|\t"):
        hint = f'; the header "{names[0][:60]}" looks separated by something other than commas — save it as CSV'
    raise ValueError(f"{path.name}: no user_id (or anonymous_id) column among {', '.join(names[:12])}{hint}"
                     f" — every {kind} row needs one")


def _import_parquet(ws: Workspace, path: Path, chunk_rows: int, source: str, rejects: RejectWriter,
                    report: ImportReport, progress: Progress | None) -> None:
    """DuckDB reads the file itself, chunk by chunk of row numbers (row groups outside a chunk are skipped)."""
    parquet = pq.ParquetFile(path)
    total, schema = parquet.metadata.num_rows, parquet.schema_arrow
    require_columns(path, schema.names, "event")
    if "_row" in schema.names:
        raise ValueError(f"{path.name}: a column may not be called _row")
    with ws.events.lease() as lease:
        for start in range(0, total, chunk_rows):
            end = min(start + chunk_rows, total)
            rows_sql = (f"SELECT * EXCLUDE (file_row_number), file_row_number - {start} AS _row "
                        f"FROM read_parquet({_sql_text(str(path.resolve()))}, file_row_number = true) "
                        f"WHERE file_row_number >= {start} AND file_row_number < {end}")
            _import_chunk(ws, lease, rows_sql, schema, start, source, rejects, report, text_values=False)
            report.rows = end
            if progress:
                progress(end - start)


def _import_csv(ws: Workspace, path: Path, chunk_rows: int, source: str, rejects: RejectWriter,
                report: ImportReport, progress: Progress | None) -> None:
    broken = BrokenLines()
    offset = 0
    with ws.events.lease() as lease:
        for batch in _csv_batches(path, chunk_rows, broken, "event"):
            table = pa.Table.from_batches([batch]).append_column("_row", pa.array(range(batch.num_rows), pa.int64()))
            con = lease.connection()
            con.register("csv_chunk", table)
            try:
                _import_chunk(ws, lease, "SELECT * FROM csv_chunk", batch.schema, offset, source, rejects, report,
                              text_values=True)
            finally:
                con.unregister("csv_chunk")
            broken.report(rejects)
            offset += batch.num_rows
            report.rows = offset
            if progress:
                progress(batch.num_rows)


def import_events(ws: Workspace, path: Path, *, reject_file: Path | None = None,
                  progress: Progress | None = None, chunk_rows: int = CHUNK_ROWS,
                  source: str = EventSource.IMPORT.value) -> ImportReport:
    fmt = file_format(path)
    report = ImportReport(str(path), "events")
    rejects = RejectWriter(reject_file or _default_reject_path(ws, path), report)
    started = time.perf_counter()
    offset = 0
    try:
        if fmt == "jsonl":
            for chunk in _jsonl_chunks(path, chunk_rows):
                rows = _ingest_messages(ws, chunk, offset, source, rejects, default_type="track")
                _store(ws, rows, report)
                offset += len(chunk)
                report.rows = offset
                if progress:
                    progress(len(chunk))
        elif fmt == "parquet":
            _import_parquet(ws, path, chunk_rows, source, rejects, report, progress)
        else:
            _import_csv(ws, path, chunk_rows, source, rejects, report, progress)
    finally:
        rejects.close()
        report.seconds = time.perf_counter() - started
    return report


def _store(ws: Workspace, rows: pa.Table, report: ImportReport) -> None:
    result: AppendResult = ws.events.append(rows)
    report.accepted += result.received
    report.stored += result.inserted


def _ingest_messages(ws: Workspace, messages: list[Any], offset: int, source: str, rejects: RejectWriter,
                     *, default_type: str | None, originals: list[Any] | None = None) -> pa.Table:
    """Segment-shaped messages through the shared path; rejects written with the original rows."""
    originals = originals or messages
    clean: list[Any] = []
    positions: list[int] = []
    for i, message in enumerate(messages):
        if isinstance(message, _BadLine):
            rejects.write(Reject(i, "line", f"not valid JSON ({message.error})"), None, offset + i + 1)
        elif isinstance(message, dict) and "__blank__" in message:
            continue
        else:
            if default_type and isinstance(message, dict) and not message.get("type"):
                message = {**message, "type": default_type}
            clean.append(message)
            positions.append(i)
    result = ws.ingest(clean, source=source, fold_extra=True, consent_source=ConsentSource.IMPORT)
    for reject in result.rejects:
        position = positions[reject.row]
        rejects.write(reject, originals[position], offset + position + 1)
    return result.rows


# -- users -----------------------------------------------------------------------------------

USER_ID_COLUMNS = ("user_id", "userId")
ANON_COLUMNS = ("anonymous_id", "anonymousId")
PUSH_COLUMNS = {"push_token": "token", "push_platform": "platform", "push_app_id": "app_id",
                "push_device_id": "device_id", "push_status": "status"}
CONSENT_META = {"consent_at": "at", "consent_source": "source", "consent_evidence": "evidence"}


def user_row_to_identify(row: dict[str, Any], *, text_values: bool = False) -> dict[str, Any]:
    """One user row as an identify message (consent_sms_advertising, push_token, ... understood)."""
    message: dict[str, Any] = {"type": "identify"}
    traits: dict[str, Any] = {}
    consent: dict[str, Any] = {}
    token: dict[str, Any] = {}
    for column, value in row.items():
        if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float)
                                                                              and not math.isfinite(value)):
            continue
        if column in ("message_id", "messageId"):
            message["messageId"] = str(value)
        elif column in USER_ID_COLUMNS:
            message["userId"] = str(value)
        elif column in ANON_COLUMNS:
            message["anonymousId"] = str(value)
        elif column == "timestamp":
            message["timestamp"] = value.isoformat() if isinstance(value, datetime) else str(value)
        elif column in PUSH_COLUMNS:
            token[PUSH_COLUMNS[column]] = str(value)
        elif column in CONSENT_META:
            consent[CONSENT_META[column]] = value.isoformat() if isinstance(value, datetime) else value
        elif column.startswith(("consent_", "consent.")):
            parts = column.replace(".", "_").split("_")[1:]
            channel, purpose = parts[0], "_".join(parts[1:]) or "advertising"
            consent.setdefault(channel, {})[purpose] = value
        elif text_values and isinstance(value, str) and column not in RESERVED:
            traits[column] = typed_text(value)
        else:
            traits[column] = value.isoformat() if isinstance(value, datetime) else value
    if consent:
        consent.setdefault("source", ConsentSource.IMPORT.value)
        traits["consent"] = consent
    if token:
        traits["push_tokens"] = [token]
    message["traits"] = traits
    # the same row imported again is the same message: its identify event and consent records are not repeated
    message.setdefault("messageId", "import-" + hashlib.md5(
        orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)).hexdigest())
    return message


def import_users(ws: Workspace, path: Path, *, reject_file: Path | None = None,
                 progress: Progress | None = None, chunk_rows: int = USER_CHUNK_ROWS,
                 source: str = EventSource.IMPORT.value) -> ImportReport:
    fmt = file_format(path)
    report = ImportReport(str(path), "users")
    rejects = RejectWriter(reject_file or _default_reject_path(ws, path), report)
    started = time.perf_counter()
    offset = 0
    broken = BrokenLines()
    try:
        chunks: Iterator[list[Any]]
        if fmt == "jsonl":
            chunks = _jsonl_chunks(path, chunk_rows)
        else:
            chunks = (b.to_pylist() for b in _user_batches(path, fmt, chunk_rows, broken))
        for chunk in chunks:
            broken.report(rejects)
            messages = [user_row_to_identify(r, text_values=fmt == "csv")
                        if isinstance(r, dict) and "__blank__" not in r else r for r in chunk]
            rows = _ingest_messages(ws, messages, offset, source, rejects, default_type=None, originals=chunk)
            _store(ws, rows, report)
            offset += len(chunk)
            report.rows = offset
            if progress:
                progress(len(chunk))
        broken.report(rejects)
    finally:
        rejects.close()
        report.seconds = time.perf_counter() - started
    return report

