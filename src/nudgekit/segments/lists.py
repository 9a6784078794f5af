"""Manual lists: users uploaded from a file (a `user_id` column, or the first column), to be used in
segments as `list: NAME`. Members can be added and removed later; each change says how many were added,
removed, already there (or not there), and which ids nudgekit does not know (kept aside, never guessed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Engine, delete, func, insert, select

from nudgekit.store.state import Profile, SegmentList, SegmentListMember, in_batches

ID_COLUMNS = ("user_id", "userId", "profile_id", "id")


class ListError(ValueError):
    pass


@dataclass
class ListChange:
    name: str
    rows: int
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    unknown: list[str] = field(default_factory=list)
    members: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"list": self.name, "rows": self.rows, "added": self.added, "removed": self.removed,
                "unchanged": self.unchanged, "unknown": len(self.unknown), "unknown_sample": self.unknown[:10],
                "members": self.members}


def read_ids(path: Path) -> list[str]:
    """User ids from a CSV (a user_id column, else the first column) or Parquet file, blanks skipped."""
    if not path.exists():
        raise ListError(f"{path}: no such file")
    try:
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types={c: "string" for c in ID_COLUMNS}))
    except Exception as exc:
        raise ListError(f"{path}: cannot be read ({exc})") from None
    if table.num_columns == 0:
        raise ListError(f"{path}: no columns")
    name = next((c for c in ID_COLUMNS if c in table.column_names), table.column_names[0])
    ids = [str(v).strip() for v in table.column(name).to_pylist() if v is not None and str(v).strip()]
    return list(dict.fromkeys(ids))


def change(engine: Engine, name: str, ids: list[str], *, remove: bool, now: datetime, source: str | None) -> ListChange:
    if not name or len(name) > 100:
        raise ListError("a list name is 1 to 100 characters")
    result = ListChange(name, len(ids))
    with engine.begin() as conn:
        listed = conn.execute(select(SegmentList.name).where(SegmentList.name == name)).first()
        if listed is None:
            if remove:
                raise ListError(f'there is no list "{name}"')
            conn.execute(insert(SegmentList).values(name=name, created_at=now, updated_at=now))
        known: set[str] = set()
        present: set[str] = set()
        for batch in in_batches(ids):
            known.update(conn.execute(select(Profile.profile_id).where(Profile.profile_id.in_(batch))).scalars())
            present.update(conn.execute(select(SegmentListMember.profile_id).where(
                SegmentListMember.list_name == name, SegmentListMember.profile_id.in_(batch))).scalars())
        if remove:
            gone = [i for i in ids if i in present]
            for batch in in_batches(gone):
                conn.execute(delete(SegmentListMember).where(SegmentListMember.list_name == name,
                                                             SegmentListMember.profile_id.in_(batch)))
            result.removed, result.unchanged = len(gone), len(ids) - len(gone)
        else:
            result.unknown = [i for i in ids if i not in known]
            new = [i for i in ids if i in known and i not in present]
            for batch in in_batches(new):
                conn.execute(insert(SegmentListMember), [
                    {"list_name": name, "profile_id": i, "added_at": now, "source": source} for i in batch])
            result.added, result.unchanged = len(new), len(ids) - len(new) - len(result.unknown)
        conn.execute(SegmentList.__table__.update().where(SegmentList.name == name).values(updated_at=now))
        result.members = conn.execute(select(func.count()).select_from(SegmentListMember).where(
            SegmentListMember.list_name == name)).scalar_one()
    return result


def all_lists(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(SegmentList.name, SegmentList.updated_at, func.count(SegmentListMember.profile_id))
            .outerjoin(SegmentListMember, SegmentListMember.list_name == SegmentList.name)
            .group_by(SegmentList.name, SegmentList.updated_at).order_by(SegmentList.name)).all()
    return [{"list": r[0], "updated_at": r[1].isoformat(), "members": r[2]} for r in rows]
