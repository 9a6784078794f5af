"""Segments against the plain-Python reference: every condition kind, random trees, set laws, preview,
single-user checks, manual lists, and the CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.segments.model import SegmentError, load, parse

from . import reference
from .catalog import COMBINED, CONDITIONS
from .world import build


@pytest.fixture(scope="module")
def shop(tmp_path_factory):  # type: ignore[no-untyped-def]
    ws, world = build(tmp_path_factory.mktemp("shop"), seed=21, people=80)
    yield ws, world
    ws.close()


def engine_members(ws, where) -> set[str]:  # type: ignore[no-untyped-def]
    table = ws.segment_members(parse({"name": "t", "where": where}))
    return set(table.column("person_id").to_pylist())


@pytest.mark.parametrize("where", CONDITIONS + COMBINED, ids=lambda w: json.dumps(w, ensure_ascii=False)[:60])
def test_each_condition_matches_the_reference(shop, where):
    ws, world = shop
    segment = parse({"name": "t", "where": where})
    assert engine_members(ws, where) == reference.members(world, segment)


def test_the_catalog_is_not_trivial(shop):
    _, world = shop
    sizes = [len(reference.members(world, parse({"name": "t", "where": w}))) for w in CONDITIONS]
    assert sum(1 for n in sizes if 0 < n < len(world)) >= len(CONDITIONS) - 4


def trees(depth: int = 2):  # type: ignore[no-untyped-def]
    leaf = st.sampled_from(CONDITIONS)
    if depth == 0:
        return leaf
    sub = trees(depth - 1)
    return st.one_of(leaf, st.builds(lambda xs: {"all": xs}, st.lists(sub, min_size=1, max_size=3)),
                     st.builds(lambda xs: {"any": xs}, st.lists(sub, min_size=1, max_size=3)),
                     st.builds(lambda x: {"not": x}, sub))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=trees())
def test_random_trees_match_the_reference(shop, where):
    ws, world = shop
    assert engine_members(ws, where) == reference.members(world, parse({"name": "t", "where": where}))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.sampled_from(CONDITIONS), b=st.sampled_from(CONDITIONS))
def test_set_laws(shop, a, b):
    ws, world = shop
    everyone = set(world)
    assert engine_members(ws, {"all": [a, {"not": a}]}) == set()
    assert engine_members(ws, {"any": [a, {"not": a}]}) == everyone
    assert engine_members(ws, {"not": {"all": [a, b]}}) == engine_members(ws, {"any": [{"not": a}, {"not": b}]})
    assert engine_members(ws, {"not": {"any": [a, b]}}) == engine_members(ws, {"all": [{"not": a}, {"not": b}]})


def test_preview_counts_reach_with_and_without_consent(shop):
    ws, world = shop
    segment = parse({"name": "buyers", "where": {"event": "order_completed"}})
    found = ws.segment_preview(segment)
    expected = reference.members(world, segment)
    assert found.size == len(expected) and found.everyone == len(world)
    for channel, reach in {"push": "push", "sms": "phone", "email": "email", "kakao": "kakao"}.items():
        reachable = {p for p in expected if getattr(world[p], reach)}
        consented = {p for p in reachable if world[p].consents.get(channel)}
        assert found.reach[channel] == {"reachable": len(reachable), "with_advertising_consent": len(consented)}
    assert sum(found.by_stage.values()) == found.size
    assert {r["person_id"] for r in found.sample} <= expected and len(found.sample) == min(10, len(expected))


def test_single_user_check_agrees_with_the_batch(shop):
    ws, world = shop
    for where in (COMBINED[0], CONDITIONS[20], CONDITIONS[36], CONDITIONS[49]):
        segment = parse({"name": "t", "where": where})
        expected = reference.members(world, segment)
        for pid in list(world)[:12]:
            assert ws.is_member(segment, pid) == (pid in expected), (where, pid)


def test_manual_list_add_and_remove(tmp_path, shop):
    ws, world = shop
    add = tmp_path / "add.csv"
    add.write_text("user_id\nu001\nu002\nnobody\nu001\n")
    first = ws.change_list("winners", add)
    assert (first.added, first.unknown, first.members) == (2, ["nobody"], 2)
    assert engine_members(ws, {"list": "winners"}) == {"u001", "u002"}
    again = ws.change_list("winners", add)
    assert (again.added, again.unchanged) == (0, 2)
    drop = tmp_path / "drop.csv"
    drop.write_text("user_id\nu002\n")
    gone = ws.change_list("winners", drop, remove=True)
    assert (gone.removed, gone.members) == (1, 1)
    assert engine_members(ws, {"list": "winners"}) == {"u001"}


@pytest.mark.parametrize("text, problem", [
    ("name: x\nwhere:\n  all:\n    - evnt: a\n", "where.all.0: a condition starts with one of"),
    ("name: x\nwhere:\n  trait: points\n  op: between\n  value: 3\n", '"between" needs two values'),
    ("name: x\nwhere:\n  event: a\n  count: {}\n", "count needs gte"),
    ("name: x\nwhere:\n  stage: sleeping\n", "where.stage"),
    ("name: x\nwhere:\n  bucket: {salt: a, from: 20, to: 10}\n", "from must be below to"),
    ("name: x\nwhere: [\n", "cannot be read as YAML"),
    ("- just a list\n", "a segment is a mapping"),
])
def test_bad_segment_files_say_where_and_why(tmp_path, text, problem):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SegmentError, match=None) as caught:
        load(path)
    assert problem in str(caught.value)


def test_relative_dates_need_a_date_trait_or_text_holding_a_date(shop):
    ws, _ = shop
    with pytest.raises(SegmentError, match="not a date"):
        engine_members(ws, {"trait": "points", "within_last_days": 3})
    assert engine_members(ws, {"trait": "plan", "within_last_days": 3}) == set()  # text, but no dates in it


def test_text_traits_holding_iso_dates_work_with_relative_dates(tmp_path):
    from nudgekit.workspace import Workspace

    from .world import NOW, at

    ws, _ = Workspace.init(tmp_path / "t", clock=lambda: NOW)
    ws.ingest([{"type": "identify", "userId": "a", "traits": {"joined": at(2, 9).isoformat()}},
               {"type": "identify", "userId": "b", "traits": {"joined": at(9, 9).date().isoformat()}},
               {"type": "identify", "userId": "c", "traits": {"joined": "soon"}}])
    assert engine_members(ws, {"trait": "joined", "within_last_days": 7}) == {"a"}
    assert engine_members(ws, {"trait": "joined", "at_least_days_ago": 7}) == {"b"}
    ws.close()


def test_cli_preview_export_check_and_lists(shop, tmp_path):
    ws, world = shop
    home = ws.settings.home
    seg = tmp_path / "vip.yaml"
    seg.write_text("name: vip\nwhere:\n  all:\n    - trait: points\n      op: gte\n      value: 1200\n"
                   "    - reachable: sms\n")
    runner = CliRunner(env={"NUDGE_HOME": str(home)})
    preview = runner.invoke(app, ["segment", "preview", str(seg), "--json"])
    assert preview.exit_code == 0, preview.output
    expected = reference.members(world, load(seg))
    assert json.loads(preview.stdout)["size"] == len(expected)
    text = runner.invoke(app, ["segment", "preview", str(seg)])
    assert "vip" in text.output and "with advertising consent" in text.output
    for kind in ("csv", "parquet"):
        out = tmp_path / f"vip.{kind}"
        done = runner.invoke(app, ["segment", "export", str(seg), "--out", str(out), "--json"])
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout) == {"segment": "vip", "members": len(expected), "file": str(out),
                                           "format": kind}
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    written = pacsv.read_csv(tmp_path / "vip.csv")
    assert written.column_names == ["person_id", "user_id", "anonymous_id", "stage"]
    assert set(written.column("person_id").to_pylist()) == expected
    assert set(pq.read_table(tmp_path / "vip.parquet").column("person_id").to_pylist()) == expected
    someone = sorted(expected)[0]
    check = json.loads(runner.invoke(app, ["segment", "check", str(seg), someone, "--json"]).stdout)
    assert check["member"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nwhere: {trait: a}\n")
    refused = runner.invoke(app, ["segment", "preview", str(bad), "--json"])
    assert refused.exit_code == 2 and "give op" in json.loads(refused.stdout)["error"]
    wrong = runner.invoke(app, ["segment", "export", str(seg), "--out", str(tmp_path / "x.xlsx")])
    assert wrong.exit_code == 2
    ids = tmp_path / "ids.csv"
    ids.write_text("user_id\nu003\n")
    assert json.loads(runner.invoke(app, ["segment", "list", "add", "cli", str(ids), "--json"]).stdout)["added"] == 1
    lists = json.loads(runner.invoke(app, ["segment", "list", "show", "--json"]).stdout)
    assert {"list": "cli", "members": 1} in [{k: r[k] for k in ("list", "members")} for r in lists]


@pytest.mark.parametrize("leaf, needs", [
    ({"event": "x"}, True),
    ({"event": "x", "performed": False}, False),
    ({"event": "x", "count": {"gte": 2}}, True),
    ({"event": "x", "count": {"lte": 1}}, False),
    ({"event": "x", "count": {"eq": 0}}, False),
    ({"event": "x", "count": {"gte": 0, "lte": 3}}, False),
    ({"event": "x", "sum": {"property": "p", "gte": 1}}, True),
    ({"event": "x", "sum": {"property": "p", "lte": 100}}, False),
    ({"event": "x", "sum": {"property": "p", "lt": 0}}, True),
    ({"event": "x", "avg": {"property": "p", "lte": 100}}, True),
    ({"event": "x", "count": {"lte": 1}, "last": {"within_last_days": 3}}, True),
])
def test_which_event_leaves_only_people_with_events_can_meet(leaf, needs):
    """Exports start from the people the events aggregate found only when a top-level leaf needs an event."""
    from nudgekit.segments.compile import needs_an_event
    from nudgekit.segments.model import BehaviourCondition

    assert needs_an_event(BehaviourCondition.model_validate(leaf)) is needs


def test_property_filters_hold_whatever_escapes_the_json_was_written_with(tmp_path):
    """Imported JSON text is kept as written: a value may arrive escaped (\\uXXXX for Korean, Gson's \\u003c
    for <) or as a number's other spelling. The raw-text search that spares most JSON parsing must never
    drop such an event."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from nudgekit.workspace import Workspace

    from .world import NOW

    raw = [("a", r'{"name":"\ub2e8\ubc31\uc9c8","code":"a\u003cb","sku":"P-1","n":1e3}'),
           ("b", '{"name":"단백질","code":"a<b","sku":"P-1","n":1000}'),
           ("c", '{"name":"샐러드","code":"ab","sku":"P-2","n":7}')]
    events = pa.table({
        "message_id": [f"m{i}" for i in range(len(raw))], "type": ["track"] * len(raw),
        "event": ["product_viewed"] * len(raw), "user_id": [u for u, _ in raw], "anonymous_id": [None] * len(raw),
        "timestamp": pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * len(raw), pa.timestamp("us", tz="UTC")),
        "properties": [p for _, p in raw], "context": [None] * len(raw)})
    pq.write_table(events, tmp_path / "events.parquet")
    ws, _ = Workspace.init(tmp_path / "t", clock=lambda: NOW)
    assert ws.import_events(tmp_path / "events.parquet").stored == len(raw)

    def viewed(prop: str, op: str, value: object) -> set[str]:
        where = [{"property": prop, "op": op, "value": value}]
        return engine_members(ws, {"event": "product_viewed", "where": where})

    assert viewed("name", "eq", "단백질") == {"a", "b"}
    assert viewed("code", "eq", "a<b") == {"a", "b"}
    assert viewed("sku", "eq", "P-1") == {"a", "b"}
    assert viewed("sku", "in", ["P-2", "P-3"]) == {"c"}
    assert viewed("sku", "contains", "P-") == {"a", "b", "c"}
    assert viewed("n", "eq", 1000) == {"a", "b"}
    ws.close()


