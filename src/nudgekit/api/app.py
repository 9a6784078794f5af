"""The HTTP API: Segment-compatible ingestion at /v1, admin at /api/v1, OpenAPI at /docs.

Any unmodified Segment or RudderStack library pointed at this server
delivers identify/track/page/screen/alias/group calls (HTTP Basic auth with the
write key as user name, JSON or gzip bodies, Segment's 32 KB / 500 KB limits).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nudgekit.api import admin, inbox_routes, message_routes, optout_routes, segment_routes
from nudgekit.api.batcher import IngestBatcher
from nudgekit.api.errors import ApiError, refusal
from nudgekit.workspace import Workspace

log = logging.getLogger("nudgekit.api")


class Drainer(threading.Thread):
    """Moves spooled events into the event store every few hundred milliseconds."""

    def __init__(self, ws: Workspace, interval: float) -> None:
        super().__init__(name="nudge-drain", daemon=True)
        self.ws = ws
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.drain_once()
        self.drain_once()

    def drain_once(self) -> None:
        try:
            while self.ws.events.drain().received:
                pass
        except Exception:  # keep draining next time; the spool keeps the events safe meanwhile
            log.exception("moving spooled events into the event store failed; will retry")


class Scheduler(threading.Thread):
    """Launches the campaign runs that are due every `[campaigns] tick_seconds` (campaigns/live.py: any number
    of servers may tick; each run is launched once)."""

    def __init__(self, ws: Workspace, interval: float) -> None:
        super().__init__(name="nudge-schedule", daemon=True)
        self.ws = ws
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.ws.tick_campaigns()
            except Exception:  # the run stays due (or launching, relaunched later): try again next tick
                log.exception("launching due campaign runs failed; will retry")


def create_app(ws: Workspace, *, drain: bool = True, worker: bool = False) -> FastAPI:
    """The app; `worker` also runs a delivery worker in a thread of this process (`nudge serve`'s default)."""
    from nudgekit.delivery.worker import BackgroundWorker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drainer = Drainer(ws, ws.settings.ingest.flush_interval_seconds) if drain else None
        scheduler = Scheduler(ws, ws.settings.campaigns.tick_seconds) if drain else None
        if drainer and scheduler:
            drainer.start()
            scheduler.start()
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
            if scheduler:
                scheduler.stopping.set()
                scheduler.join(timeout=30)
            if drainer:
                drainer.stopping.set()
                drainer.join(timeout=30)

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
