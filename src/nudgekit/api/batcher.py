"""Group commit for the HTTP API: concurrent requests are validated and spooled together.

:TRICKY: checking rows in DuckDB costs a few milliseconds per query whatever
the row count, so checking each 100-event request on its own caps a server
near 10,000 events/s. One worker thread takes every request waiting, checks
and spools them as one batch, and answers each request with its own part of
the result. Under no load a request is handled alone, at once; under load
batches grow and the cost per event falls. A request is answered only after
its events are durably in the spool.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from nudgekit.ingest.validate import Reject
from nudgekit.vocabulary import EventSource
from nudgekit.workspace import Workspace

log = logging.getLogger("nudgekit.api")


@dataclass(frozen=True)
class Outcome:
    accepted: int
    rejects: list[Reject]


@dataclass
class _Job:
    messages: list[Any]
    future: asyncio.Future[Outcome]
    loop: asyncio.AbstractEventLoop


class IngestBatcher:
    def __init__(self, ws: Workspace, *, max_messages: int = 5_000) -> None:
        self.ws = ws
        self.max_messages = max_messages
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="nudge-ingest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=30)

    async def submit(self, messages: list[Any]) -> Outcome:
        loop = asyncio.get_running_loop()
        job = _Job(messages, loop.create_future(), loop)
        self._jobs.put(job)
        return await job.future

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            jobs, size = [job], len(job.messages)
            while size < self.max_messages:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                jobs.append(more)
                size += len(more.messages)
            self._handle(jobs)

    def _handle(self, jobs: list[_Job]) -> None:
        try:
            outcomes = self._ingest([j.messages for j in jobs])
        except Exception as exc:
            if len(jobs) > 1:  # do not let one request's fault fail the others
                for job in jobs:
                    self._handle([job])
                return
            log.exception("ingesting a request failed")
            self._answer(jobs[0], exc)
            return
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._answer(job, outcome)

    def _ingest(self, groups: list[list[Any]]) -> list[Outcome]:
        combined = [m for group in groups for m in group]
        result = self.ws.ingest(combined, source=EventSource.HTTP.value)
        self.ws.events.spool(result.rows)
        outcomes, start = [], 0
        for group in groups:
            end = start + len(group)
            mine = [Reject(r.row - start, r.field, r.reason) for r in result.rejects if start <= r.row < end]
            outcomes.append(Outcome(len(group) - len(mine), mine))
            start = end
        return outcomes

    @staticmethod
    def _answer(job: _Job, value: Outcome | Exception) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if isinstance(value, Exception):
                job.future.set_exception(value)
            else:
                job.future.set_result(value)

        job.loop.call_soon_threadsafe(settle)