@pytest.mark.parametrize("op, value, needles", [
    ("eq", "P-PROBIO-30", ["P-PROBIO-30"]),
    ("in", ["gold", "silver"], ["gold", "silver"]),
    ("contains", "PROBIO", ["PROBIO"]),
    ("eq", "단백질", []),           # Python's json writes it as \\uXXXX
    ("eq", "a<b", []),             # Gson writes < as \\u003c
    ("eq", "a/b", []),             # PHP writes / as \\/
    ("eq", "1000", []),            # a number's text may read back respelt
    ("eq", "1e3", []),
    ("eq", 1000, []),
    ("ne", "gold", []),            # only tests a row must pass can rule rows out
    ("not_in", ["gold"], []),
    ("in", ["gold", "단"], []),
])
def test_which_property_filters_search_the_raw_text_first(op, value, needles):
    from nudgekit.segments.compile import _needles
    from nudgekit.segments.model import PropertyFilter

    assert _needles(PropertyFilter(property="p", op=op, value=value)) == needles


def test_exports_carry_each_members_ids_in_person_order(shop):
    """The ids come from the members' profiles (looked up after the engine found the members)."""
    from sqlalchemy import text

    ws, world = shop
    segment = {"any": [{"event": "product_viewed"}, {"stage": ["new", "current", "power", "churn"]}]}
    rows = ws.segment_members(parse({"name": "t", "where": segment})).to_pylist()
    with ws.engine.connect() as conn:
        profiles = {r[0]: (r[1], r[2]) for r in conn.execute(
            text("SELECT profile_id, user_id, anonymous_id FROM profiles WHERE merged_into IS NULL"))}
    assert len(rows) > 10 and sum(1 for r in rows if r["user_id"]) > 10
    assert [(r["user_id"], r["anonymous_id"]) for r in rows] == [profiles.get(r["person_id"], (None, None))
                                                                 for r in rows]
    assert [r["person_id"] for r in rows] == sorted(r["person_id"] for r in rows)


