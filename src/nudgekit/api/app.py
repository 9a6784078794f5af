"""The HTTP API: Segment-compatible ingestion at /v1, admin at /api/v1, OpenAPI at /docs.

Any unmodified Segment or RudderStack library pointed at this server
delivers identify/track/page/screen/alias/group calls (HTTP Basic auth with the
write key as user name, JSON or gzip bodies, Segment's 32 KB / 500 KB limits).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nudgekit.api import admin, inbox_routes, message_routes, optout_routes, segment_routes, tracking_routes
from nudgekit.api.batcher import IngestBatcher
from nudgekit.api.errors import ApiError, refusal
from nudgekit.workspace import Workspace

log = logging.getLogger("nudgekit.api")


class Every(threading.Thread):
    """Runs `step` every `interval` seconds until stopped (and once more on stopping when `last` is set). A
    step that fails is logged with `failed` and tried again next time."""

    def __init__(self, name: str, interval: float, step: Callable[[], object], failed: str, *,
                 last: bool = False) -> None:
        super().__init__(name=name, daemon=True)
        self.interval, self.step, self.failed, self.last = interval, step, failed, last
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self._once()
        if self.last:
            self._once()

    def _once(self) -> None:
        try:
            self.step()
        except Exception:  # the work stays where it is (spool, due runs): next time picks it up
            log.exception(self.failed)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def _drain(ws: Workspace) -> None:
    while ws.events.drain().received:
        pass


def create_app(ws: Workspace, *, drain: bool = True, worker: bool = False) -> FastAPI:
    """The app; `worker` also runs a delivery worker in a thread of this process (`nudge serve`'s default)."""
    from nudgekit.delivery.worker import BackgroundWorker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the process that drains owns the event store, which launching campaign runs reads (audiences)
        helpers = [Every("nudge-drain", ws.settings.ingest.flush_interval_seconds, lambda: _drain(ws),
                         "moving spooled events into the event store failed; will retry", last=True),
                   Every("nudge-schedule", ws.settings.campaigns.tick_seconds, ws.tick_campaigns,
                         "launching due campaign runs failed; will retry")] if drain else []
        for helper in helpers:
            helper.start()
        batcher = IngestBatcher(ws)
        batcher.start()
        app.state.batcher = batcher
        sender = BackgroundWorker(ws.settings, ws.clock) if worker else None
        if sender:
            sender.start()
        try:
            yield
        finally:
            if sender:
                sender.stop()
            batcher.stop()
            for helper in reversed(helpers):  # the scheduler first; the drainer last, draining once more
                helper.stop()

    app = FastAPI(
        title="nudgekit",
        version="0.1.0",
        description="Segment-compatible ingestion (/v1) and the nudgekit admin API (/api/v1).",
        lifespan=lifespan,
    )
    app.state.ws = ws
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
    )
    app.include_router(segment_routes.router)
    app.include_router(inbox_routes.router)
    app.include_router(admin.router)
    app.include_router(optout_routes.router)
    app.include_router(tracking_routes.router)
    app.include_router(message_routes.router)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]} for e in exc.errors()
        ]
        return refusal(400, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return refusal(exc.status_code, [{"reason": exc.detail}], exc.headers)

    @app.middleware("http")
    async def _fault(request: Request, call_next: Any) -> Any:
        """An unexpected fault answers 503 and keeps the connection (Starlette would re-raise and drop it)."""
        try:
            return await call_next(request)
        except Exception:
            log.exception("unexpected fault while handling a request")
            reason = "nudgekit could not store this right now; nothing was written, retry later"
            return refusal(503, [{"reason": reason}], {"Retry-After": "5"})

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, Any]:
        return {"ok": True, "spooled_parts": len(ws.events.pending_parts())}

    return app
