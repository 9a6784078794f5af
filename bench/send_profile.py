"""Where a sent message's time goes: the campaign of bench/send.py planned and sent in this one process, with a
timer around each step of planning and of the worker, printed as microseconds a message.

    .venv/bin/python bench/send_profile.py [--messages 8000]

Timers nest (a step's time includes the steps it calls: `gate_many` includes `prepare` and `record`), so the
rows do not add up to the total. The worker runs in this process (not `nudge worker`), without receipts.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from send import workspace  # noqa: E402

from nudgekit.delivery import handover, outbox  # noqa: E402
from nudgekit.delivery.worker import Worker  # noqa: E402
from nudgekit.policy import chain, ledger, people  # noqa: E402
from nudgekit.testing.solapi import FakeSolapi  # noqa: E402
from nudgekit.workspace import Workspace  # noqa: E402

STEPS: list[tuple[Any, tuple[str, ...]]] = [
    (Worker, ("step", "_claim", "_gate", "_reachable", "_hand", "_settle", "_flush_events")),
    (chain, ("gate_many", "prepare", "evaluate", "record")),
    (people, ("load_many",)),
    (ledger.Ledger, ("load", "prefetch_dead", "flush")),
    (handover, ("begin", "call", "end")),
    (outbox, ("add_many", "claim", "settle", "insert_attempts")),
    (Workspace, ("_candidate",)),
]
spent: defaultdict[str, float] = defaultdict(float)


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(function):
        @functools.wraps(function)
        async def waited(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return waited

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=8000)
    args = parser.parse_args()
    n = args.messages
    for owner, names in STEPS:
        for name in names:
            setattr(owner, name, timed(name, getattr(owner, name)))
    phases: dict[str, tuple[float, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, FakeSolapi() as solapi:
        solapi.balance = 1e12
        ws = workspace(solapi, n, Path(tmp))
        started = time.perf_counter()
        queued = ws.queue("bench", "sms", (f"b{i}" for i in range(n)), text="오늘만 30% 할인", ad=True)
        phases["plan"] = (time.perf_counter() - started, dict(spent))
        assert queued.queued == n, queued.as_dict()
        spent.clear()
        worker = Worker(ws, drain=False)
        started = time.perf_counter()
        stats = asyncio.run(worker.run(until_idle=True, receipts=False))
        phases["send"] = (time.perf_counter() - started, dict(spent))
        assert stats.sent == n, stats.as_dict()
        ws.close()
    console = Console()
    for phase, (total, steps) in phases.items():
        console.print(f"[bold]{phase}[/]: {total / n * 1e6:,.0f} µs a message ({n / total:,.0f} messages/s)")
        table = Table("step", "µs a message")
        for name, seconds in sorted(steps.items(), key=lambda item: -item[1]):
            table.add_row(name, f"{seconds / n * 1e6:,.1f}")
        console.print(table)


if __name__ == "__main__":
    main()