@pytest.mark.parametrize("rollup", [False, True], ids=["no rollup", "rollup"])
def test_batch_check_follows_identities_and_agrees_with_the_export_and_single_checks(tmp_path, monkeypatch, rollup,
                                                                                   state_url):
    """A visitor who signed up and an older account merged into them count as one person, however they are
    asked about; an anonymous visitor is checked by their anonymous id; an id nobody has seen belongs to
    nothing, even a segment of people who did not do something. With a rollup, the id scans read only the
    people's days — also while the links that merged them wait to be re-keyed there (the first case; the
    export then compacts)."""
    from datetime import UTC, datetime, timedelta

    from nudgekit.segments import audience
    from nudgekit.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "ws", database_url=state_url)  # profiles and stages in SQLite or PostgreSQL
    now = datetime.now(UTC)
    spans: list = []
    found_spans = audience._active_spans
    monkeypatch.setattr(audience, "_active_spans", lambda *a: spans.append(found_spans(*a)) or spans[-1])

    def msg(kind: str, hours_ago: int, **fields) -> dict:  # type: ignore[no-untyped-def]
        m = {"type": kind, "timestamp": (now - timedelta(hours=hours_ago)).isoformat(),
             "messageId": f"{kind}-{hours_ago}-{sorted(fields.items())}"} | fields
        return m | ({"properties": {"sku": "P-1"}} if kind == "track" else {})

    behaviour = [msg("track", 50, anonymousId="v1", event="product_viewed"),
                 msg("track", 49, anonymousId="v1", event="product_viewed"),
                 msg("track", 48, userId="old", event="product_viewed"),
                 msg("track", 47, anonymousId="v2", event="product_viewed"),
                 msg("track", 46, userId="u3", event="app_opened")]
    links = [msg("identify", 10, userId="u1", anonymousId="v1"), msg("alias", 9, userId="u1", previousId="old")]
    for batch in (behaviour, links):
        result = ws.ingest(batch)
        assert not result.rejects, result.rejects
        ws.events.append(result.rows)
        if rollup and batch is behaviour:
            ws.run_lifecycle()  # builds the rollup; the links then wait in link_changes
    if rollup:
        with ws.events.reader() as con:
            assert con.execute("SELECT count(*) FROM link_changes").fetchall()[0][0] > 0
    asked = ["u1", "old", "v1", "v2", "u3", "ghost"]
    person = {"u1": "u1", "old": "u1", "v1": "u1", "v2": "anon:v2", "u3": "u3"}
    cases = {
        "viewed three times": ({"event": "product_viewed", "count": {"gte": 3}}, {"u1", "old", "v1"}),
        "viewed": ({"event": "product_viewed"}, {"u1", "old", "v1", "v2"}),
        "never viewed": ({"event": "product_viewed", "performed": False}, {"u3"}),
    }
    for name, (where, expected) in cases.items():
        segment = parse({"name": name, "where": where})
        assert ws.members_among(segment, asked) == expected, name
        assert {u for u in asked if ws.is_member(segment, u)} == expected, name
        exported = set(ws.segment_members(segment).column("person_id").to_pylist())
        assert exported == {person[u] for u in expected}, name
    assert ws.resolve_many(["u1", "ghost"]) == {"u1": "u1"}  # profiles only; the links above live in the events
    assert len(spans) == 21  # 3 cases x (one batch + six single checks)
    used = [found is not None for found in spans]  # [] for "ghost": no days, no scan
    assert used == [True] * 21 if rollup else [False] * 7 + [True] * 14  # the first export builds the rollup
    assert all(spans[i] for i in ((0, 7, 14) if rollup else (7, 14)))  # the batches found days
    assert ws.members_among(parse({"name": "x", "where": {"event": "product_viewed"}}), []) == set()
    ws.run_lifecycle()  # stored stages are read for the asked people only
    new = parse({"name": "new", "where": {"stage": ["new"]}})
    assert ws.members_among(new, asked) == {"u1", "old", "v1", "v2", "u3"}
    assert [u for u in asked if ws.is_member(new, u)] == ["u1", "old", "v1", "v2", "u3"]
    ws.close()


