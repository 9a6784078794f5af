"""Segment HTTP Tracking API: /v1/identify, track, page, screen, alias, group and batch.

Answers: 200 {"success": true} when everything was stored; a batch with some
bad messages stores the good ones and answers 200 with the rejects listed;
400 names the field and reason when nothing could be stored. Never a 500: an
unexpected fault answers 503 with Retry-After, and nothing is half written.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from nudgekit.api.auth import require
from nudgekit.api.errors import ApiError, refusal
from nudgekit.ingest.pipeline import parse_body
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import EventSource, KeyScope, MessageType
from nudgekit.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["ingestion (Segment-compatible)"])

SHORT = {"i": "identify", "t": "track", "p": "page", "s": "screen", "a": "alias", "g": "group"}


async def _body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body", f"the request is {int(declared)} bytes; the limit is {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            raise ApiError(413, "body", f"the request is larger than the limit of {limit} bytes")
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(bytes(data), limit + 1)
        except zlib.error:
            raise ApiError(400, "body", "the body says gzip but is not valid gzip data") from None
        if len(plain) > limit or inflater.unconsumed_tail:
            raise ApiError(413, "body", f"the unpacked request is larger than the limit of {limit} bytes")
        data = bytearray(plain)
    if not data:
        raise ApiError(400, "body", "the request body is empty; send a JSON object")
    try:
        return parse_body(bytes(data))
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None


def _store(ws: Workspace, messages: list[Any], default_type: str | None, sent_at: Any) -> JSONResponse:
    result = ws.ingest(messages, source=EventSource.HTTP.value, default_type=default_type, sent_at=sent_at)
    ws.events.spool(result.rows)
    rejected = [r.as_dict() for r in result.rejects]
    if result.accepted == 0 and rejected:
        return refusal(400, rejected)
    body: dict[str, Any] = {"success": True}
    if rejected:
        body |= {"accepted": result.accepted, "rejected": rejected}
    return JSONResponse(body)


@router.post("/batch", summary="Send many messages at once (Segment /v1/batch)")
@router.post("/import", include_in_schema=False)
@router.post("/b", include_in_schema=False)
async def batch(request: Request) -> JSONResponse:
    ws: Workspace = request.app.state.ws
    payload = await _body(request, ws.settings.ingest.max_batch_bytes)
    if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
        raise ApiError(400, "batch", 'the body must be {"batch": [message, ...]}')
    require(ws, request, KeyScope.WRITE, payload.get("writeKey"))
    if not payload["batch"]:
        return JSONResponse({"success": True})
    context = payload.get("context")
    messages = payload["batch"]
    if isinstance(context, dict):
        messages = [
            {**m, "context": {**context, **(m.get("context") or {})}} if isinstance(m, dict) else m
            for m in messages
        ]
    return await run_in_threadpool(_store, ws, messages, None, payload.get("sentAt"))


async def _single(request: Request, kind: str) -> JSONResponse:
    ws: Workspace = request.app.state.ws
    message = await _body(request, ws.settings.ingest.max_message_bytes)
    if not isinstance(message, dict):
        raise ApiError(400, "body", "the body must be one JSON object")
    require(ws, request, KeyScope.WRITE, message.get("writeKey"))
    return await run_in_threadpool(_store, ws, [message], kind, message.get("sentAt"))


def _route(kind: str) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return await _single(request, kind)

    endpoint.__name__ = kind
    router.add_api_route(f"/{kind}", endpoint, methods=["POST"], summary=f"Segment {kind} call")
    short = next(k for k, v in SHORT.items() if v == kind)
    router.add_api_route(f"/{short}", endpoint, methods=["POST"], include_in_schema=False)


for _kind in MessageType:
    _route(_kind.value)
