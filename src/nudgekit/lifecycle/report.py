"""`nudge lifecycle report`: people per stage per week, and who moved where between two days.

Both are recomputed from the events (each week's end is classified as of that day), so the report
does not depend on how often `nudge lifecycle run` happened to run. The chart is one self-contained
HTML file: Plotly's JavaScript is written into the page, nothing is fetched from a CDN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from nudgekit.config import LifecycleSettings
from nudgekit.lifecycle.run import classify_everyone
from nudgekit.store.backend import EventsView
from nudgekit.vocabulary import Stage

STAGES = [s.value for s in Stage]
COLOURS = {"uninstall": "#6b7280", "churn": "#ef4444", "new": "#3b82f6", "resurrected": "#a855f7",
           "power": "#f59e0b", "current": "#10b981"}


@dataclass
class Report:
    weeks: list[date]
    counts: dict[str, list[int]]
    """stage -> people in it at the end of each week."""
    matrix_from: date
    matrix_to: date
    matrix: dict[str, dict[str, int]]
    """from stage -> to stage -> people; "none" rows are people not yet seen on the first day."""

    def as_dict(self) -> dict[str, Any]:
        return {"weeks": [w.isoformat() for w in self.weeks], "stages_per_week": self.counts,
                "transitions": {"from": self.matrix_from.isoformat(), "to": self.matrix_to.isoformat(),
                                "matrix": self.matrix}}


def _stages(view: EventsView, day: date, cfg: LifecycleSettings, zone: str) -> pa.Table:
    return classify_everyone(view, day, cfg, zone).select(["person_id", "stage"])


def build(view: EventsView, as_of: date, cfg: LifecycleSettings, zone: str, *, weeks: int = 12,
          matrix_from: date | None = None, matrix_to: date | None = None,
          step: Callable[[str], None] | None = None) -> Report:
    step = step or (lambda _label: None)
    ends = [as_of - timedelta(days=7 * i) for i in range(weeks - 1, -1, -1)]
    counts = {s: [] for s in STAGES}  # type: dict[str, list[int]]
    for i, end in enumerate(ends, 1):
        step(f"classifying week {i}/{len(ends)} (as of {end})")
        found = _stages(view, end, cfg, zone).column("stage").value_counts().to_pylist()
        tally = {r["values"]: r["counts"] for r in found}
        for s in STAGES:
            counts[s].append(int(tally.get(s, 0)))
    first = matrix_from or as_of - timedelta(days=28)
    last = matrix_to or as_of
    if first >= last:
        raise ValueError(f"the transition matrix needs --from ({first}) before --to ({last})")
    step(f"transitions from {first} to {last}")
    earlier = _stages(view, first, cfg, zone)
    before = dict(zip(earlier.column("person_id").to_pylist(), earlier.column("stage").to_pylist(), strict=True))
    after = _stages(view, last, cfg, zone)
    matrix: dict[str, dict[str, int]] = {}
    for person, stage in zip(after.column("person_id").to_pylist(), after.column("stage").to_pylist(), strict=True):
        row = matrix.setdefault(before.get(person, "none"), {})
        row[stage] = row.get(stage, 0) + 1
    order = ["none", *STAGES]
    matrix = {k: {s: matrix[k].get(s, 0) for s in STAGES} for k in order if k in matrix}
    return Report(ends, counts, first, last, matrix)


def write_html(report: Report, path: Path, title: str = "Lifecycle") -> None:
    """A self-contained page: stages per week (stacked) and the transition matrix (heat map)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], subplot_titles=(
        "people per stage, end of each week",
        f"from stage on {report.matrix_from} (rows) to stage on {report.matrix_to} (columns)"))
    weeks = [w.isoformat() for w in report.weeks]
    for stage in STAGES:
        fig.add_trace(go.Bar(name=stage, x=weeks, y=report.counts[stage], marker_color=COLOURS[stage]), row=1, col=1)
    rows = list(report.matrix)
    z = [[report.matrix[r][c] for c in STAGES] for r in rows]
    fig.add_trace(go.Heatmap(z=z, x=STAGES, y=rows, colorscale="Blues", showscale=False, text=z,
                             texttemplate="%{text}", hovertemplate="%{y} → %{x}: %{z}<extra></extra>"), row=1, col=2)
    fig.update_layout(barmode="stack", title=title, height=520, legend_title_text="stage")
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    path.write_text(fig.to_html(full_html=True, include_plotlyjs=True), encoding="utf-8")