def test_a_check_reads_every_event_of_a_person_active_on_many_separate_days(tmp_path, monkeypatch):
    """40 active days two days apart make 40 spans of time; the check merges them into 32 and still reads
    all 40 events."""
    from datetime import UTC, datetime, timedelta

    from nudgekit.segments import audience
    from nudgekit.workspace import Workspace

    ws, _ = Workspace.init(tmp_path / "ws")
    now = datetime.now(UTC)
    result = ws.ingest([{"type": "track", "event": "app_opened", "userId": "u1", "properties": {},
                         "timestamp": (now - timedelta(days=2 * i, hours=1)).isoformat(), "messageId": f"o{i}"}
                        for i in range(40)])
    ws.events.append(result.rows)
    ws.run_lifecycle()
    spans: list = []
    found_spans = audience._active_spans
    monkeypatch.setattr(audience, "_active_spans", lambda *a: spans.append(found_spans(*a)) or spans[-1])
    assert ws.is_member(parse({"name": "x", "where": {"event": "app_opened", "count": {"gte": 40}}}), "u1")
    assert not ws.is_member(parse({"name": "x", "where": {"event": "app_opened", "count": {"gte": 41}}}), "u1")
    assert [len(s) for s in spans] == [audience.MAX_SPANS] * 2
    ws.close()


