"""What the app reads and reports back: in-app messages (`GET /v1/inapp`), content cards (`GET /v1/cards`)
for the calling user or visitor, and what happened to them (`POST /v1/inbox/report`). Same write key as
ingestion (HTTP Basic user name, or Bearer), so the app's existing Segment setup is all it needs.

:TRICKY: a write key ships inside every app, so anyone holding it can read the inbox of a user id they
guess; put nothing in an in-app message or card that only its recipient may see (docs/channels.md).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from nudgekit.api.auth import require
from nudgekit.api.errors import ApiError
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import KeyScope, MessageChannel
from nudgekit.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["in-app messages and content cards"])


async def _feed(request: Request, channel: MessageChannel, user_id: str | None, anonymous_id: str | None,
                limit: int) -> list[dict[str, Any]]:
    ws: Workspace = request.app.state.ws
    require(ws, request, KeyScope.WRITE)
    try:
        return await run_in_threadpool(ws.inbox, channel, user_id=user_id, anonymous_id=anonymous_id, limit=limit)
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None


@router.get("/inapp", summary="In-app messages waiting for this user or visitor, oldest first")
async def get_inapp(request: Request, user_id: str | None = Query(None, alias="userId"),
                    anonymous_id: str | None = Query(None, alias="anonymousId"),
                    limit: int = Query(20, ge=1, le=50)) -> dict[str, Any]:
    return {"messages": await _feed(request, MessageChannel.INAPP, user_id, anonymous_id, limit)}


@router.get("/cards", summary="Content cards in this user's or visitor's feed, pinned first, then newest")
async def get_cards(request: Request, user_id: str | None = Query(None, alias="userId"),
                    anonymous_id: str | None = Query(None, alias="anonymousId"),
                    limit: int = Query(50, ge=1, le=50)) -> dict[str, Any]:
    return {"cards": await _feed(request, MessageChannel.CARD, user_id, anonymous_id, limit)}


class ReportBody(BaseModel):
    """What happened to one in-app message or card on the user's screen."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(min_length=1, max_length=255, description="The message's id as served")
    type: Literal["impression", "click", "dismiss"]
    button: int | None = Field(None, ge=1, le=10, description="For a click on a button: which one, from 1")
    user_id: str | None = Field(None, alias="userId")
    anonymous_id: str | None = Field(None, alias="anonymousId")


@router.post("/inbox/report", summary="Report an impression, click or dismissal (a consent button records consent)")
async def report(request: Request, body: ReportBody) -> dict[str, Any]:
    ws: Workspace = request.app.state.ws
    require(ws, request, KeyScope.WRITE)
    try:
        answer = await run_in_threadpool(lambda: ws.report_inbox(
            body.id, body.type, user_id=body.user_id, anonymous_id=body.anonymous_id, button=body.button,
            track=False))
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None
    except LookupError as exc:
        raise ApiError(404, "id", str(exc)) from None
    event = answer.pop("event")
    stored = await request.app.state.batcher.submit([event])
    if stored.rejects:
        raise ApiError(400, stored.rejects[0].field, stored.rejects[0].reason)
    return {"success": True, **answer}
