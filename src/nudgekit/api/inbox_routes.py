"""What the app reads and reports back: in-app messages (`GET /v1/inapp`), content cards (`GET /v1/cards`)
for the calling user or visitor, and what happened to them (`POST /v1/inbox/report`). Same write key as
ingestion (HTTP Basic user name, or Bearer), so the app's existing Segment setup is all it needs.

:TRICKY: a write key ships inside every app, so on its own it proves nothing about who is asking. With
`[inbox] user_token_secret` set, every request must carry the user's `Nudge-User-Token` (an HMAC of the user
id your backend makes); without it, anyone holding the write key can read or report for a user id they
guess — and so a consent button never records consent over HTTP without a valid token.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from nudgekit.api.auth import require
from nudgekit.api.errors import ApiError
from nudgekit.channels.inapp import inbox
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import KeyScope, MessageChannel
from nudgekit.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["in-app messages and content cards"])


def _signed_in(ws: Workspace, request: Request, user_id: str | None) -> bool:
    """Whether the request proves it comes from this user's app (Nudge-User-Token); with a token secret set,
    a request that does not is refused."""
    secret = ws.settings.inbox.user_token_secret
    if secret is None:
        return False
    token = request.headers.get("nudge-user-token")
    if user_id is None or not inbox.token_matches(secret, user_id, token):
        raise ApiError(401, "Nudge-User-Token", "this workspace serves inboxes only to signed-in users: send the "
                       "user id and the Nudge-User-Token header your backend made for it" if token is None else
                       "the Nudge-User-Token does not belong to this user id")
    return True


async def _feed(request: Request, channel: MessageChannel, user_id: str | None, anonymous_id: str | None,
                limit: int) -> list[dict[str, Any]]:
    ws: Workspace = request.app.state.ws
    require(ws, request, KeyScope.WRITE)
    _signed_in(ws, request, user_id)
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
    signed_in = _signed_in(ws, request, body.user_id)
    try:
        answer = await run_in_threadpool(lambda: ws.report_inbox(
            body.id, body.type, user_id=body.user_id, anonymous_id=body.anonymous_id, button=body.button,
            track=False, consent=signed_in))
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None
    except LookupError as exc:
        raise ApiError(404, "id", str(exc)) from None
    except PermissionError as exc:
        raise ApiError(403, "button", str(exc)) from None
    event = answer.pop("event")
    stored = await request.app.state.batcher.submit([event])
    if stored.rejects:
        raise ApiError(400, stored.rejects[0].field, stored.rejects[0].reason)
    return {"success": True, **answer}