def test_a_check_compiled_once_still_follows_the_day_and_the_segment(tmp_path):
    """The single-user check reuses the SQL it compiled for a segment: the next day, a window ends on that
    day, and an edited segment is compiled afresh."""
    from datetime import timedelta

    from nudgekit.workspace import Workspace

    from .world import NOW

    clock = {"now": NOW}
    ws, _ = Workspace.init(tmp_path / "t", clock=lambda: clock["now"])
    result = ws.ingest([{"type": "track", "event": "app_opened", "userId": "a", "messageId": "o1",
                         "timestamp": (NOW - timedelta(hours=1)).isoformat()}])
    ws.events.append(result.rows)
    opened = parse({"name": "opened", "where": {"event": "app_opened", "within_last_days": 2}})
    assert ws.is_member(opened, "a")
    clock["now"] = NOW + timedelta(days=1)
    assert ws.is_member(opened, "a")
    clock["now"] = NOW + timedelta(days=2)
    assert not ws.is_member(opened, "a")
    assert ws.is_member(parse({"name": "opened", "where": {"event": "app_opened", "within_last_days": 3}}), "a")
    ws.close()


def test_a_store_made_before_the_links_index_gets_it(tmp_path):
    """The index that finds a person's aliases is created on stores that predate it, at the next
    segment or lifecycle read, and checks answer the same with it."""
    from nudgekit.store.events import LINKS_INDEX
    from nudgekit.workspace import Workspace

    from .world import NOW

    ws, _ = Workspace.init(tmp_path / "t", clock=lambda: NOW)
    result = ws.ingest([{"type": "identify", "userId": "u1", "anonymousId": "v1", "messageId": "i1"},
                        {"type": "track", "event": "app_opened", "anonymousId": "v1", "messageId": "t1"}])
    ws.events.append(result.rows)
    def indexes() -> list:
        with ws.events.reader() as con:
            return [r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()]

    assert indexes() == [LINKS_INDEX]
    with ws.events.writer() as con:
        con.execute(f"DROP INDEX {LINKS_INDEX}")
    opened = parse({"name": "opened", "where": {"event": "app_opened"}})
    assert ws.members_among(opened, ["u1", "v1"]) == {"u1", "v1"}
    ws.segment_members(opened)
    assert indexes() == [LINKS_INDEX]
    assert ws.members_among(opened, ["u1", "v1"]) == {"u1", "v1"}
    ws.close()
