"""Admin API (/api/v1): read profiles, record consent changes. Needs an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from nudgekit.api.auth import require
from nudgekit.api.errors import ApiError
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import Channel, ConsentSource, KeyScope, Purpose
from nudgekit.workspace import Workspace


def admin_workspace(request: Request) -> Workspace:
    """The key is checked before the body, so a caller without a key learns nothing about the body."""
    ws: Workspace = request.app.state.ws
    require(ws, request, KeyScope.ADMIN)
    return ws


AdminWorkspace = Annotated[Workspace, Depends(admin_workspace)]
router = APIRouter(prefix="/api/v1", tags=["admin"])


class ConsentBody(BaseModel):
    """One consent change. Give `granted` (true/false) or `change` ("granted"/"withdrawn")."""

    channel: Channel
    purpose: Purpose = Purpose.ADVERTISING
    granted: bool | None = None
    change: Literal["granted", "withdrawn"] | None = None
    source: ConsentSource
    at: datetime | None = Field(None, description="When the user chose; default now. Needs a time zone.")
    evidence: str | None = Field(None, max_length=2000)
    idempotency_key: str | None = Field(None, max_length=200)

    def decision(self) -> bool:
        if self.granted is None and self.change is None:
            raise ApiError(400, "granted", 'say "granted": true/false or "change": "granted"/"withdrawn"')
        if self.granted is not None and self.change is not None and self.granted != (self.change == "granted"):
            raise ApiError(400, "change", f'"granted": {str(self.granted).lower()} and "change": "{self.change}" disagree')
        if self.at is not None and self.at.tzinfo is None:
            raise ApiError(400, "at", "at needs a time zone, e.g. 2026-11-22T09:30:00+09:00")
        return self.granted if self.granted is not None else self.change == "granted"


@router.get("/users/{user_id}", summary="A user's profile, consents, push tokens and recent events")
async def get_user(user_id: str, ws: AdminWorkspace) -> dict[str, Any]:
    try:
        found = await run_in_threadpool(ws.profile, user_id)
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None
    if found is None:
        raise ApiError(404, "user_id", f'no user or visitor "{user_id}"')
    return found


@router.post("/users/{user_id}/consents", summary="Record a consent change (append-only history)")
async def post_consent(user_id: str, body: ConsentBody, ws: AdminWorkspace) -> dict[str, Any]:
    granted = body.decision()
    try:
        result = await run_in_threadpool(
            lambda: ws.set_consent(
                user_id, channel=body.channel, purpose=body.purpose, granted=granted,
                source=body.source, at=body.at, evidence=body.evidence, dedupe_key=body.idempotency_key,
            )
        )
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None
    return {"success": True, "recorded": result.recorded, "consent": result.state}
