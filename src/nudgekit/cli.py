"""`nudge`: thin Typer commands — parse, call the Workspace, print with Rich (or JSON with --json)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nudgekit.config import home_from_env
from nudgekit.profiles.contacts import FieldError
from nudgekit.store.events import EventStoreBusy
from nudgekit.vocabulary import (
    BrandFormat,
    Channel,
    ConsentSource,
    KeyScope,
    MessageChannel,
    Purpose,
    SmsType,
    Targeting,
    TemplateStatus,
)
from nudgekit.workspace import Workspace, WorkspaceNotFound

app = typer.Typer(help="nudgekit — a CRM messaging engine. Every command that prints a result takes --json.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
import_app = typer.Typer(help="Bulk import users or events from CSV, JSONL or Parquet.", no_args_is_help=True)
users_app = typer.Typer(help="Look at user profiles.", no_args_is_help=True)
events_app = typer.Typer(help="Look at the event store.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: write keys for ingestion, admin keys for /api/v1.", no_args_is_help=True)
consent_app = typer.Typer(help="Record consent changes (append-only history).", no_args_is_help=True)
lifecycle_app = typer.Typer(help="Lifecycle stages: New, Current, Power, Resurrected, Churn, Uninstall.",
                            no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(users_app, name="users")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(consent_app, name="consent")
app.add_typer(lifecycle_app, name="lifecycle")
segment_app = typer.Typer(help="Segments: declared in YAML or JSON, previewed, exported; manual lists.",
                          no_args_is_help=True)
list_app = typer.Typer(help="Manual lists of users, for `list: NAME` in segments.", no_args_is_help=True)
segment_app.add_typer(list_app, name="list")
app.add_typer(segment_app, name="segment")
message_app = typer.Typer(help="Messages: check one against its channel's limits and rules before sending.",
                          no_args_is_help=True)
app.add_typer(message_app, name="message")
sender_app = typer.Typer(help="Who messages come from: sender name, numbers, 080 opt-out, Kakao channel, email.",
                         no_args_is_help=True)
app.add_typer(sender_app, name="sender")

TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
console = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
HomeOpt = Annotated[Path | None, typer.Option("--home", envvar="NUDGE_HOME", help="Workspace folder (default ./.nudge).")]


def emit_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    sys.stdout.write("\n")


_errors_as_json = False


def json_errors(on: bool) -> None:
    """With --json, a failure is a JSON object on stdout too, so a script never has nothing to parse."""
    global _errors_as_json
    _errors_as_json = on


def fail(message: str, code: int = 1) -> None:
    if _errors_as_json:
        emit_json({"error": message, "exit_code": code})
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def settings_problem(exc: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return f"the settings (nudge.toml or NUDGE_* variables) are not valid: {problems}"


def open_workspace(home: Path | None) -> Workspace:
    try:
        return Workspace.open(home)
    except WorkspaceNotFound as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(settings_problem(exc), 2)
    raise AssertionError("unreachable")


@contextmanager
def workspace(home: Path | None, *, flush: bool = True) -> Iterator[Workspace]:
    ws = open_workspace(home)
    try:
        yield ws
    except (FieldError, ValueError) as exc:
        fail(str(exc), 2)
    except EventStoreBusy as exc:
        fail(str(exc))
    finally:
        ws.close(flush=flush)


@contextmanager
def progress_bar(label: str, total: int | None, quiet: bool) -> Iterator[Callable[[int], None]]:
    if quiet:
        yield lambda n: None
        return
    with _bar() as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


@contextmanager
def progress_of(label: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A bar for work that reports (done, total) and learns its total as it goes."""
    if quiet:
        yield lambda done, total: None
        return
    with _bar() as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


# -- init ----------------------------------------------------------------------------------------


@app.command()
def init(
    directory: Annotated[
        Path | None, typer.Argument(help="Where to create the workspace (default NUDGE_HOME or ./.nudge).")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(envvar="NUDGE_DATABASE_URL", help="State DB URL (default SQLite in the workspace).")
    ] = None,
    brand: Annotated[str, typer.Option(help="Brand name shown in messages.")] = "nudgekit",
    as_json: JsonOpt = False,
) -> None:
    """Create a workspace: state DB (migrated), event store, nudge.toml and a first write key."""
    json_errors(as_json)
    home = directory or home_from_env()
    overrides: dict[str, Any] = {"brand": brand}
    if database_url:
        overrides["database_url"] = database_url
    try:
        ws, key = Workspace.init(home, **overrides)
    except ValidationError as exc:
        fail(settings_problem(exc), 2)
    except ValueError as exc:
        fail(str(exc), 2)
    out = {"workspace": str(ws.settings.home.resolve()), "state_db": _safe_url(ws.settings.state_url),
           "event_store": str(ws.events.path.resolve()), "write_key": key}
    ws.close()
    if as_json:
        emit_json(out)
        return
    console.print(f"[green]Workspace ready[/] at {out['workspace']}")
    console.print(f"  state DB     {out['state_db']}\n  event store  {out['event_store']}")
    if key:
        console.print(f"  write key    [bold]{key}[/]  (shown once; send it as the HTTP Basic user name)")
    else:
        console.print("  write key    already exists (nudge keys list; nudge keys create for a new one)")


def _safe_url(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':')[0]}:***@{tail}" if ":" in creds else url


# -- demo ----------------------------------------------------------------------------------------


