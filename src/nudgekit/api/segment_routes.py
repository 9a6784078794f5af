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
from fastapi.responses import JSONResponse

from nudgekit.api.auth import require
from nudgekit.api.errors import ApiError, refusal
from nudgekit.ingest.pipeline import parse_body
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import KeyScope, MessageType
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
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(bytes(data), limit + 1)
        except zlib.error:
            raise ApiError(400, "body", "the body says gzip but is not valid gzip data") from None
        if len(plain) > limit or inflater.unconsumed_tail:
            raise ApiError(413, "body", f"the unpacked request is larger than the limit of {limit} bytes")
        if not inflater.eof or inflater.unused_data:
            raise ApiError(400, "body", "the gzip data is cut short or has bytes after its end")
        data = bytearray(plain)
    elif encoding not in ("", "identity"):
        raise ApiError(415, "content-encoding", f'"{encoding}" is not supported; send plain JSON or gzip')
    if not data:
        raise ApiError(400, "body", "the request body is empty; send a JSON object")
    try:
        return parse_body(bytes(data))
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None


async def _store(request: Request, messages: list[Any]) -> JSONResponse:
    outcome = await request.app.state.batcher.submit(messages)
    rejected = [r.as_dict() for r in outcome.rejects]
    if outcome.accepted == 0 and rejected:
        return refusal(400, rejected)
    body: dict[str, Any] = {"success": True}
    if rejected:
        body |= {"accepted": outcome.accepted, "rejected": rejected}
    return JSONResponse(body)


def _with_defaults(message: Any, sent_at: Any, context: Any) -> Any:
    """Batch-level sentAt and context apply to each message that does not carry its own."""
    if not isinstance(message, dict):
        return message
    if sent_at and not message.get("sentAt"):
        message = {**message, "sentAt": sent_at}
    if isinstance(context, dict) and context:
        own = message.get("context")
        message = {**message, "context": {**context, **own} if isinstance(own, dict) else own or context}
    return message


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
    messages = [_with_defaults(m, payload.get("sentAt"), payload.get("context")) for m in payload["batch"]]
    return await _store(request, messages)


async def _single(request: Request, kind: str) -> JSONResponse:
    ws: Workspace = request.app.state.ws
    message = await _body(request, ws.settings.ingest.max_message_bytes)
    if not isinstance(message, dict):
        raise ApiError(400, "body", "the body must be one JSON object")
    require(ws, request, KeyScope.WRITE, message.get("writeKey"))
    if message.get("type") not in (None, kind):
        raise ApiError(400, "type", f'"{message["type"]}" sent to the /v1/{kind} endpoint')
    return await _store(request, [{**message, "type": kind}])


def _route(kind: str) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return await _single(request, kind)

    endpoint.__name__ = kind
    router.add_api_route(f"/{kind}", endpoint, methods=["POST"], summary=f"Segment {kind} call")
    short = next(k for k, v in SHORT.items() if v == kind)
    router.add_api_route(f"/{short}", endpoint, methods=["POST"], include_in_schema=False)


for _kind in MessageType:
    _route(_kind.value)
