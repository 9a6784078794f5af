"""The example segments in examples/segments parse and preview on a small demo shop, and find someone."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nudgekit.demo.generator import generate
from nudgekit.segments.model import load
from nudgekit.workspace import Workspace

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "segments").glob("*.*"))
AS_OF = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("demo")
    ws, _ = Workspace.init(tmp / "ws", clock=lambda: AS_OF)
    files = generate(tmp / "files", users=1500, seed=3, as_of=AS_OF, days=180)
    ws.import_users(files.users)
    ws.import_events(files.events)
    ws.run_lifecycle()
    yield ws
    ws.close()


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_previews_and_finds_someone(demo, path):
    found = demo.segment_preview(load(path))
    assert 0 < found.size < found.everyone, (path.name, found.as_dict())