@app.command()
def demo(
    home: HomeOpt = None,
    users: Annotated[int, typer.Option(min=1, max=5_000_000, help="How many users to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Same seed and --as-of give the same data.")] = 7,
    days: Annotated[int, typer.Option(min=30, max=730, help="How many days of history.")] = 180,
    as_of: Annotated[datetime | None, typer.Option(
        help="The demo's 'now' (default: the start of today in the workspace time zone).", formats=TIME_FORMATS)] = None,
    playbooks: Annotated[bool, typer.Option(help="Apply the ready playbooks (examples/playbooks) to the shop.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Generate a health-food shop's users and behaviour, ingest it through the normal import, summarise it, and
    apply the ready playbooks (the commerce funnel journeys, the consent notices) to it. A new demo workspace
    sends through the sandbox (nothing leaves the machine) with made-up sender numbers and the shop
    healthyday.example, written to its nudge.toml."""
    json_errors(as_json)
    from nudgekit import demo as shop
    from nudgekit.config import CONFIG_FILE
    from nudgekit.demo.generator import generate
    from nudgekit.demo.summary import summarize

    target = home or home_from_env()
    key = None
    if (target / CONFIG_FILE).exists():
        ws = open_workspace(target)
    else:
        try:
            ws, key = Workspace.init(target, **shop.settings())
        except ValidationError as exc:
            fail(settings_problem(exc), 2)
        shop.remember(ws.settings.home)
    try:
        zone = ws.settings.zone
        moment = (as_of.replace(tzinfo=as_of.tzinfo or zone) if as_of
                  else datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0))
        out = ws.settings.home / "demo"
        out.mkdir(parents=True, exist_ok=True)
        with progress_bar("generating users", users, as_json) as advance:
            files = generate(out, users=users, seed=seed, as_of=moment, days=days, progress=advance)
        with progress_bar("importing users", files.users_count, as_json) as advance:
            user_report = ws.import_users(files.users, progress=advance)
        with progress_bar("importing events", files.events_count, as_json) as advance:
            event_report = ws.import_events(files.events, progress=advance)
        summary = summarize(ws, as_of=moment)
        applied = shop.apply_playbooks(ws) if playbooks else None
    finally:
        ws.close()
    result = {"workspace": str(target.resolve()), "write_key": key, "as_of": moment.isoformat(), "seed": seed,
              "imports": {"users": user_report.as_dict(), "events": event_report.as_dict()}, "summary": summary,
              "playbooks": applied}
    if as_json:
        emit_json(result)
        return
    _print_demo(result)


def _print_demo(result: dict[str, Any]) -> None:
    s = result["summary"]
    imports = result["imports"]
    console.print(f"\n[bold green]Demo workspace ready[/] at {result['workspace']} (as of {result['as_of']})")
    if result["write_key"]:
        console.print(f"write key [bold]{result['write_key']}[/] (shown once)")
    for kind in ("users", "events"):
        r = imports[kind]
        console.print(f"  imported {kind}: {r['stored']:,} stored, {r['duplicates']:,} already there, "
                      f"{r['rejected']:,} rejected in {r['seconds']:.1f}s")
    head = Table(show_header=False, box=None, title="the shop")
    for label, value in [("users", s["users"]), ("events", s["events"]), ("active last 7 days", s["active_users_7d"]),
                         ("active last 30 days", s["active_users_30d"]), ("buyers", s["buyers"]),
                         ("revenue", f"{s['revenue_krw']:,}원")]:
        head.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(head)
    events = Table("event", "count", title="events by name")
    for name, count in s["events_by_name"].items():
        events.add_row(name, f"{count:,}")
    console.print(events)
    consent = Table("channel", "advertising", "night", title="consent granted (users)")
    for channel, purposes in s["consent_granted"].items():
        consent.add_row(channel, f"{purposes.get('advertising', 0):,}", f"{purposes.get('night', 0):,}")
    console.print(consent)
    sources = Table("utm_source", "users", title="acquisition")
    for source, count in list(s["acquisition"].items())[:8]:
        sources.add_row(source, f"{count:,}")
    console.print(sources)
    if result["playbooks"] is not None:
        books = Table("playbook", "kind", "state", title="playbooks applied (examples/playbooks)")
        for b in result["playbooks"]:
            state = b["state"] or ("unchanged" if b["change"] == "unchanged" else
                                   "[red]not applied[/]: " + escape("; ".join(b["problems"]) or b["error"] or ""))
            books.add_row(escape(b["name"]), b["kind"] or "", state)
        console.print(books)
    console.print("next: [bold]nudge users show u0000001[/], [bold]nudge events tail[/], [bold]nudge serve[/] "
                  "(takes the events and walks the journeys), [bold]nudge campaign list[/]")


# -- serve ---------------------------------------------------------------------------------------


@app.command()
def serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    worker: Annotated[bool, typer.Option(help="Also send the outbox from this process (one delivery worker); "
                                              "--no-worker when `nudge worker` processes do it.")] = True,
) -> None:
    """Run the HTTP API (Segment-compatible /v1, admin /api/v1, docs at /docs) and, by default, one delivery
    worker sending the outbox."""
    import uvicorn

    from nudgekit.api.app import create_app

    ws = open_workspace(home)
    bind_host, bind_port = host or ws.settings.host, port or ws.settings.port
    err.print(f"nudgekit serving {ws.settings.home.resolve()} on http://{bind_host}:{bind_port} (docs at /docs)")
    try:
        uvicorn.run(create_app(ws, worker=worker), host=bind_host, port=bind_port, log_level="warning", access_log=False)
    finally:
        ws.close()


# -- import --------------------------------------------------------------------------------------


def _import(kind: str, file: Path, home: Path | None, rejects: Path | None, as_json: bool) -> None:
    from nudgekit.ingest.bulk import count_rows, file_format

    json_errors(as_json)
    if not file.exists():
        fail(f"{file}: no such file")
    with workspace(home) as ws:
        try:
            total = count_rows(file, file_format(file))
        except ValueError as exc:
            fail(str(exc), 2)
        with progress_bar(f"importing {kind}", total, as_json) as advance:
            runner = ws.import_users if kind == "users" else ws.import_events
            report = runner(file, reject_file=rejects, progress=advance)
    if as_json:
        emit_json(report.as_dict())
        if report.rows and not report.accepted:
            raise typer.Exit(1)
        return
    rate = report.rows / report.seconds if report.seconds else 0
    console.print(
        f"[bold]{report.rows:,}[/] rows in {report.seconds:.1f}s ({rate:,.0f}/s): [green]{report.accepted:,} accepted[/]"
        f" ({report.stored:,} stored, {report.duplicates:,} already there), [red]{report.rejected:,} rejected[/]"
    )
    _print_rejects(report)
    if report.rows and not report.accepted:
        fail("no row was accepted; see the reasons above", 1)


def _print_rejects(report: Any) -> None:
    if report.sample:
        table = Table("row", "field", "reason", title="first rejects")
        for r in report.sample:
            table.add_row(str(r["row"]), r["field"], r["reason"])
        console.print(table)
        console.print(f"every reject, with its row: {report.reject_file}")


@import_app.command("users")
def import_users(
    file: Path, home: HomeOpt = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows (JSONL).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import users: user_id, phone, email, traits, consent_<channel>_<purpose>, push_token ... (docs/ingestion.md)."""
    json_errors(as_json)
    _import("users", file, home, rejects, as_json)


@import_app.command("events")
def import_events(
    file: Path, home: HomeOpt = None,
    rejects: Annotated[Path | None, typer.Option(help="Where to write rejected rows (JSONL).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import events: user_id/anonymous_id, event, timestamp, message_id; other columns become properties."""
    json_errors(as_json)
    _import("events", file, home, rejects, as_json)


# -- users ---------------------------------------------------------------------------------------


@users_app.command("show")
def users_show(
    user_id: str, home: HomeOpt = None,
    events: Annotated[int, typer.Option(min=0, max=10_000, help="How many recent events to show.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """A user's profile, consents (with history), push tokens and recent events."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.profile(user_id, events=events)
        zone = ws.settings.zone
    if found is None:
        fail(f'no user or visitor "{user_id}"')
    if as_json:
        emit_json(found)
        return
    _print_profile(found, zone)


def _when(value: Any, zone: tzinfo) -> str | None:
    """A time as a person in the workspace reads it: local, to the minute."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _print_profile(found: dict[str, Any], zone: tzinfo) -> None:
    p = found["profile"] or {}
    act = found["activity"]
    title = f"[bold]{found['profile_id']}[/]" + ("" if found["identified"] else " (not identified yet)")
    console.print(title)
    rows = [("phone", p.get("phone")), ("email", p.get("email")), ("language", p.get("language")),
            ("time zone", p.get("timezone")), ("kakao reachable", p.get("kakao_reachable"))]
    rows += [(k.replace("_", " "), v) for k, v in (p.get("attribution") or {}).items()]
    rows += [("events", act["events"]), ("first seen", _when(act["first_seen"], zone)),
             ("last seen", _when(act["last_seen"], zone)),
             ("anonymous ids", ", ".join(act["anonymous_ids"]) or None)]
    table = Table(show_header=False, box=None)
    for key, value in rows:
        table.add_row(key, "—" if value is None else str(value))
    console.print(table)
    if p.get("traits"):
        traits = Table("trait", "value", title="traits")
        for key, value in sorted(p["traits"].items()):
            traits.add_row(key, str(value))
        console.print(traits)
    consents = Table("channel", "purpose", "state", f"since ({zone})", "source", title="consent")
    for c in found["consents"]:
        consents.add_row(c["channel"], c["purpose"], "[green]granted[/]" if c["granted"] else "[red]withdrawn[/]",
                         _when(c["at"], zone), c["source"])
    console.print(consents)
    if found["push_tokens"]:
        tokens = Table("platform", "app", "status", "token", title="push tokens")
        for t in found["push_tokens"]:
            tokens.add_row(t["platform"], t["app_id"] or "—", t["status"], t["token"][:16] + "…")
        console.print(tokens)
    _print_lifecycle(found.get("lifecycle"), zone)
    _print_events(found["recent_events"], "recent events", zone)


def _print_lifecycle(found: dict[str, Any] | None, zone: tzinfo) -> None:
    if not found:
        console.print("lifecycle stage: — (run [bold]nudge lifecycle run[/])")
        return
    if found["stage"]:
        lapsing = " [yellow](lapsing: no activity within the usage cycle)[/]" if found["lapsing"] else ""
        console.print(f"lifecycle stage: [bold]{found['stage']}[/] since {_when(found['since'], zone)}{lapsing}"
                      f" (classified as of {found['as_of']})")
    if found["transitions"]:
        table = Table("at", "from", "to", "noticed", "by", title="stage transitions")
        for t in found["transitions"]:
            table.add_row(_when(t["at"], zone), t["from"] or "—", t["to"], _when(t["detected_at"], zone), t["source"])
        console.print(table)


def _print_events(events: list[dict[str, Any]], title: str, zone: tzinfo) -> None:
    table = Table(title=f"{title} (times in {zone})")
    for name in ("time", "type", "event", "who", "properties"):
        table.add_column(name, no_wrap=name == "time")
    for e in events:
        who = e["user_id"] or f"anon:{e['anonymous_id']}"
        props = e["properties"] or ""
        table.add_row(_when(e["timestamp"], zone), e["type"], e["event"] or "", who,
                      props if len(props) <= 48 else props[:47] + "…")
    console.print(table)


# -- events --------------------------------------------------------------------------------------


@events_app.command("tail")
def events_tail(
    home: HomeOpt = None,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, max=100_000, help="How many of the latest events.")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events as they arrive.")] = False,
    name: Annotated[str | None, typer.Option("--event", help="Only events with this name.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The latest events (with --follow, new ones as they arrive; JSON lines with --json)."""
    json_errors(as_json)
    with workspace(home) as ws:
        zone = ws.settings.zone
        ws.flush()  # what a stopped server left in the spool
        rows = ws.events.tail(limit, name=name)
        _show_tail(rows, as_json, follow, zone)
        if follow:
            _follow(ws, rows, name, as_json, zone)


def _follow(ws: Workspace, rows: list[dict[str, Any]], name: str | None, as_json: bool, zone: tzinfo) -> None:
    """Print new events as they arrive, each once.

    :TRICKY: events reach the store in drains, not strictly in received_at order (several servers, a slow
    request), so each poll looks back 30 s and skips ids already printed; a burst larger than a page
    (an import) is read page by page, oldest first, so nothing is skipped.
    """
    newest = max((r["received_at"] for r in rows), default=datetime(2000, 1, 1, tzinfo=UTC))
    shown = {r["event_id"] for r in ws.events.since(newest - timedelta(seconds=30), name=name)}
    while True:
        time.sleep(1.0)
        window, key = newest - timedelta(seconds=30), None
        while True:
            page = ws.events.since(window, PAGE, name=name, key=key)
            fresh = [r for r in page if r["event_id"] not in shown]
            if fresh:
                _show_tail(fresh, as_json, True, zone)
                shown.update(r["event_id"] for r in fresh)
                newest = max(newest, max(r["received_at"] for r in fresh))
            if len(page) < PAGE:
                break
            key = (page[-1]["received_at"], page[-1]["event_id"])
        if len(shown) > 4 * PAGE:  # forget what is long past the look-back window
            keep = ws.events.since(newest - timedelta(seconds=60), 4 * PAGE, name=name)
            shown = {r["event_id"] for r in keep}


PAGE = 10_000


def _show_tail(rows: list[dict[str, Any]], as_json: bool, lines: bool, zone: tzinfo) -> None:
    if as_json and lines:
        for row in rows:
            sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
        sys.stdout.flush()
    elif as_json:
        emit_json(rows)
    else:
        _print_events(rows, "events", zone)


# -- keys ----------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    home: HomeOpt = None,
    scope: Annotated[
        KeyScope, typer.Option(help="write: send events; admin: also read users and change consent.")
    ] = KeyScope.WRITE,
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a key. It is shown once; only its hash is stored."""
    json_errors(as_json)
    with workspace(home) as ws:
        info, key = ws.keys.create(scope, name, ws.clock())
    if as_json:
        emit_json({**info.as_dict(), "key": key})
        return
    console.print(f"[green]{scope.value} key created[/] (id {info.id}): [bold]{key}[/]\nIt is shown once; keep it safe.")


@keys_app.command("list")
def keys_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Keys by id, scope and state (the secrets are never shown again)."""
    json_errors(as_json)
    with workspace(home) as ws:
        keys = ws.keys.list()
    if as_json:
        emit_json([k.as_dict() for k in keys])
        return
    table = Table("id", "scope", "name", "created", "state")
    for k in keys:
        table.add_row(k.id, k.scope.value, k.name or "", k.created_at.isoformat()[:19],
                      f"[red]revoked {k.revoked_at.isoformat()[:19]}[/]" if k.revoked_at else "[green]active[/]")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke a key by id; servers stop accepting it within seconds."""
    json_errors(as_json)
    with workspace(home) as ws:
        info = ws.keys.revoke(key_id, ws.clock())
    if info is None:
        fail(f'no key with id "{key_id}" (nudge keys list shows them)')
    if as_json:
        emit_json(info.as_dict())
        return
    console.print(f"key {key_id} revoked")


# -- consent -------------------------------------------------------------------------------------


@consent_app.command("set")
def consent_set(
    user_id: str,
    channel: Annotated[Channel, typer.Option(help="push, sms, kakao, email or inapp.")],
    purpose: Annotated[Purpose, typer.Option(help="advertising, or night for 21:00–08:00 advertising.")],
    granted: Annotated[bool, typer.Option("--granted/--withdrawn", help="Consent given or withdrawn.")],
    source: Annotated[ConsentSource, typer.Option(help="How the user told us.")] = ConsentSource.ADMIN,
    at: Annotated[datetime | None, typer.Option(
        help="When the user chose (default now; without an offset it is read in the workspace time zone).",
        formats=TIME_FORMATS)] = None,
    evidence: Annotated[str | None, typer.Option(help="Proof: form version, call record id, ...")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a consent change for a user (append-only; the history is the legal proof)."""
    json_errors(as_json)
    with workspace(home) as ws:
        result = ws.set_consent(user_id, channel=channel, purpose=purpose, granted=granted, source=source, at=at,
                                evidence=evidence)
    if as_json:
        emit_json({"recorded": result.recorded, "consent": result.state})
        return
    state = "granted" if result.state["granted"] else "withdrawn"
    note = "recorded" if result.recorded else "unchanged (already in that state then), nothing recorded"
    console.print(f"{user_id}: {channel.value}/{purpose.value} {state} since {result.state['at']} — {note}")


@consent_app.command("link")
def consent_link(
    user_id: str,
    channel: Annotated[Channel, typer.Option(help="The channel the link withdraws.")] = Channel.EMAIL,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The person's own unsubscribe link (needs public_url). Advertising email gets it automatically."""
    json_errors(as_json)
    with workspace(home) as ws:
        link = ws.unsubscribe_link(user_id, channel)
    if as_json:
        emit_json({"user_id": user_id, "channel": channel.value, "link": link})
        return
    console.print(link, soft_wrap=True)


@consent_app.command("import-080")
def consent_import_080(
    path: Annotated[Path, typer.Argument(help="The 080 provider's call records (CSV): caller number and time.",
                                         exists=True, dir_okay=False)],
    phone_column: Annotated[str | None, typer.Option(help="The column with the caller's number (default: found "
                                                     "by name: 수신거부번호, phone, recipientNo, ...).")] = None,
    at_column: Annotated[str | None, typer.Option(help="The column with the time of the call (default: found by "
                                                  "name: 수신거부일시, at, createDate, ...).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw advertising (text messages and Kakao) for every number that called the 080 opt-out line.
    Safe to import the same file again; unreadable rows are listed and the rest imported."""
    json_errors(as_json)
    with workspace(home) as ws, progress_of("080 calls", as_json) as progress:
        result = ws.import_optout_calls(path, phone_column=phone_column, at_column=at_column, progress=progress)
    if as_json:
        emit_json(result)
        return
    console.print(f"{result['calls']:,} calls from {result['numbers']:,} numbers: {result['profiles']:,} people "
                  f"withdrawn, {result['recorded']:,} consent records written")
    _print_unread_rows(result["rejected"])
    if result["rejected"] and not result["calls"]:
        fail("no row could be read; see the reasons above", 1)


def _print_unread_rows(rejects: list[dict[str, Any]]) -> None:
    if not rejects:
        return
    table = Table("line", "column", "why", title=f"{len(rejects):,} rows not imported")
    for r in rejects[:50]:
        table.add_row(str(r["line"]), r["field"], r["reason"])
    console.print(table)
    if len(rejects) > 50:
        console.print(f"... and {len(rejects) - 50:,} more (--json lists them all)")


@consent_app.command("reply")
def consent_reply(
    from_: Annotated[str, typer.Option("--from", help="The number the text message came from.")],
    text: Annotated[str, typer.Option(help='What it said: "수신거부", "STOP" and the like withdraw advertising.')],
    at: Annotated[datetime | None, typer.Option(help="When it was sent (default now).", formats=TIME_FORMATS)] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a text message a person sent back (POST /v1/sms/replies takes them from a provider's webhook)."""
    json_errors(as_json)
    with workspace(home) as ws:
        result = ws.sms_reply(from_, text, at=at)
    if as_json:
        emit_json(result)
        return
    if not result["optout"]:
        console.print(f"{result['from']}: not a refusal, nothing recorded")
        return
    who = ", ".join(result["profiles"]) or "no one yet (kept against the number)"
    console.print(f"{result['from']}: advertising by text message and Kakao withdrawn — {who}")


@consent_app.command("due")
def consent_due(
    within_days: Annotated[int, typer.Option(min=1, help="Result notices for changes recorded this many days "
                                             "back.")] = 30,
    lead_days: Annotated[int, typer.Option(min=0, help="Re-confirmations reaching two years within this many "
                                           "days.")] = 30,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Who is owed a consent notice: the result of a change (due within 14 days) or the two-yearly
    re-confirmation of an advertising consent. `nudge consent notify` sends them."""
    json_errors(as_json)
    with workspace(home) as ws:
        due = ws.consent_due(within_days=within_days, lead_days=lead_days)
        zone = ws.settings.zone
    if as_json:
        emit_json(due)
        return
    if not due:
        console.print("no consent notice is due")
        return
    table = Table("user", "notice", f"due by ({zone})", "about", title=f"{len(due):,} consent notices due")
    for n in due:
        by = datetime.fromisoformat(n["due_by"]).astimezone(zone).strftime("%Y-%m-%d")
        about = "; ".join(f"{c['channel']}/{c['purpose']} {'granted' if c['granted'] else 'withdrawn'} "
                          f"{datetime.fromisoformat(c['at']).astimezone(zone):%Y-%m-%d}" for c in n["changes"])
        table.add_row(n["user_id"] or n["profile_id"], n["kind"], f"[red]{by} overdue[/]" if n["overdue"] else by,
                      about)
    console.print(table)


@consent_app.command("notify")
def consent_notify(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go, send nothing.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many notices.")] = None,
    within_days: Annotated[int, typer.Option(min=1)] = 30,
    lead_days: Annotated[int, typer.Option(min=0)] = 30,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the consent notices due (informational, no advertising): each by the channel the change was
    about when it reaches the person, else email, text message, push."""
    json_errors(as_json)
    with workspace(home) as ws, progress_of("consent notices", as_json) as progress:
        run = ws.send_consent_notices(dry_run=dry_run, limit=limit, within_days=within_days, lead_days=lead_days,
                                      progress=progress)
    if as_json:
        emit_json(run)
        return
    verb = "would go" if dry_run else "sent"
    console.print(f"{len(run['sent']):,} notices {verb}, {len(run['unreachable']):,} people no channel reaches, "
                  f"{len(run['skipped']):,} taken by another run")
    for n in run["sent"][:5 if not dry_run else 20]:
        console.print(f"[bold]{n['user_id'] or n['profile_id']}[/] by {n['channel']}: {escape(n['title'])}")
        if dry_run:
            console.print(escape(n["text"]), style="dim")
    for n in run["unreachable"][:20]:
        why = ", ".join(f"{t['channel']}: {t['reason']}" for t in n["tried"])
        console.print(f"[yellow]{n['user_id'] or n['profile_id']}[/] not reached ({why})")


# -- lifecycle ------------------------------------------------------------------------------------

DateOpt = Annotated[datetime | None, typer.Option(
    "--as-of", help="Classify as of the end of this day (workspace time zone; default today).", formats=["%Y-%m-%d"])]


@lifecycle_app.command("run")
def lifecycle_run(home: HomeOpt = None, as_of: DateOpt = None, as_json: JsonOpt = False) -> None:
    """Classify every user, store stage and since, and record every transition."""
    json_errors(as_json)
    with workspace(home) as ws:
        with progress_steps(as_json) as step:
            result = ws.run_lifecycle(as_of.date() if as_of else None, step=step)
    if as_json:
        emit_json(result.as_dict())
        return
    console.print(f"[bold]{result.users:,}[/] people classified as of {result.as_of} on {result.engine}"
                  f" in {sum(result.seconds.values()):.1f}s; {result.changed:,} changed stage"
                  + (f", {result.removed:,} merged into others" if result.removed else ""))
    table = Table("stage", "people", "share", title="stages")
    for stage, count in result.by_stage.items():
        table.add_row(stage, f"{count:,}", f"{count / result.users:.1%}" if result.users else "—")
    console.print(table)
    if result.transitions:
        moves = Table("from", "to", "people", title="transitions recorded")
        for pair, count in sorted(result.transitions.items(), key=lambda kv: -kv[1]):
            old, new = pair.split(" -> ")
            moves.add_row(old, new, f"{count:,}")
        console.print(moves)


@lifecycle_app.command("suggest")
def lifecycle_suggest(
    home: HomeOpt = None,
    days: Annotated[int, typer.Option(min=14, max=730, help="Look back this many days.")] = 180,
    as_json: JsonOpt = False,
) -> None:
    """Propose the usage cycle and churn window from the gaps between users' active days."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.suggest_lifecycle(days)
        current = ws.settings.lifecycle
    data = found.as_dict()
    if as_json:
        emit_json(data)
        return
    if not found.returns:
        fail("no user was active on two different days in the look-back period; nothing to learn from yet")
    table = Table("gap (days)", "returns", "share", "cumulative", "", title=(
        f"gaps between active days: {found.returns:,} returns by {found.people:,} people, last {days} days"))
    width = max(r["share"] for r in data["distribution"])
    for r in data["distribution"][:45]:
        bar = "█" * max(1, round(30 * r["share"] / width)) if r["returns"] else ""
        table.add_row(str(r["gap_days"]), f"{r['returns']:,}", f"{r['share']:.1%}", f"{r['cumulative']:.1%}", bar)
    console.print(table)
    if len(data["distribution"]) > 45:
        console.print(f"… {len(data['distribution']) - 45} longer gaps not shown (--json has them all)")
    console.print(f"suggested: usage_cycle_days = [bold]{found.usage_cycle_days}[/] (75% of returns within), "
                  f"churn_days = [bold]{found.churn_days}[/] (90% of returns within)")
    console.print(f"now in nudge.toml \\[lifecycle]: usage_cycle_days = {current.usage_cycle_days}, "
                  f"churn_days = {current.churn_days}")


@lifecycle_app.command("report")
def lifecycle_report(
    home: HomeOpt = None,
    weeks: Annotated[int, typer.Option(min=1, max=104, help="How many weeks back.")] = 12,
    date_from: Annotated[datetime | None, typer.Option("--from", help="Transition matrix: first day (default 4 weeks ago).",
                                                       formats=["%Y-%m-%d"])] = None,
    date_to: Annotated[datetime | None, typer.Option("--to", help="Transition matrix: last day (default today).",
                                                     formats=["%Y-%m-%d"])] = None,
    html: Annotated[Path | None, typer.Option(help="Also write a chart to this HTML file (self-contained).")] = None,
    as_of: Annotated[datetime | None, typer.Option(
        "--as-of", help="The last week ends on this day (workspace time zone; default today).",
        formats=["%Y-%m-%d"])] = None,
    as_json: JsonOpt = False,
) -> None:
    """People per stage per week, and the transition matrix between two days."""
    from nudgekit.lifecycle.report import STAGES, write_html

    json_errors(as_json)
    with workspace(home) as ws:
        with progress_steps(as_json) as step:
            report = ws.lifecycle_report(weeks=weeks, matrix_from=date_from.date() if date_from else None,
                                         matrix_to=date_to.date() if date_to else None,
                                         as_of=as_of.date() if as_of else None, step=step)
        brand = ws.settings.brand
    if html:
        write_html(report, html, f"{brand}: lifecycle")
    if as_json:
        emit_json({**report.as_dict(), "html": str(html) if html else None})
        return
    table = Table("week ending", *STAGES, title="people per stage")
    for i, week in enumerate(report.weeks):
        table.add_row(week.isoformat(), *[f"{report.counts[s][i]:,}" for s in STAGES])
    console.print(table)
    matrix = Table("from \\ to", *STAGES, title=f"transitions {report.matrix_from} → {report.matrix_to}")
    for source, row in report.matrix.items():
        matrix.add_row(source, *[f"{row[s]:,}" for s in STAGES])
    console.print(matrix)
    if html:
        console.print(f"chart: {html}")


# -- segments -------------------------------------------------------------------------------------


def _segment(file: Path) -> Any:
    from nudgekit.segments.model import SegmentError, load

    try:
        return load(file)
    except SegmentError as exc:
        fail(str(exc), 2)


def _evaluated(home: Path | None, as_json: bool, segment: Any, run: Callable[[Workspace], Any]) -> Any:
    """Run a segment evaluation with a spinner; a segment the data cannot answer is a clear exit 2."""
    with workspace(home) as ws, progress_steps(as_json) as step:
        step(f"evaluating {segment.name}")
        return run(ws)


@segment_app.command("preview")
def segment_preview(file: Path, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Size, reach per channel (with and without advertising consent), stages and a sample of members."""
    json_errors(as_json)
    segment = _segment(file)
    found = _evaluated(home, as_json, segment, lambda ws: ws.segment_preview(segment))
    if as_json:
        emit_json(found.as_dict())
        return
    share = f"{found.size / found.everyone:.1%}" if found.everyone else "—"
    console.print(f"[bold]{segment.name}[/]: [bold]{found.size:,}[/] people ({share} of {found.everyone:,})")
    reach = Table("channel", "reachable", "with advertising consent", title="reach")
    for channel, counts in found.reach.items():
        reach.add_row(channel, f"{counts['reachable']:,}", f"{counts['with_advertising_consent']:,}")
    console.print(reach)
    if found.by_stage:
        console.print("by stage: " + ", ".join(f"{k} {v:,}" for k, v in found.by_stage.items()))
    if found.sample:
        sample = Table("person", "user id", "stage", title="sample of members")
        for r in found.sample:
            sample.add_row(r["person_id"], r["user_id"] or "—", r["stage"] or "—")
        console.print(sample)


@segment_app.command("export")
def segment_export(
    file: Path,
    out: Annotated[Path, typer.Option("--out", help="users.csv or users.parquet")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write every member (person_id, user_id, anonymous_id, stage) to CSV or Parquet."""
    from nudgekit.segments.audience import export

    json_errors(as_json)
    segment = _segment(file)
    if out.suffix.lower() not in (".csv", ".parquet"):
        fail(f"{out}: the file must end in .csv or .parquet", 2)
    table = _evaluated(home, as_json, segment, lambda ws: ws.segment_members(segment))
    kind = export(table, out)
    if as_json:
        emit_json({"segment": segment.name, "members": table.num_rows, "file": str(out), "format": kind})
        return
    console.print(f"{table.num_rows:,} members of {segment.name} written to {out}")


@segment_app.command("check")
def segment_check(file: Path, user_id: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Is one user a member right now? (the single-user check journeys use)"""
    json_errors(as_json)
    segment = _segment(file)
    with workspace(home) as ws:
        started = time.perf_counter()
        member = ws.is_member(segment, user_id)
        seconds = time.perf_counter() - started
    if as_json:
        emit_json({"segment": segment.name, "user_id": user_id, "member": member, "seconds": seconds})
        return
    console.print(f"{user_id} {'[green]is[/]' if member else '[red]is not[/]'} in {segment.name} "
                  f"({seconds * 1000:.0f} ms)")


def _list_change(name: str, file: Path, home: Path | None, as_json: bool, remove: bool) -> None:
    from nudgekit.segments.lists import ListError

    json_errors(as_json)
    with workspace(home) as ws:
        try:
            change = ws.change_list(name, file, remove=remove)
        except ListError as exc:
            fail(str(exc), 2)
    if as_json:
        emit_json(change.as_dict())
        return
    verb = f"{change.removed:,} removed" if remove else f"{change.added:,} added"
    console.print(f"list {name}: {verb}, {change.unchanged:,} unchanged, {change.members:,} members now")
    if change.unknown:
        console.print(f"[yellow]{len(change.unknown):,} ids are not known users and were not added[/]: "
                      + ", ".join(change.unknown[:10]) + (" …" if len(change.unknown) > 10 else ""))


@list_app.command("add")
def list_add(name: str, file: Path, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Add the users in FILE (CSV with a user_id column, or Parquet) to list NAME (created if new)."""
    _list_change(name, file, home, as_json, remove=False)


@list_app.command("remove")
def list_remove(name: str, file: Path, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Remove the users in FILE from list NAME."""
    _list_change(name, file, home, as_json, remove=True)


@list_app.command("show")
def list_show(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every list and how many members it has."""
    from nudgekit.segments.lists import all_lists

    json_errors(as_json)
    with workspace(home) as ws:
        found = all_lists(ws.engine)
    if as_json:
        emit_json(found)
        return
    table = Table("list", "members", "updated")
    for r in found:
        table.add_row(r["list"], f"{r['members']:,}", r["updated_at"][:16])
    console.print(table)


@contextmanager
def progress_steps(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner naming the step a long command is on."""
    if quiet:
        yield lambda label: None
        return
    with err.status("starting") as status:
        yield lambda label: status.update(label)


ChannelOpt = Annotated[MessageChannel, typer.Option(help="Channel: " + ", ".join(c.value for c in MessageChannel))]
TextOpt = Annotated[str | None, typer.Option(help="The message text ('-' reads it from standard input).")]
SubjectOpt = Annotated[str | None, typer.Option(help="Subject (LMS / MMS, email).")]
ImageOpt = Annotated[list[str] | None, typer.Option(
    help="MMS: an image file (repeat for several); push, in-app, card: an https:// URL.")]
TitleOpt = Annotated[str | None, typer.Option(help="Push, in-app, card: the title.")]
LinkOpt = Annotated[str | None, typer.Option(help="Push, in-app, card: the deep link opened on tap.")]
LayoutOpt = Annotated[str | None, typer.Option(help="In-app: modal, banner, fullscreen or html (with --html).")]
PinnedOpt = Annotated[bool, typer.Option("--pinned", help="Card: keep it at the top of the feed.")]
SilentOpt = Annotated[bool, typer.Option("--silent", help="Push: a background push that shows nothing.")]
AdOpt = Annotated[bool, typer.Option("--ad", help="Advertising (광고성 정보).")]
FromOpt = Annotated[str | None, typer.Option("--from", help="Sender number (SMS) or address (email); default [sender].")]
TypeOpt = Annotated[SmsType | None, typer.Option("--type", help="Force SMS, LMS or MMS.")]
HtmlOpt = Annotated[Path | None, typer.Option(help="Email: an HTML file for the HTML part; in-app: the html layout.")]
UnsubscribeOpt = Annotated[str | None, typer.Option(help="Email: the one-click unsubscribe link (https).")]
UrlOpt = Annotated[str | None, typer.Option(help="Webhook: the address to POST to.")]
DataOpt = Annotated[str | None, typer.Option(help="Webhook: the JSON object to send; push: string key/values.")]
TemplateOpt = Annotated[str | None, typer.Option(help="AlimTalk: the template code (nudge kakao templates list).")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="AlimTalk: a template variable as name=value (repeat).")]
ButtonOpt = Annotated[list[str] | None, typer.Option(
    "--button", help='Brand Message: a button as JSON, e.g. \'{"type":"WL","name":"보기","url_mobile":"https://…"}\'; '
    'in-app: \'{"label":"혜택 알림 받기","action":"consent"}\' (link, dismiss, consent, review).')]
FormatOpt = Annotated[BrandFormat | None, typer.Option("--format", help="Brand Message: text, image or wide.")]
TargetingOpt = Annotated[Targeting | None, typer.Option(
    help="Brand Message: I (channel friends), M or N (consented non-friends; qualified channels only).")]
NoFallbackOpt = Annotated[bool, typer.Option("--no-fallback", help="Kakao: no text message when Kakao cannot deliver.")]
FallbackTextOpt = Annotated[str | None, typer.Option(help="Kakao: the fallback text message's own text.")]
UserOpt = Annotated[str | None, typer.Option(
    help="A user id (or anonymous id): run the policy chain for them (consent, night rule, caps ...).")]
AtOpt = Annotated[str | None, typer.Option(
    help="With --user: the moment to judge, ISO 8601 (2026-11-25T21:30, or with an offset: …+09:00); a time "
         "without an offset is the workspace's time zone. Default: now.")]
CampaignOpt = Annotated[str | None, typer.Option(help="With --user: the campaign it belongs to (caps, budget, explain).")]
PriorityOpt = Annotated[int, typer.Option(help="With --user: the campaign's priority when caps are contested.")]
NightOpt = Annotated[str | None, typer.Option(
    help="With --user: at night without night consent, defer (wait until 08:00 local) or drop. Default [policy].")]
WindowOpt = Annotated[str | None, typer.Option(help="With --user: the campaign's send window, e.g. 10:00-20:00 local.")]
OncePerOpt = Annotated[float | None, typer.Option(help="With --user: at most one of the campaign's messages per "
                                                      "person within this many hours.")]
BudgetOpt = Annotated[float | None, typer.Option(help="With --user and --campaign: the campaign's budget in KRW.")]
GoodsOpt = Annotated[list[str] | None, typer.Option(
    "--goods", help="With --user: a kind of goods the ad is for (repeat), for the purchase exception.")]
POLICY_OPTIONS = ("campaign", "priority", "night", "window", "once_per_hours", "budget_krw", "goods")
OPTION_OF = {"images": "--image", "image": "--image", "sender_number": "--from", "from_email": "--from",
             "type": "--type", "unsubscribe_url": "--unsubscribe-url", "variables": "--var", "buttons": "--button",
             "fallback": "--no-fallback"}


def _kakao_fields(template: str | None, var: list[str] | None, button: list[str] | None,
                  brand_format: BrandFormat | None, targeting: Targeting | None, no_fallback: bool,
                  fallback_text: str | None) -> dict[str, Any]:
    variables: dict[str, str] = {}
    for pair in var or []:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            fail(f"--var: write name=value, not {pair!r}", 2)
        variables[name.strip()] = value
    buttons = []
    for raw in button or []:
        try:
            buttons.append(json.loads(raw))
        except json.JSONDecodeError as exc:
            fail(f"--button: not JSON ({exc.msg} at character {exc.pos}): {raw}", 2)
    fields = {"template": template, "variables": variables or None, "buttons": buttons or None,
              "format": brand_format, "targeting": targeting, "fallback": False if no_fallback else None,
              "fallback_text": fallback_text}
    return {k: v for k, v in fields.items() if v is not None}


def _message_fields(channel: MessageChannel, *, text: str | None, subject: str | None, image: list[str] | None,
                    ad: bool, sender: str | None, sms_type: SmsType | None, html: Path | None,
                    unsubscribe_url: str | None, url: str | None, data: str | None, title: str | None = None,
                    link: str | None = None, silent: bool = False, layout: str | None = None,
                    pinned: bool = False) -> dict[str, Any]:
    """The message's fields from the options given (options the channel has no use for are refused)."""
    if text == "-":
        text = sys.stdin.read()
    fields: dict[str, Any] = {"text": text, "subject": subject, "ad": ad or None, "type": sms_type,
                              "unsubscribe_url": unsubscribe_url, "url": url, "title": title, "link": link,
                              "silent": silent or None, "layout": layout, "pinned": pinned or None}
    if channel in (MessageChannel.PUSH, MessageChannel.BRAND_MESSAGE, MessageChannel.INAPP, MessageChannel.CARD):
        if image and len(image) > 1:
            fail(f"--image: a {channel.value.replace('_', ' ')} carries one image", 2)
        image_field = image[0] if image else None
        fields["image"] = Path(image_field) if image_field and channel == MessageChannel.BRAND_MESSAGE else image_field
    else:
        fields["images"] = [Path(i) for i in image] if image else None
    fields["from_email" if channel == MessageChannel.EMAIL else "sender_number"] = sender
    if html is not None:
        try:
            fields["html"] = html.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--html: cannot read {html}: {exc}", 2)
    if data is not None:
        try:
            fields["data"] = json.loads(data)
        except json.JSONDecodeError as exc:
            fail(f"--data: not JSON ({exc.msg} at character {exc.pos})", 2)
    return {k: v for k, v in fields.items() if v is not None}


def _command_fields(channel: MessageChannel, options: dict[str, Any]) -> dict[str, Any]:
    """The message's fields from `message check` / `message send` options (the two take the same ones)."""
    fields = _message_fields(channel, **{k: options[k] for k in (
        "text", "subject", "image", "ad", "sender", "sms_type", "html", "unsubscribe_url", "url", "data", "title",
        "link", "silent", "layout", "pinned")})
    fields.update(_kakao_fields(*(options[k] for k in ("template", "var", "button", "brand_format", "targeting",
                                                       "no_fallback", "fallback_text"))))
    return fields


def _option_error(exc: FieldError) -> None:
    where = OPTION_OF.get(exc.field, "--" + exc.field.replace("_", "-"))
    fail(f"{where}: {exc.reason}", 2)


@message_app.command("check")
def message_check(
    channel: ChannelOpt,
    text: TextOpt = None,
    subject: SubjectOpt = None,
    image: ImageOpt = None,
    ad: AdOpt = False,
    sender: FromOpt = None,
    sms_type: TypeOpt = None,
    html: HtmlOpt = None,
    unsubscribe_url: UnsubscribeOpt = None,
    url: UrlOpt = None,
    data: DataOpt = None,
    title: TitleOpt = None,
    link: LinkOpt = None,
    silent: SilentOpt = False,
    layout: LayoutOpt = None,
    pinned: PinnedOpt = False,
    template: TemplateOpt = None,
    var: VarOpt = None,
    button: ButtonOpt = None,
    brand_format: FormatOpt = None,
    targeting: TargetingOpt = None,
    no_fallback: NoFallbackOpt = False,
    fallback_text: FallbackTextOpt = None,
    user: UserOpt = None,
    at: AtOpt = None,
    campaign: CampaignOpt = None,
    priority: PriorityOpt = 0,
    night: NightOpt = None,
    window: WindowOpt = None,
    once_per_hours: OncePerOpt = None,
    budget_krw: BudgetOpt = None,
    goods: GoodsOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a message without sending it: the type chosen, sizes against limits, price, and every reason
    it would be refused (exit code 1 when there is one). With --user, also every policy rule's decision for
    that user at that moment (--at): consent, suppression, control group, label, night, quiet hours, caps,
    budget — nothing is claimed or recorded."""
    json_errors(as_json)
    options = dict(locals())
    fields = _command_fields(channel, options)
    if user is None and (at is not None or any(options[k] for k in POLICY_OPTIONS if k != "priority")):
        fail("--at, --campaign and the other policy options need --user", 2)
    with workspace(home) as ws:
        try:
            if user is None:
                checked = ws.check_message(channel, **fields)
            else:
                ruling = ws.check_for(channel, user, at=_moment(at, ws), **_policy_options(options), **fields)
        except FieldError as exc:
            _option_error(exc)
    if user is not None:
        _show_ruling(ruling, as_json, ws.settings.zone)
        if not ruling.sends:
            raise typer.Exit(1)
        return
    if as_json:
        emit_json(checked.as_dict())
    else:
        _print_checked(checked)
    if not checked.ok:
        raise typer.Exit(1)


def _policy_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(options[k] or ()) if k == "goods" else options[k]) for k in POLICY_OPTIONS}


def _moment(value: str | None, ws: Workspace) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        fail(f"--at: {value!r} is not a date and time; write it as 2026-11-25T21:30 (optionally +09:00)", 2)
    return moment if moment.tzinfo else moment.replace(tzinfo=ws.settings.zone)


def _show_ruling(ruling: Any, as_json: bool, zone: tzinfo) -> None:
    if as_json:
        emit_json({**ruling.as_dict(), "check": ruling.candidate.checked.as_dict()})
        return
    _print_checked(ruling.candidate.checked)
    console.print(f"policy: {_verdict(ruling.action.value, ruling.reason, ruling.until, zone)}")
    _print_decisions([d.as_dict() for d in ruling.decisions])
    text = getattr(ruling.candidate.message, "text", None)
    if ruling.sends and text:
        console.print(f"goes out as:\n{escape(text)}")


def _verdict(action: str, reason: str, until: datetime | None, zone: tzinfo) -> str:
    """The chain's answer, coloured: `defer (night) until 2026-11-26 08:00 KST`."""
    colour = {"send": "green", "defer": "yellow", "skip": "red"}[action]
    when = f" until {until.astimezone(zone):%Y-%m-%d %H:%M %Z}" if until else ""
    return f"[{colour}]{action}[/] ({reason}){when}"


def _print_decisions(decisions: list[dict[str, Any]]) -> None:
    table = Table("rule", "decision", "reason", "why")
    marks = {"send": "[green]send[/]", "defer": "[yellow]defer[/]", "skip": "[red]skip[/]"}
    for d in decisions:
        mark = "[yellow]send ![/]" if d.get("warning") else marks[d["action"]]
        table.add_row(d["rule"], mark, d["reason"], escape(d["en"]))
    console.print(table)


@message_app.command("send")
def message_send(
    channel: ChannelOpt,
    to: Annotated[str | None, typer.Option(
        help="A test send to this address: phone number, email address, push token, URL, or (in-app, card) a "
             "user id or anon:<anonymousId>. No consent checks.")] = None,
    text: TextOpt = None,
    subject: SubjectOpt = None,
    image: ImageOpt = None,
    ad: AdOpt = False,
    sender: FromOpt = None,
    sms_type: TypeOpt = None,
    html: HtmlOpt = None,
    unsubscribe_url: UnsubscribeOpt = None,
    url: UrlOpt = None,
    data: DataOpt = None,
    title: TitleOpt = None,
    link: LinkOpt = None,
    silent: SilentOpt = False,
    layout: LayoutOpt = None,
    pinned: PinnedOpt = False,
    template: TemplateOpt = None,
    var: VarOpt = None,
    button: ButtonOpt = None,
    brand_format: FormatOpt = None,
    targeting: TargetingOpt = None,
    no_fallback: NoFallbackOpt = False,
    fallback_text: FallbackTextOpt = None,
    user: UserOpt = None,
    campaign: CampaignOpt = None,
    priority: PriorityOpt = 0,
    night: NightOpt = None,
    window: WindowOpt = None,
    once_per_hours: OncePerOpt = None,
    budget_krw: BudgetOpt = None,
    goods: GoodsOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send one message. With --to: a test send to the address you name, with no consent checks or retries
    (for your own phone or inbox). With --user: through the policy chain (consent, control group, label,
    night, quiet hours, caps, budget; recorded for `nudge explain`) to the user's own address. The channel's
    provider is set in [providers] of nudge.toml (the sandbox only records). Exit code 1 when not accepted."""
    json_errors(as_json)
    if (to is None) == (user is None):
        fail("name the recipient with --to (a test send) or --user (through the policy chain), not both", 2)
    options = dict(locals())
    if to is not None and any(options[k] for k in POLICY_OPTIONS if k != "priority"):
        fail("--campaign and the other policy options go with --user", 2)
    fields = _command_fields(channel, options)
    with workspace(home) as ws:
        try:
            if user is not None:
                person_send = ws.send(channel, user, **_policy_options(options), **fields)
            else:
                result = ws.send_now(channel, to, **fields)  # type: ignore[arg-type]
        except FieldError as exc:
            _option_error(exc)
        except ValueError as exc:
            fail(str(exc), 2)
    if user is not None:
        _show_person_send(person_send, as_json, ws.settings.zone)
        return
    if as_json:
        emit_json(result.as_dict())
    else:
        _print_send(result)
        if result.fallback is not None:
            console.print("fallback text message:", end=" ")
            _print_send(result.fallback)
    if not result.sent:
        raise typer.Exit(1)


def _show_person_send(done: Any, as_json: bool, zone: tzinfo) -> None:
    if as_json:
        emit_json(done.as_dict())
    else:
        ruling = done.ruling
        console.print(f"policy: {_verdict(ruling.action.value, ruling.reason, ruling.until, zone)}")
        if not ruling.sends:
            _print_decisions([d.as_dict() for d in ruling.decisions])
            if ruling.until:
                console.print("[yellow]![/] not held: `nudge message send` sends now or not at all; `nudge send queue` "
                              "and POST /api/v1/messages keep a deferred message in the outbox until then")
        for result in done.results:
            _print_send(result)
    if not done.sent:
        raise typer.Exit(1)


@app.command()
def explain(
    user: Annotated[str | None, typer.Option(help="The user id (or anonymous id).")] = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's messages to the user.")] = None,
    message: Annotated[str | None, typer.Option("--message", help="One message id instead.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many passes to show, newest first.")] = 10,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why a user did or did not get a message: every policy rule's recorded decision, newest pass first
    (each time the message was queued or handed to a provider)."""
    json_errors(as_json)
    if user is None and message is None:
        fail("name --user (with or without --campaign) or --message", 2)
    with workspace(home) as ws:
        try:
            passes = ws.explain(user=user, campaign=campaign, message_id=message, limit=limit)
        except FieldError as exc:
            fail(f"--{exc.field}: {exc.reason}", 2)
        zone = ws.settings.zone
    if as_json:
        emit_json(passes)
        return
    if not passes:
        who = " and ".join(x for x in (f"user {user}" if user else "", f"campaign {campaign}" if campaign else "",
                                       f"message {message}" if message else "") if x)
        console.print(f"no recorded policy decisions for {escape(who)}: nothing was queued or sent for it")
        return
    for p in passes:
        at = datetime.fromisoformat(p["at"]).astimezone(zone)
        until = datetime.fromisoformat(p["until"]) if p["until"] else None
        console.print(f"[bold]{at:%Y-%m-%d %H:%M:%S %Z}[/] {p['stage']} — message {escape(p['message_id'])}"
                      + (f" (campaign {escape(p['campaign'])})" if p["campaign"] else "")
                      + f", {p['channel']} {p['purpose']}: {_verdict(p['action'], p['reason'], until, zone)}"
                      + (" [dim]test user[/]" if p["test_user"] else ""))
        _print_decisions(p["decisions"])


def _print_send(result: Any) -> None:
    if result.outcome is None:
        if not result.checked.ok:
            _print_checked(result.checked)
        if result.fallback is None:
            console.print(f"[red]not sent:[/] {escape(result.note or '')}")
        else:
            console.print(f"[yellow]![/] {escape(result.note or '')}")
        return
    o = result.outcome
    colour = "green" if o.sent else "red"
    console.print(f"[{colour}]{o.verdict.value}[/] by {result.provider}"
                  + (f" (id {escape(o.provider_message_id)})" if o.provider_message_id else "")
                  + (f": {escape(o.code or '')} {escape(o.detail)}" if not o.sent else ""))
    if result.note:
        console.print(f"[yellow]![/] {escape(result.note)}")


def _print_checked(checked: Any) -> None:
    kind = f" {checked.type}" if checked.type else ""
    verdict = "[green]can be sent[/]" if checked.ok else f"[red]would be refused ({len(checked.problems)})[/]"
    console.print(f"{checked.channel.value}{kind}: {verdict}, {checked.cost_krw:g} KRW a message")
    table = Table("part", "size", "limit")
    for name, size in checked.sizes.items():
        cell = f"{size.value:,} {size.unit}"
        table.add_row(name, f"[red]{cell}[/]" if size.value > size.limit else cell, f"{size.limit:,} {size.unit}")
    if checked.sizes:
        console.print(table)
    if "text" in checked.rendered:
        console.print(f"reads: {escape(checked.rendered['text'])}")
    if checked.fallback is not None:
        fb = checked.fallback
        console.print(f"fallback: {fb.checked.type}, {fb.checked.cost_krw:g} KRW — {escape(fb.message.text)}")
    for mark, items in (("[red]✗[/]", checked.problems), ("[yellow]![/]", checked.warnings)):
        for p in items:
            console.print(f"{mark} {p.field}: {escape(p.en)}\n  {escape(p.ko)}")


SENDER_LABELS = {"name": "sender name (전송자 명칭)", "sms_numbers": "sender numbers (발신번호)",
                 "optout_080": "free opt-out number (080)", "kakao_sender_key": "Kakao sender key",
                 "kakao_channel": "Kakao channel", "kakao_targeting": "Brand Message targeting",
                 "email_from": "email from", "email_reply_to": "email reply-to"}


@sender_app.command("show")
def sender_show(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """The workspace's sender settings ([sender] in nudge.toml)."""
    json_errors(as_json)
    with workspace(home) as ws:
        _print_sender(ws.settings.sender.model_dump(), as_json)


@sender_app.command("set")
def sender_set(
    name: Annotated[str | None, typer.Option(help="Sender name (전송자 명칭) advertising carries.")] = None,
    sms_number: Annotated[list[str] | None, typer.Option(help="Add a registered sender number (repeat).")] = None,
    remove_sms_number: Annotated[list[str] | None, typer.Option(help="Remove a sender number (repeat).")] = None,
    optout_080: Annotated[str | None, typer.Option("--optout-080", help="Free 080 opt-out number ('' clears).")] = None,
    kakao_sender_key: Annotated[str | None, typer.Option(help="Kakao channel sender key / profile id.")] = None,
    kakao_channel: Annotated[str | None, typer.Option(help="Kakao channel id, e.g. @brand.")] = None,
    kakao_targeting: Annotated[list[Targeting] | None, typer.Option(
        help="Brand Message targeting Kakao allows the channel (repeat; M and N need Kakao's approval).")] = None,
    email_from: Annotated[str | None, typer.Option(help="Email From address.")] = None,
    email_reply_to: Annotated[str | None, typer.Option(help="Email Reply-To address.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change sender settings; written to [sender] in nudge.toml (comments and other settings kept)."""
    json_errors(as_json)
    given = {"name": name, "optout_080": optout_080, "kakao_sender_key": kakao_sender_key,
             "kakao_channel": kakao_channel, "email_from": email_from, "email_reply_to": email_reply_to,
             "kakao_targeting": [t.value for t in kakao_targeting] if kakao_targeting else None}
    with workspace(home) as ws:
        try:
            sender = ws.set_sender(add_sms_numbers=sms_number or [], remove_sms_numbers=remove_sms_number or [],
                                   **{k: v for k, v in given.items() if v is not None})
        except FieldError as exc:
            fail(str(exc), 2)
        _print_sender(sender.model_dump(), as_json)


def _print_sender(values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(values)
        return
    from nudgekit.channels.numbers import spelled

    table = Table("setting", "value", title="sender")
    for key, label in SENDER_LABELS.items():
        value = values.get(key)
        if key == "sms_numbers":
            value = ", ".join(spelled(n) for n in value) if value else None
        elif key == "kakao_targeting":
            value = ", ".join(value)
        elif key == "optout_080" and value:
            value = spelled(value)
        table.add_row(label, escape(str(value)) if value else "[dim]not set[/]")
    console.print(table)


outbox_app = typer.Typer(help="What the sandbox provider recorded instead of sending.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("show")
def outbox_show(
    channel: Annotated[MessageChannel | None, typer.Option(help="Only this channel.")] = None,
    to: Annotated[str | None, typer.Option(help="Only messages to this recipient.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages the sandbox recorded: exactly what would have gone out, newest first."""
    json_errors(as_json)
    with workspace(home) as ws:
        rows = ws.outbox(channel=channel, to=to, limit=limit)
        zone = ws.settings.timezone
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("The sandbox has recorded no messages yet.")
        return
    from zoneinfo import ZoneInfo

    table = Table("#", "recorded", "channel", "to", "message", title="sandbox outbox (not sent)")
    for row in rows:
        at = datetime.fromisoformat(row["recorded_at"]).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
        kind = row["channel"] + (f" {row['type']}" if row["type"] else "")
        body = row["message"]
        shown = {**body, "text": body.get("text") or body.get("rendered", {}).get("text")}
        summary = " · ".join(str(shown[k]) for k in ("subject", "title", "text", "url") if shown.get(k))
        summary = " ".join(summary.split())
        table.add_row(str(row["id"]), at, kind, escape(row["to"]),
                      escape(summary[:80] + ("…" if len(summary) > 80 else "")))
    console.print(table)


inbox_app = typer.Typer(help="In-app messages and content cards waiting for a person.", no_args_is_help=True)
app.add_typer(inbox_app, name="inbox")


@inbox_app.command("show")
def inbox_show(
    user: Annotated[str | None, typer.Option("--user", help="The user id.")] = None,
    anonymous_id: Annotated[str | None, typer.Option(help="The visitor's anonymous id.")] = None,
    cards: Annotated[bool, typer.Option("--cards", help="Content cards instead of in-app messages.")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the app gets from GET /v1/inapp (or /v1/cards) for this person now."""
    json_errors(as_json)
    channel = MessageChannel.CARD if cards else MessageChannel.INAPP
    with workspace(home) as ws:
        try:
            items = ws.inbox(channel, user_id=user, anonymous_id=anonymous_id)
        except FieldError as exc:
            fail(f"--{'user' if exc.field == 'userId' else 'anonymous-id'}: {exc.reason}", 2)
        zone = ws.settings.zone
    if as_json:
        emit_json(items)
        return
    if not items:
        console.print(f"No {'content cards' if cards else 'in-app messages'} waiting.")
        return
    table = Table("id", "layout" if not cards else "state", "title / text", "buttons", "expires",
                  title="content cards" if cards else "in-app messages (until shown)")
    for item in items:
        state = ("pinned " if item.get("pinned") else "") + ("clicked" if item.get("clicked") else
                                                             "viewed" if item.get("viewed") else "new")
        words = " · ".join(str(item[k]) for k in ("title", "text") if item.get(k)) or "(html)"
        buttons = ", ".join(f"{b['label']} ({b['action']})" for b in item.get("buttons", []))
        expires = datetime.fromisoformat(item["expires_at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M")
        table.add_row(escape(item["id"]), state if cards else item.get("layout", ""), escape(words[:60]),
                      escape(buttons), expires)
    console.print(table)


receipts_app = typer.Typer(help="Delivery receipts from the vendors that report later.", no_args_is_help=True)
app.add_typer(receipts_app, name="receipts")


@receipts_app.command("check")
def receipts_check(
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask Solapi and NHN Cloud what became of the messages they accepted: delivered or failed; numbers that
    do not exist are suppressed, people not on KakaoTalk remembered, failed messages refunded."""
    json_errors(as_json)
    with workspace(home) as ws, progress_bar("asking for receipts", None, as_json) as advance:
        found = ws.check_receipts(progress=advance)
    if as_json:
        emit_json(found)
        return
    for name, why in found["unavailable"].items():
        err.print(f"[yellow]{name}: no receipts now ({escape(why)})[/]")
    if not found["checked"]:
        console.print("No accepted message is waiting for a receipt: nothing is waiting.")
        return
    if found["closed"]:
        table = Table("message", "channel", "to", "result", "code", "fallback", "learned", title="receipts")
        for c in found["closed"]:
            colour = {"delivered": "green", "failed": "red"}.get(c["delivery"], "yellow")
            table.add_row(escape(c["message_id"]), c["channel"], escape(c["recipient"]),
                          f"[{colour}]{c['delivery']}[/]", escape(f"{c['code'] or ''} {c['detail']}".strip()[:60]),
                          c["fallback"] or "", escape(c["learned"] or ("refunded" if c["refunded"] else "")))
        console.print(table)
    console.print(f"{len(found['closed']):,} of {found['checked']:,} settled; {found['waiting']:,} still on their way.")


email_app = typer.Typer(help="Email: bounce reports and complaints mailed back to [smtp] return_path.",
                        no_args_is_help=True)
app.add_typer(email_app, name="email")


@email_app.command("bounces")
def email_bounces(
    paths: Annotated[list[Path], typer.Argument(help="Maildir folders, mbox files, .eml files or folders of them.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read bounce reports (DSN) and spam complaints (ARF): a hard bounce or a complaint suppresses the
    address, a message that bounced is recorded as failed. Reading the same mail again changes nothing."""
    from nudgekit.channels.email import bounces

    json_errors(as_json)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}", 2)
    with workspace(home) as ws, progress_bar("reading mail", None, as_json) as advance:
        try:
            found = ws.read_bounces(bounces.mails(paths), progress=advance)
        except OSError as exc:
            fail(f"cannot read the mail: {exc}", 2)
    if as_json:
        emit_json(found)
        return
    if found["reports"]:
        table = Table("recipient", "kind", "action", "status", "diagnostic", "result", title="bounce reports")
        for r in found["reports"]:
            result = r["learned"] or ("recorded" if r["acted"] else "")
            table.add_row(escape(r["recipient"]), r["kind"], r["action"], r["status"] or "",
                          escape((r["diagnostic"] or "")[:60]), escape(result))
        console.print(table)
    console.print(f"{found['mails']:,} mails: {len(found['reports']):,} reports, "
                  f"{len(found['suppressed']):,} addresses suppressed, {len(found['not_reports']):,} not reports.")


kakao_app = typer.Typer(help="Kakao: the AlimTalk template registry.", no_args_is_help=True)
templates_app = typer.Typer(help="AlimTalk templates and their review status.", no_args_is_help=True)
kakao_app.add_typer(templates_app, name="templates")
app.add_typer(kakao_app, name="kakao")
STATUS_COLOUR = {"approved": "green", "rejected": "red", "dormant": "red"}


@templates_app.command("list")
def templates_list(
    status: Annotated[TemplateStatus | None, typer.Option(help="Only templates with this status.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every AlimTalk template the workspace knows, with its status and variables."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.kakao_templates(status)
    if as_json:
        emit_json([t.as_dict() for t in found])
        return
    if not found:
        console.print("No templates yet: `nudge kakao templates sync` fetches them from your provider.")
        return
    table = Table("code", "name", "status", "variables", "text", "from")
    for t in found:
        colour = STATUS_COLOUR.get(t.status.value, "yellow")
        status_cell = f"[{colour}]{t.status.value}[/]" + (f"\n{escape(t.comment)}" if t.comment else "")
        text = " ".join(t.content.split())
        table.add_row(escape(t.code), escape(t.name), status_cell, escape(", ".join(t.variables)),
                      escape(text[:60] + ("…" if len(text) > 60 else "")), t.source)
    console.print(table)


@templates_app.command("add")
def templates_add(
    code: str,
    text: Annotated[str, typer.Option(help="The template text with #{variables} ('-' reads standard input).")],
    name: Annotated[str | None, typer.Option(help="A name for people (default the code).")] = None,
    button: ButtonOpt = None,
    status: Annotated[TemplateStatus, typer.Option(help="Its review status (the sandbox trusts what you say).")]
    = TemplateStatus.PENDING,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or replace a template by hand — for the sandbox, or before your provider has it. A sync with a
    real provider replaces what the provider knows."""
    json_errors(as_json)
    buttons = _kakao_fields(None, None, button, None, None, False, None).get("buttons", [])
    with workspace(home) as ws:
        try:
            template = ws.add_kakao_template(code, text=sys.stdin.read() if text == "-" else text, name=name,
                                             buttons=buttons, status=status)
        except FieldError as exc:
            fail(f"{OPTION_OF.get(exc.field, '--' + exc.field.split('.')[0])}: {exc.reason}", 2)
    if as_json:
        emit_json(template.as_dict())
    else:
        console.print(f"template {escape(code)} saved ({template.status.value}); variables: "
                      f"{escape(', '.join(template.variables)) or 'none'}")


@templates_app.command("remove")
def templates_remove(code: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Forget a template."""
    json_errors(as_json)
    with workspace(home) as ws:
        removed = ws.remove_kakao_template(code)
    if not removed:
        fail(f"there is no template {code!r}", 1)
    if as_json:
        emit_json({"code": code, "removed": True})
    else:
        console.print(f"template {escape(code)} removed")


@templates_app.command("sync")
def templates_sync(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Fetch every AlimTalk template from the provider [providers] alimtalk names, with Kakao's review
    status; new ones are added, changed ones updated, deleted ones removed."""
    json_errors(as_json)
    with workspace(home) as ws:
        try:
            with progress_steps(as_json) as step:
                step("fetching templates")
                report = ws.sync_kakao_templates()
        except ValueError as exc:
            fail(str(exc), 2)
    if as_json:
        emit_json(report.as_dict())
        return
    console.print(f"from {report.source}: {len(report.added)} added, {len(report.changed)} changed, "
                  f"{len(report.removed)} removed, {report.unchanged} unchanged")
    for line in (*[f"+ {c}" for c in report.added], *[f"~ {c}" for c in report.changed],
                 *[f"- {c}" for c in report.removed]):
        console.print(f"  {escape(line)}")


balance_app = typer.Typer(help="Prepaid message points that sends reserve from.", invoke_without_command=True)
app.add_typer(balance_app, name="balance")


@balance_app.callback()
def balance_show(
    ctx: typer.Context,
    history: Annotated[int, typer.Option(min=0, max=10_000, help="Also list the latest N ledger entries.")] = 0,
    provider: Annotated[bool, typer.Option("--provider", help="Also ask the text-message provider (Solapi).")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The prepaid balance: what is left, topped up and spent (nudge balance add AMOUNT tops it up)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = home
        return
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.balance(history)
        if provider:
            try:
                found["provider_account"] = ws.provider_balance()
            except ValueError as exc:
                fail(str(exc), 2)
    if as_json:
        emit_json(found)
        return
    if found["prepaid"]:
        console.print(f"[bold]{found['balance_krw']:,.2f} KRW[/] left · topped up {found['topped_up_krw']:,.2f} · "
                      f"spent {found['spent_krw']:,.2f} on {found['messages']:,} messages")
    else:
        console.print("No prepaid balance: sends are not limited (your provider bills them). "
                      "`nudge balance add AMOUNT` turns it on.")
    account = found.get("provider_account")
    if provider:
        console.print(f"{account['provider']}: {account['balance']:,.0f} KRW cash, {account['point']:,.0f} points"
                      if account else "the text-message provider does not report a balance")
    if history:
        table = Table("at", "kind", "KRW", "message", "channel", "note")
        for row in found["history"]:
            table.add_row(row["at"][:19], row["kind"], f"{row['amount_krw']:+,.2f}", escape(row["message_id"] or ""),
                          row["channel"] or "", escape(row["note"] or ""))
        console.print(table)


@balance_app.command("add")
def balance_add(
    ctx: typer.Context,
    amount: Annotated[float, typer.Argument(help="KRW to add.")],
    note: Annotated[str | None, typer.Option(help="Why (an invoice number, ...).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top up the prepaid balance; the first top-up turns it on, and sends stop when it runs out."""
    json_errors(as_json)
    with workspace(home or ctx.obj) as ws:
        try:
            found = ws.top_up(amount, note)
        except FieldError as exc:
            fail(f"AMOUNT: {exc.reason}", 2)
    if as_json:
        emit_json(found)
    else:
        console.print(f"[bold]{found['balance_krw']:,.2f} KRW[/] left")


# -- delivery ------------------------------------------------------------------------------------

template_app = typer.Typer(help="Message templates and snippets (Jinja, rendered for each person), every version "
                                  "kept.", no_args_is_help=True)
app.add_typer(template_app, name="template")


def _template_files(paths: list[Path]) -> list[Path]:
    """The files named, a folder's .yaml/.yml/.json files (snippets first: templates include them)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in (".yaml", ".yml", ".json"))
        elif path.exists():
            found.append(path)
        else:
            fail(f"{path}: no such file or folder", 2)
    return found


@template_app.command("save")
def template_save(
    paths: Annotated[list[Path], typer.Argument(help="Template files (YAML or JSON) or folders of them.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Save templates and snippets: each file whose content changed becomes a new version (the old ones are
    kept). Every text must compile, name only saved snippets and fit its channel; a file that does not is
    reported and the others are still saved (exit code 1)."""
    from nudgekit.templates import store

    json_errors(as_json)
    files = _template_files(paths)
    results: list[dict[str, Any]] = []
    with workspace(home) as ws:
        specs = []
        for path in files:
            try:
                specs.append((path, store.read_file(path)))
            except FieldError as exc:
                results.append({"file": str(path), "error": exc.reason})
        specs.sort(key=lambda item: item[1].kind != "snippet")
        for path, spec in specs:
            try:
                results.append({"file": str(path), **ws.save_template(spec).as_dict()})
            except FieldError as exc:
                results.append({"file": str(path), "name": spec.name, "error": f"{exc.field}: {exc.reason}"})
    if as_json:
        emit_json(results)
    else:
        for r in results:
            if "error" in r:
                console.print(f"[red]✗[/] {escape(r['file'])}: {escape(r['error'])}")
            else:
                what = f"version {r['version']}" if r["changed"] else f"unchanged (version {r['version']})"
                console.print(f"[green]✓[/] {escape(r['name'])} ({r['kind']}{', ' + r['channel'] if r['channel'] else ''}): "
                              f"{what}")
    if any("error" in r for r in results):
        raise typer.Exit(1)


@template_app.command("list")
def template_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every saved template and snippet at its latest version."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.templates()
    if as_json:
        emit_json(found)
        return
    table = Table("name", "kind", "channel", "version", "languages", "saved", "note")
    for t in found:
        table.add_row(escape(t["name"]), t["kind"], t["channel"] or "", str(t["version"]), ", ".join(t["languages"]),
                      t["saved_at"][:16].replace("T", " "), escape(t["note"] or ""))
    console.print(table if found else "no templates yet: write one (docs/templates.md) and `nudge template save`")


@template_app.command("show")
def template_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="This version (default: the latest).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A template's content as saved (its latest version, or --version), and its versions."""
    json_errors(as_json)
    with workspace(home) as ws:
        versions = ws.template_history(name)
    chosen = next((v for v in versions if v["version"] == version), None) if version else versions[-1]
    if chosen is None:
        fail(f"{name!r} has no version {version} (the latest is {versions[-1]['version']})", 2)
    if as_json:
        emit_json({"name": name, **chosen, "versions": [v["version"] for v in versions]})
        return
    note = f" — {escape(chosen['note'])}" if chosen["note"] else ""
    console.print(f"[bold]{escape(name)}[/] version {chosen['version']} of {len(versions)}, saved "
                  f"{chosen['saved_at'][:16].replace('T', ' ')}{note}")
    console.print(escape(_yaml(chosen["body"])), end="", soft_wrap=True)


coupon_app = typer.Typer(help="Coupon pools: codes loaded in advance, one per message ({{ coupon.POOL }}).",
                         no_args_is_help=True)
app.add_typer(coupon_app, name="coupon")


@coupon_app.command("load")
def coupon_load(
    pool: Annotated[str, typer.Argument(help="The pool's name, as templates write it: coupon.NAME.")],
    file: Annotated[Path, typer.Argument(help="A text or CSV file, one code per line (first column).")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add codes to a pool (made by its first load). Codes the pool has already are left alone; bad lines
    are reported and the rest are loaded (exit code 1 when any line was bad)."""
    json_errors(as_json)
    with workspace(home) as ws:
        loaded = ws.load_coupons(pool, file)
    if as_json:
        emit_json(loaded.as_dict())
    else:
        console.print(f"[green]✓[/] {escape(loaded.pool)}: {loaded.added:,} codes added, {loaded.already:,} it had "
                      f"already, {loaded.repeated:,} repeated in the file; {loaded.free:,} free now")
        for bad in loaded.bad[:20]:
            console.print(f"[red]✗[/] line {bad['line']}: {escape(bad['code'])!r}: {bad['why']}")
        if len(loaded.bad) > 20:
            console.print(f"[red]✗[/] … and {len(loaded.bad) - 20:,} more bad lines (--json lists them all)")
    if loaded.bad:
        raise typer.Exit(1)


@coupon_app.command("list")
def coupon_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every pool: its codes, how many are free and taken."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.coupon_pools()
        zone = ws.settings.zone
    if as_json:
        emit_json(found)
        return
    table = Table("pool", "codes", "free", "taken", "last loaded", "last taken")
    for p in found:
        table.add_row(escape(p["pool"]), f"{p['codes']:,}", f"[red]{p['free']:,}[/]" if not p["free"] else
                      f"{p['free']:,}", f"{p['taken']:,}", _when(p["last_loaded"], zone) or "",
                      _when(p["last_taken"], zone) or "")
    console.print(table if found else "no coupon pools yet: nudge coupon load POOL FILE")


@coupon_app.command("find")
def coupon_find(code: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Who holds a code: the message and person it was given to (in every pool that has it)."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.find_coupon(code)
        zone = ws.settings.zone
    if as_json:
        emit_json(found)
    elif not found:
        console.print(f"no pool has the code {escape(code)!r}")
    for c in [] if as_json else found:
        held = (f"given to {escape(c['profile_id'] or '?')} in message {escape(c['message_id'])} at "
                f"{_when(c['taken_at'], zone)}" if c["message_id"] else "free")
        console.print(f"{escape(c['pool'])}: {escape(c['code'])} — {held}")
    if not found:
        raise typer.Exit(1)


def _yaml(data: Any) -> str:
    """YAML as a person writes it: texts of several lines as blocks (`|`), long lines not folded."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, allow_unicode=True, sort_keys=False, width=10_000)


@app.command("preview")
def preview(
    template: Annotated[str | None, typer.Argument(
        help="A saved template's name, or a template file (previewed before saving).")] = None,
    user: Annotated[str | None, typer.Option(help="The user id (or anonymous id) to render it for.")] = None,
    sample: Annotated[int | None, typer.Option(min=1, max=100, help="Render for this many people picked at "
                                                                    "random instead.")] = None,
    segment: Annotated[Path | None, typer.Option(help="With --sample: pick among this segment's members "
                                                      "(YAML or JSON).")] = None,
    seed: Annotated[int | None, typer.Option(help="With --sample: the same seed picks the same people.")] = None,
    channel: Annotated[MessageChannel | None, typer.Option(help="The channel (checked against the template's).")] = None,
    version: Annotated[int | None, typer.Option(help="A saved template's version (default: the latest).")] = None,
    text: Annotated[str | None, typer.Option(help="Instead of a template: this text, on --channel.")] = None,
    event: Annotated[str | None, typer.Option(help='The triggering event as JSON, e.g. \'{"event": "Product '
                                                   'Viewed", "properties": {"name": "운동화"}}\'.')] = None,
    at: AtOpt = None,
    campaign: Annotated[str | None, typer.Option(help="The campaign it is for (links' utm_campaign).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Exactly what a user would receive: the template rendered for them, then the (광고) label and opt-out
    line, the SMS/LMS choice, its size and cost, and what the policy chain would do now (or --at). Nothing
    is claimed, recorded or sent. Exit code 1 when it cannot be rendered or would be refused."""
    json_errors(as_json)
    if (user is None) == (sample is None):
        fail("name --user, or --sample N for random people", 2)
    if (template is None) == (text is None):
        fail("name a template (or a template file), or give --text with --channel", 2)
    if segment is not None and sample is None:
        fail("--segment goes with --sample", 2)
    happened = None
    if event is not None:
        try:
            happened = json.loads(event)
        except json.JSONDecodeError as exc:
            fail(f"--event: not JSON ({exc.msg} at character {exc.pos})", 2)
    chosen = _segment(segment) if segment is not None else None
    with workspace(home) as ws:
        asked: dict[str, Any] = {"template": template, "template_version": version, "channel": channel,
                                 "event": happened, "at": _moment(at, ws), "campaign": campaign}
        if text is not None:
            asked["text"] = text
        try:
            if sample is not None:
                with progress_steps(as_json) as step:
                    step("rendering a sample")
                    found = ws.preview_sample(sample, segment=chosen, seed=seed, **asked)
            else:
                assert user is not None
                found = ws.preview(user, **asked)
        except FieldError as exc:
            fail(f"{exc.field}: {exc.reason}", 2)
        zone = ws.settings.zone
    if as_json:
        emit_json(found)
    elif sample is not None:
        _print_sample(found)
    else:
        _print_preview(found, zone)
    previews = found["previews"] if sample is not None else [found]
    if any(p["rendered"] is None or not p["check"]["ok"] for p in previews):
        raise typer.Exit(1)


def _print_preview(found: dict[str, Any], zone: tzinfo) -> None:
    source = f" — {escape(found['template'])}" if found["template"] else ""
    snippets = ", ".join(f"{n}@{v}" for n, v in sorted(found["snippets"].items()))
    console.print(f"[bold]{escape(found['user'])}[/]{source} ({found['channel']}, {found['language']})"
                  + (f" [dim]snippets: {escape(snippets)}[/]" if snippets else ""))
    if found["rendered"] is None:
        u = found["unrendered"]
        console.print(f"[red]skipped ({u['reason']})[/]: {escape((u['field'] + ': ') if u['field'] else '')}"
                      f"{escape(u['detail'])}")
        return
    check = found["check"]
    console.print(f"{check['channel']}{' ' + check['type'] if check['type'] else ''}, {check['cost_krw']:g} KRW"
                  + "".join(f", {k} {v['value']:,}/{v['limit']:,} {v['unit']}" for k, v in check["sizes"].items()))
    table = Table("field", "goes out as", show_lines=True)
    for name, value in found["goes_out"].items():
        table.add_row(name, escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)))
    console.print(table)
    for mark, items in (("[red]✗[/]", check["problems"]), ("[yellow]![/]", check["warnings"])):
        for p in items:
            console.print(f"{mark} {p['field']}: {escape(p['en'])}")
    policy = found["policy"]
    until = datetime.fromisoformat(policy["until"]) if policy["until"] else None
    console.print(f"policy now: {_verdict(policy['action'], policy['reason'], until, zone)}")
    if found.get("coupons"):
        shown = ", ".join(f"{pool} {code}" for pool, code in sorted(found["coupons"].items()))
        console.print(f"[dim]coupon codes: {escape(shown)} (the next free ones; a preview takes none)[/]")


def _print_sample(found: dict[str, Any]) -> None:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(found["outcomes"].items()))
    console.print(f"{found['sampled']} of {found['population']:,} people: {outcomes}")
    table = Table("user", "lang", "type", "bytes", "KRW", "goes out as / why not", show_lines=True)
    for p in found["previews"]:
        if p["rendered"] is None:
            u = p["unrendered"]
            table.add_row(escape(p["user"]), p["language"], "", "", "",
                          f"[red]{u['reason']}[/] {escape((u['field'] + ': ') if u['field'] else '')}{escape(u['detail'])}")
            continue
        check = p["check"]
        size = next(iter(check["sizes"].values()), None)
        body = p["goes_out"].get("text") or p["goes_out"].get("title") or ""
        table.add_row(escape(p["user"]), p["language"], check["type"] or check["channel"],
                      f"{size['value']:,}" if size else "", f"{check['cost_krw']:g}", escape(str(body)))
    console.print(table)


send_app = typer.Typer(help="Campaign sending through the outbox: queue, status, pause, resume, cancel.",
                       no_args_is_help=True)
app.add_typer(send_app, name="send")


def _message_file(path: Path) -> dict[str, Any]:
    """A message as a YAML or JSON mapping: channel, the channel's fields, and campaign options."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = orjson.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        fail(f"{path}: no such file", 2)
    except (UnicodeDecodeError, orjson.JSONDecodeError, yaml.YAMLError) as exc:
        fail(f"{path}: cannot be read: {exc}", 2)
    if not isinstance(data, dict) or "channel" not in data:
        fail(f"{path}: a message is a mapping with a channel and the channel's fields (text, ad, ...)", 2)
    return data


def _user_ids(path: Path) -> Iterator[str]:
    """User ids from a file: one per line, or a CSV whose header has user_id (or userId)."""
    import csv

    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
        header = [h.strip() for h in next(csv.reader([first]))] if first.strip() else []
        column = next((header.index(n) for n in ("user_id", "userId", "userid") if n in header), None)
        if column is None and first.strip():
            yield first.strip()
        for row in csv.reader(handle) if column is not None else ([line] for line in handle):
            value = row[column if column is not None else 0].strip() if row else ""
            if value:
                yield value


@send_app.command("queue")
def send_queue(
    campaign: Annotated[str, typer.Argument(help="The campaign's name (its messages are keyed by it).")],
    message: Annotated[Path | None, typer.Option(help="The message: YAML or JSON with channel, fields and "
                                                      "options (the texts may be templates).")] = None,
    template: Annotated[str | None, typer.Option(help="A saved template instead (nudge template list); its "
                                                      "latest version unless --template-version.")] = None,
    template_version: Annotated[int | None, typer.Option(help="The saved template's version.")] = None,
    users: Annotated[Path | None, typer.Option(help="User ids: one per line, or a CSV with user_id.")] = None,
    segment: Annotated[Path | None, typer.Option(help="Everyone in this segment (YAML or JSON) instead.")] = None,
    per_minute: Annotated[float | None, typer.Option(help="Delivery speed: at most this many a minute.")] = None,
    occurrence: Annotated[str, typer.Option(help="Queue the campaign again for the same people under a new "
                                                 "occurrence (e.g. a date); the same one adds nothing.")] = "1",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put one message per person in the outbox, each through the policy chain (skips and deferrals are
    recorded with their reason); `nudge worker` or `nudge serve` sends them. Queueing again adds nothing."""
    json_errors(as_json)
    if (users is None) == (segment is None):
        fail("name the audience with --users FILE or --segment FILE", 2)
    if (message is None) == (template is None):
        fail("name the message with --message FILE or --template NAME", 2)
    if message is not None:
        fields = _message_file(message)
        channel = fields.pop("channel")
    else:
        fields = {"from_template": template, "template_version": template_version}
    chosen = _segment(segment) if segment is not None else None
    with workspace(home) as ws:
        if template is not None:
            channel = next((t["channel"] for t in ws.templates() if t["name"] == template), None)
            if channel is None:
                fail(f"--template: no template called {template!r} (nudge template list)", 2)
        if chosen is not None:
            with progress_steps(as_json) as step:
                step(f"evaluating {chosen.name}")
                people = [str(p) for p in ws.segment_members(chosen).column("person_id").to_pylist()]
        else:
            assert users is not None
            if not users.exists():
                fail(f"{users}: no such file", 2)
            people = list(_user_ids(users))
        with progress_bar(f"queueing {campaign}", len(people), as_json) as advance:
            try:
                queued = ws.queue(campaign, channel, people, occurrence=occurrence, per_minute=per_minute,
                                  progress=advance, **fields)
            except FieldError as exc:
                fail(f"{exc.field}: {exc.reason}", 2)
    result = queued.as_dict()
    if as_json:
        emit_json(result)
        return
    console.print(f"[bold]{campaign}[/]: {result['queued']} queued, {result['deferred']} deferred, "
                  f"{sum(result['skipped'].values())} skipped, {result['existing']} already in the outbox")
    for reason, count in sorted(result["skipped"].items(), key=lambda kv: -kv[1]):
        console.print(f"  skipped {count} — {reason}")


def _print_status(found: dict[str, Any]) -> None:
    counts = found["counts"]
    console.print(f"[bold]{escape(found['campaign'])}[/] — {found['state']}"
                  + (f", {found['per_minute']:g} a minute" if found["per_minute"] else "")
                  + f": {found['total']} messages, {found['remaining']} still to go, {found['cost_krw']:,.0f} KRW")
    table = Table("state", "messages", "why")
    for state in ("queued", "deferred", "claimed", "handing", "sent", "skipped", "failed", "in_doubt", "cancelled"):
        if counts.get(state):
            why = ", ".join(f"{r} {n}" for r, n in sorted(found.get(state, {}).items(), key=lambda kv: -kv[1])) \
                if isinstance(found.get(state), dict) else ""
            table.add_row(state, str(counts[state]), escape(why))
    console.print(table)
    if found["receipts"]:
        console.print("receipts: " + ", ".join(f"{k} {v}" for k, v in sorted(found["receipts"].items())))


@send_app.command("status")
def send_status(
    campaign: str,
    watch: Annotated[bool, typer.Option(help="Follow it live until nothing is left to send (Ctrl-C stops).")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a campaign's messages stand: queued, sent, deferred, skipped by reason, failed, in doubt, cost."""
    import time

    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.send_status(campaign)
        if watch and not as_json:
            with _bar() as bar:
                task = bar.add_task(f"sending {campaign}", total=found["total"])
                while True:
                    done = found["total"] - found["remaining"]
                    bar.update(task, completed=done, total=found["total"])
                    if found["remaining"] == 0 or found["state"] != "running":
                        break
                    time.sleep(1)
                    found = ws.send_status(campaign)
    if as_json:
        emit_json(found)
    else:
        _print_status(found)


def _control(campaign: str, action: str, home: Path | None, as_json: bool) -> None:
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.control_send(campaign, action)
    if as_json:
        emit_json(found)
        return
    if action == "cancel":
        console.print(f"cancelled {found['cancelled_now']} messages still waiting")
    _print_status(found)


@send_app.command("pause")
def send_pause(campaign: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Stop handing a campaign's messages to providers (those mid-call finish) until `nudge send resume`."""
    _control(campaign, "pause", home, as_json)


@send_app.command("resume")
def send_resume(campaign: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Let workers take a paused campaign's messages again."""
    _control(campaign, "resume", home, as_json)


@send_app.command("cancel")
def send_cancel(campaign: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel what is left of a campaign: waiting messages are cancelled and give back their cap slots."""
    _control(campaign, "cancel", home, as_json)


@send_app.command("list")
def send_list(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's messages.")] = None,
    state: Annotated[str | None, typer.Option(help="Only messages in this state (sent, failed, in_doubt ...).")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's messages.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Outbox messages, most recently changed first, with their state and reason."""
    json_errors(as_json)
    with workspace(home) as ws:
        rows = ws.outbox_messages(campaign=campaign, state=state, user=user, limit=limit)
    if as_json:
        emit_json(rows)
        return
    table = Table("message", "campaign", "user", "channel", "state", "reason", "attempts", "provider")
    for r in rows:
        table.add_row(r["message_id"], escape(r["campaign"] or ""), escape(r["user"] or ""), r["channel"], r["state"],
                      escape(r["reason"] or ""), str(r["attempts"]), r["provider"] or "")
    console.print(table)


campaign_app = typer.Typer(help="Applied campaigns: list, show, and launch the runs that are due (tick).",
                            no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")


@contextmanager
def progress_tasks(quiet: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Bars for work done in parts, each started with its label and size."""
    if quiet:
        yield lambda label, total: (lambda n: None)
        return
    with _bar() as bar:
        def start(label: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(label, total=total)
            return lambda n: bar.advance(task, n)

        yield start


def _print_run(run: dict[str, Any]) -> None:
    skipped = sum(run["skipped"].values())
    console.print(f"  audience {run['audience']:,} · queued {run['queued']:,} · deferred "
                  f"{sum(run['deferred'].values()):,} · skipped {skipped:,} (control group {run['control']:,})"
                  + (f" · already in the outbox {run['existing']:,}" if run["existing"] else "")
                  + f" · cost {run['cost_krw']:,.0f} KRW")
    if run["first_send"]:
        console.print(f"  sends from {run['first_send'][:16]} to {run['last_send'][:16]} UTC")
    table = Table("channel", "queued", "deferred", "skipped", box=None, padding=(0, 2))
    for channel, counts in run["channels"].items():
        table.add_row(channel, f"{counts.get('queued', 0):,}", f"{counts.get('deferred', 0):,}",
                      f"{counts.get('skipped', 0):,}")
    console.print(table)
    if run["variants"]:
        variants = Table("variant", "queued", "deferred", "skipped", "control", box=None, padding=(0, 2))
        for name, counts in run["variants"].items():
            variants.add_row(name, *(f"{counts.get(k, 0):,}" for k in ("queued", "deferred", "skipped", "control")))
        console.print(variants)
    for reason, count in sorted({**run["skipped"], **run["deferred"]}.items(), key=lambda kv: -kv[1]):
        verb = "deferred" if reason in run["deferred"] else "skipped"
        console.print(f"  {verb} {count:,} — {reason}" + (f": {escape(run['examples'][reason])}"
                                                          if reason in run["examples"] else ""))
    for sample in run["samples"]:
        said = " / ".join(str(v) for k, v in sample["fields"].items() if isinstance(v, str) and k != "link")
        console.print(f"  [dim]{sample['channel']}{' ' + sample['variant'] if sample['variant'] else ''} to "
                      f"{escape(sample['user'] or '')}:[/] {escape(said[:160])}")


def _print_plan(result: dict[str, Any], applying: bool) -> None:
    marks = {"ok": "[green]✓[/]", "warning": "[yellow]![/]", "error": "[red]✗[/]"}
    for entry in result["campaigns"]:
        title = escape(entry["name"] or entry["file"])
        if entry["error"]:
            console.print(f"[bold red]✗ {title}[/] — cannot be read:\n  {escape(entry['error'])}")
            continue
        if entry["kind"] == "journey":
            when = "journey"
        else:
            schedule = entry["schedule"]
            when = {"now": "once, at apply", "at": "once", "cron": "recurring"}[schedule["type"]]
            if schedule["next_runs"]:
                when += " · next " + ", ".join(r["wall"] or r["launch"][:16] for r in schedule["next_runs"])
                when += " (each person's local time)" if schedule["local_time"] else " UTC"
        console.print(f"[bold]{title}[/] — {entry['change']}" + (f" (live: version {entry['live_version']})"
                                                                 if entry["live_version"] else "")
                      + f" · {entry['purpose']} · {when}")
        if entry["note"]:
            console.print(f"  {escape(entry['note'])}")
        if entry.get("journey"):
            _print_journey_plan(entry["journey"])
        if entry.get("notices"):
            _print_notices(entry["notices"], "would go")
        if entry["run"]:
            if entry.get("journey"):
                console.print("  [bold]sample sends[/] (every send step, for a sample of people):")
            if entry.get("rest"):
                console.print("  [bold]canary[/] (first):")
            _print_run(entry["run"])
        if entry.get("rest"):
            console.print("  [bold]the rest[/], after the canary's wait if its guardrails hold:")
            _print_run(entry["rest"])
        for check in entry["preflight"]:
            if check["level"] != "ok" or entry["blocked"]:
                console.print(f"  {marks[check['level']]} {check['check']}: {escape(check['message'])}")
        applied = entry.get("applied")
        if applied:
            console.print(f"  [green]applied[/] as version {applied['version']} ({applied['state']})"
                          + (f", launched {len(applied['runs'])} run(s)" if applied.get("runs") else "")
                          + (f", {applied['entered']['entered']:,} entered" if applied.get("entered") else ""))
            if applied["state"] == "awaiting_approval":
                console.print(f"  [yellow]waits for approval[/]: one of the approvers runs nudge campaign approve "
                              f"{escape(entry['name'])} --version {applied['version']}")
        elif applying and entry["change"] != "unchanged":
            console.print("  [red]not applied[/]: fix what preflight says, then apply again")
    if result["ignored"]:
        console.print(f"[dim]{len(result['ignored'])} file(s) are not campaigns (no kind: campaign, journey or "
                      "notice) and were left alone[/]")


def _print_notices(run: dict[str, Any], verb: str) -> None:
    """A notice file's run (campaigns/notice.py): how many notices, by which channel, who cannot be reached."""
    console.print(f"  [bold]{run['sent']:,}[/] notice(s) {verb} of {run['due']:,} due"
                  + "".join(f" · {kind} {n:,}" for kind, n in sorted(run["kinds"].items()))
                  + (f" · {run['overdue']:,} past the law's date" if run["overdue"] else "")
                  + (f" · {run['left_for_next_run']:,} left for the next run" if run["left_for_next_run"] else ""))
    if run["channels"]:
        console.print("  by " + ", ".join(f"{c} {n:,}" for c, n in sorted(run["channels"].items(), key=lambda kv: -kv[1])))
    if run["unreachable"]:
        console.print(f"  [yellow]{run['unreachable']:,} not reached[/]: "
                      + ", ".join(f"{escape(why)} {n:,}" for why, n in list(run["why_unreachable"].items())[:4]))
    for sample in run["samples"]:
        console.print(f"  [dim]{sample['kind']} by {sample['channel']} to {escape(sample['user'])}:[/] "
                      f"{escape(sample['title'])}")
        console.print(escape(sample["text"]), style="dim")


def _print_journey_plan(plan: dict[str, Any]) -> None:
    console.print(f"  enters {escape(plan['entry'])}")
    console.print(f"  {escape(plan['reentry'])} {escape(plan['exits'])}")
    for line in plan["steps"]:
        console.print(f"    {escape(line)}")
    if plan["recent_triggers"] is not None:
        console.print(f"  {plan['recent_triggers']:,} people triggered it in the last 7 days")
    if plan["entering_now"]:
        console.print(f"  {plan['entering_now']['entered']:,} enter as it goes live")
    if plan["in_flight"]:
        console.print("  in flight, finishing on the version they entered: "
                      + ", ".join(f"{n:,} on version {v}" for v, n in sorted(plan["in_flight"].items())))


@app.command("plan")
def plan_command(
    directory: Annotated[Path, typer.Argument(help="A folder of campaign files (YAML or JSON), or one file.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What `nudge apply` would change and send — audience, channels, skips by reason, cost, send times, sample
    messages, preflight — worked out on a throw-away copy: nothing is written or sent. Exit 1 when a campaign
    cannot be read or preflight would stop it."""
    json_errors(as_json)
    with workspace(home) as ws, progress_tasks(as_json) as progress:
        result = ws.plan_campaigns(directory, progress=progress)
    if as_json:
        emit_json(result)
    else:
        _print_plan(result, applying=False)
    if result["blocked"]:
        raise typer.Exit(1)


@app.command("apply")
def apply_command(
    directory: Annotated[Path, typer.Argument(help="A folder of campaign files (YAML or JSON), or one file.")],
    applied_by: Annotated[str | None, typer.Option("--as", envvar="NUDGE_USER",
                                                   help="Who is applying (default: your login name).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the folder's new and changed campaigns live and launch what is due now; a campaign preflight stops
    is left as it was (exit 1), the others go ahead. Unchanged campaigns are left alone."""
    import getpass

    json_errors(as_json)
    with workspace(home) as ws, progress_tasks(as_json) as progress:
        result = ws.apply_campaigns(directory, applied_by=applied_by or getpass.getuser(), progress=progress)
    if as_json:
        emit_json(result)
    else:
        _print_plan(result, applying=True)
    if result["blocked"]:
        raise typer.Exit(1)


@campaign_app.command("list")
def campaign_list(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every applied campaign: live version, state and next run."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.campaigns()
    if as_json:
        emit_json(found)
        return
    table = Table("campaign", "version", "state", "next run (UTC)")
    for c in found:
        table.add_row(escape(c["name"]), str(c["version"]), c["state"], (c["next_run_at"] or "")[:16])
    console.print(table)


@campaign_app.command("show")
def campaign_show(name: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A campaign's live version, every version applied (who, when) and its runs."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.campaign(name)
    if as_json:
        emit_json(found)
        return
    console.print(f"[bold]{escape(name)}[/] — version {found['version']}, {found['state']}"
                  + (f", next run {found['next_run_at'][:16]} UTC" if found["next_run_at"] else ""))
    versions = Table("version", "applied", "by", "approved by", "from")
    for v in found["versions"]:
        versions.add_row(str(v["version"]), v["applied_at"][:16], escape(v["applied_by"] or ""),
                         escape(v["approved_by"] or ""), escape(v["source"] or ""))
    console.print(versions)
    if found.get("journey") is not None:
        standing = found["journey"]
        console.print(f"{standing['in_flight']:,} in the journey, {standing['finished']:,} finished"
                      + "".join(f", {n:,} left ({escape(why)})" for why, n in sorted(standing["exited"].items())))
        steps = Table("step", "people")
        for step, count in sorted(standing["steps"].items()):
            steps.add_row(escape(step), f"{count:,}")
        console.print(steps)
        return
    if found["kind"] == "notice":
        runs = Table("occurrence", "version", "state", "launch (UTC)", "due", "sent", "not reached")
        for r in found["runs"]:
            result = r["result"] or {}
            runs.add_row(r["occurrence"], str(r["version"]), r["state"], r["due_at"][:16], str(result.get("due", "")),
                         str(result.get("sent", "")), str(result.get("unreachable", "")))
        console.print(runs)
        return
    runs = Table("occurrence", "version", "state", "launch (UTC)", "queued", "deferred", "skipped")
    for r in found["runs"]:
        result = r["result"] or {}
        runs.add_row(r["occurrence"], str(r["version"]), r["state"], r["due_at"][:16], str(result.get("queued", "")),
                     str(sum(result.get("deferred", {}).values())), str(sum(result.get("skipped", {}).values())))
    console.print(runs)


def _campaign_control(name: str, action: str, home: Path | None, as_json: bool) -> None:
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.control_campaign(name, action)
    if as_json:
        emit_json(found)
        return
    console.print(f"[bold]{escape(name)}[/] is {found['state']}"
                  + (f", next run {found['next_run_at'][:16]} UTC" if found["next_run_at"] else ""))
    for item in found["released"]:
        console.print(f"released the rest of occurrence {item['occurrence']}:")
        _print_run(item["run"])


@campaign_app.command("pause")
def campaign_pause(name: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a campaign: its messages wait in the outbox and no run launches until it is resumed."""
    _campaign_control(name, "pause", home, as_json)


@campaign_app.command("resume")
def campaign_resume(name: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Start a paused campaign again; a canary a guardrail halted is released (you have looked at why).
    Recurring runs missed while it was paused are skipped."""
    _campaign_control(name, "resume", home, as_json)


@campaign_app.command("cancel")
def campaign_cancel(name: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """End a campaign: waiting messages are cancelled and no run launches again."""
    _campaign_control(name, "cancel", home, as_json)


@campaign_app.command("test")
def campaign_test(
    directory: Annotated[Path, typer.Argument(help="A folder of campaign files, or one file.")],
    name: Annotated[str | None, typer.Option("--name", help="Only the campaign called this.")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="Only this test user (repeat); each must be on "
                                                 "the test list.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send every message of the campaigns — each variant, each journey send step, every channel — now to the
    internal test users ([policy] test_list; add yourself with `nudge list add test_users FILE`). They go
    through consent and the night rule like any message, outside the campaign's budget and results. Exit 1
    when one did not go."""
    json_errors(as_json)
    with workspace(home) as ws:
        result = ws.test_send_campaigns(directory, name=name, to=to)
    if as_json:
        emit_json(result)
    else:
        table = Table("campaign", "message", "channel", "to", "state", "why")
        for s in result["sends"]:
            colour = "green" if s["state"] == "sent" else "yellow" if s["state"] in ("deferred", "queued") else "red"
            table.add_row(escape(s["campaign"]), escape(s["message"]), s["channel"], escape(s["user"]),
                          f"[{colour}]{s['state']}[/]", escape(s["detail"] or s["reason"] or ""))
        console.print(table)
    if any(s["state"] != "sent" for s in result["sends"]):
        raise typer.Exit(1)


@campaign_app.command("approve")
def campaign_approve(
    name: str,
    version: Annotated[int, typer.Option("--version", help="The version you reviewed (nudge campaign show NAME); "
                                         "a later edit is a new version and needs its own approval.")],
    by: Annotated[str | None, typer.Option("--as", envvar="NUDGE_USER",
                                           help="Who is approving (default: your login name).")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a campaign or journey that waits for it: you must be in [campaigns] approvers and not the person
    who applied it. Preflight runs again on today's data; passing, it goes live as apply would have made it."""
    import getpass

    json_errors(as_json)
    with workspace(home) as ws, progress_tasks(as_json) as progress:
        result = ws.approve_campaign(name, version, by or getpass.getuser(), progress=progress)
    if as_json:
        emit_json(result)
        return
    console.print(f"[green]approved[/] version {version} of [bold]{escape(name)}[/] as {escape(result['approved_by'])}: "
                  f"{result['state']}" + (f", {result['entered']['entered']:,} entered" if result.get("entered") else ""))
    for item in result.get("runs", []):
        if "run" in item:
            console.print(f"launched occurrence {item['occurrence']}:")
            _print_run(item["run"])


@campaign_app.command("tick")
def campaign_tick(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Launch every campaign run that is due now (`nudge serve` does this on its own every
    [campaigns] tick_seconds; run this from cron when no server runs)."""
    json_errors(as_json)
    with workspace(home) as ws, progress_tasks(as_json) as progress:
        done = ws.tick_campaigns(progress=progress)
    if as_json:
        emit_json(done)
        return
    if not done:
        console.print("no campaign run is due")
    for item in done:
        if "journeys" in item:
            walked = item["journeys"]
            for name, entered in walked["entered"].items():
                console.print(f"[bold]{escape(name)}[/]: {entered['entered']:,} entered")
            if walked["steps"]:
                console.print("journeys walked: " + ", ".join(f"{k} {v:,}" for k, v in sorted(walked["steps"].items())))
            continue
        stage = {"canary": "canary of ", "released": "the rest of ", "halted": "halted: "}.get(item["stage"], "")
        console.print(f"[bold]{escape(item['campaign'])}[/] {stage}occurrence {item['occurrence']}"
                      + (f" — {escape(item['detail'])}" if item.get("detail") else ""))
        if item.get("notices") is not None:
            _print_notices(item["notices"], "sent")
        elif item["run"]:
            _print_run(item["run"])


@campaign_app.command("enter")
def campaign_enter(
    journey: str,
    user: str,
    key: Annotated[str | None, typer.Option(help="Makes a retried call enter once.")] = None,
    properties: Annotated[str | None, typer.Option(help="JSON: what the journey's messages read as event.")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put a user in a journey that starts on a call (entry: {api: true}); its re-entry rules decide."""
    import orjson

    json_errors(as_json)
    try:
        props = orjson.loads(properties) if properties else None
    except orjson.JSONDecodeError as exc:
        raise FieldError("properties", f"not JSON: {exc}") from None
    with workspace(home) as ws:
        done = ws.enter_journey(journey, user, properties=props, key=key)
    if as_json:
        emit_json(done)
        return
    if done["entered"]:
        entry = done["entries"][0]
        console.print(f"{escape(user)} entered {escape(journey)}: now at {entry['step'] or 'the end'}"
                      + (f", waiting until {entry['due_at'][:16]} UTC" if entry["waiting"] and entry["due_at"] else ""))
    else:
        console.print(f"{escape(user)} did not enter {escape(journey)}: "
                      + ", ".join(f"{escape(k)}" for k in done["skipped"]))


@campaign_app.command("walks")
def campaign_walks(journey: str, user: str, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """A user's walks through a journey: the version they entered, the steps taken, where they are now."""
    json_errors(as_json)
    with workspace(home) as ws:
        found = ws.journey_entries(journey, user)
    if as_json:
        emit_json(found)
        return
    if not found:
        console.print(f"{escape(user)} has not entered {escape(journey)}")
    for walk in found:
        where = walk["step"] if walk["state"] == "active" else walk["exit_reason"] or walk["state"]
        console.print(f"[bold]entry {walk['id']}[/] (version {walk['version']}, entered {walk['entered_at'][:16]} UTC):"
                      f" {escape(str(where))}" + (f", waiting until {walk['due_at'][:16]} UTC"
                                                  if walk["waiting"] and walk["due_at"] else ""))
        for step in walk["path"]:
            note = f" ({escape(str(step[2]))})" if len(step) > 2 else ""
            console.print(f"    {escape(step[0])} at {step[1][:16]}{note}")


@app.command()
def worker(
    until_idle: Annotated[bool, typer.Option(help="Stop once nothing is due (for cron or scripts).")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the outbox: claim due messages in batches, run the policy chain at hand-over, call providers at
    the pace settings allow, retry, fall back, and poll delivery receipts. Run as many as you like against
    PostgreSQL; on SQLite one is enough. Ctrl-C stops after the current batch. Its message events wait in
    the spool until `nudge serve`'s drainer (or any command that reads events) moves them into the event
    store: moving them here would cost every worker the event store's memory."""
    import asyncio
    import signal
    import threading

    from nudgekit.delivery.worker import Worker, peak_memory_mb

    json_errors(as_json)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with workspace(home, flush=False) as ws:  # its events wait in the spool for serve's drainer or any reader
        runner = Worker(ws, drain=False)
        if not as_json:
            err.print(f"worker {runner.name} sending from {ws.settings.home.resolve()} (Ctrl-C stops)")
        try:
            asyncio.run(runner.run(until_idle=until_idle, stop=stop.is_set, report=None if as_json else _report))
        except KeyboardInterrupt:
            pass
    if as_json:
        emit_json({"worker": runner.name, **runner.stats.as_dict(), "peak_memory_mb": round(peak_memory_mb(), 1)})


def _report(stats: Any) -> None:
    s = stats.as_dict()
    err.print(f"sent {s['sent']} · retried {s['retried']} · deferred {s['deferred']} · skipped {s['skipped']} · "
              f"failed {s['failed']} · in doubt {s['in_doubt']} · fell back {s['fell_back']}")


def main() -> None:  # pragma: no cover
    app()
