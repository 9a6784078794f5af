"""The transactional send (/api/v1/messages): one message now, through the outbox and the policy chain, made
safe to retry with an `Idempotency-Key` header (IETF draft-ietf-httpapi-idempotency-key-header): a repeat
returns the first result and sends nothing; the key reused for another message is refused (422); a repeat
while the first is still being handed over is asked to wait (409). Also each campaign's sending state."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Header, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from nudgekit.api.admin import AdminWorkspace
from nudgekit.api.errors import ApiError
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import MessageChannel

router = APIRouter(prefix="/api/v1", tags=["messages"])
IN_PROGRESS = ("claimed", "handing")


class MessageBody(BaseModel):
    """One message to one user. `message` holds the channel's fields (as `nudge message check` takes them);
    `to` sends to that address instead of the user's own."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    channel: MessageChannel
    user_id: str = Field(alias="userId", min_length=1, max_length=255)
    to: str | None = Field(None, max_length=4096)
    message: dict[str, Any] | None = Field(None, description="The channel's fields; their texts may be templates.")
    template: str | None = Field(None, max_length=100, description="A saved template instead of `message`.")
    template_version: int | None = Field(None, alias="templateVersion", ge=1)
    event: dict[str, Any] | None = Field(None, description="What templates read as `event`: the event that "
                                         "triggered the message, as a track call has it (event, properties).")
    priority: int | None = None
    in_doubt: Literal["hold", "resend"] | None = Field(
        None, alias="inDoubt", description="What a crash mid-send does: hold (never resend) or resend.")


@router.post("/messages", summary="Send one message now (transactional), with an Idempotency-Key")
async def send_message(body: MessageBody, ws: AdminWorkspace, response: Response,
                       idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    if (body.message is None) == (body.template is None):
        raise ApiError(400, "message", "give the message's fields (message) or a saved template (template)")
    fields = dict(body.message or {})
    if body.template is not None:
        fields.update(from_template=body.template, template_version=body.template_version)
    if body.event is not None:
        fields["event"] = body.event
    if body.priority is not None:
        fields["priority"] = body.priority
    try:
        result = await run_in_threadpool(lambda: ws.send_message(
            body.channel, body.user_id, idempotency_key=idempotency_key, to=body.to, in_doubt=body.in_doubt,
            **fields))
    except FieldError as exc:
        if exc.field == "Idempotency-Key" and "different message" in exc.reason:
            raise ApiError(422, exc.field, exc.reason) from None
        raise ApiError(400, exc.field if exc.field in ("user", "to", "Idempotency-Key", "template", "event")
                       else f"message.{exc.field}", exc.reason) from None
    if result["replayed"]:
        response.headers["Idempotent-Replayed"] = "true"
        if result["state"] in IN_PROGRESS:
            raise ApiError(409, "Idempotency-Key", "the first request with this key is still being sent: ask "
                           "again in a moment", {"Retry-After": "1"})
    return result


@router.get("/campaigns/{campaign}/sending", summary="Where a campaign's messages stand")
async def sending(campaign: str, ws: AdminWorkspace) -> dict[str, Any]:
    try:
        return await run_in_threadpool(ws.send_status, campaign)
    except FieldError as exc:
        raise ApiError(404, exc.field, exc.reason) from None


@router.post("/campaigns/{campaign}/{action}", summary="Pause, resume or cancel a campaign's sending")
async def control(campaign: str, action: Literal["pause", "resume", "cancel"], ws: AdminWorkspace) -> dict[str, Any]:
    try:
        return await run_in_threadpool(ws.control_send, campaign, action)
    except FieldError as exc:
        raise ApiError(404 if "no campaign" in exc.reason else 409, exc.field, exc.reason) from None


class JourneyEntryBody(BaseModel):
    """A user to put in a journey that starts on a call (entry: {api: true})."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    user_id: str = Field(alias="userId", min_length=1, max_length=255)
    properties: dict[str, Any] | None = Field(None, description="What the journey's messages read as "
                                              "event.properties.")


@router.post("/journeys/{journey}/entries", summary="Put a user in a journey (its re-entry rules decide)",
             tags=["journeys"])
async def enter_journey(journey: str, body: JourneyEntryBody, ws: AdminWorkspace,
                        idempotency_key: str | None = Header(None, alias="Idempotency-Key",
                                                             max_length=255)) -> dict[str, Any]:
    """The answer says whether they entered (`entered`: 1) or why not (`skipped`: entered_before,
    still_in_journey, not_in_audience, already_seen ...); the same Idempotency-Key enters once."""
    try:
        return await run_in_threadpool(lambda: ws.enter_journey(journey, body.user_id, properties=body.properties,
                                                                key=idempotency_key))
    except FieldError as exc:
        raise ApiError(404 if exc.field == "journey" and "no live journey" in exc.reason else 400,
                       exc.field, exc.reason) from None


class CouponCodes(BaseModel):
    """Codes to add to a pool; one the pool has already is left alone, a bad one is reported by position."""

    model_config = ConfigDict(extra="forbid")

    codes: list[str] = Field(min_length=1, max_length=100_000)


@router.post("/coupons/{pool}", summary="Add codes to a coupon pool ({{ coupon.POOL }} in templates)",
             tags=["coupons"])
async def load_coupons(pool: str, body: CouponCodes, ws: AdminWorkspace) -> dict[str, Any]:
    try:
        loaded = await run_in_threadpool(ws.load_coupons, pool, body.codes)
    except FieldError as exc:
        raise ApiError(400, exc.field, exc.reason) from None
    return loaded.as_dict()


@router.get("/coupons", summary="Every coupon pool: its codes, free and taken", tags=["coupons"])
async def coupon_pools(ws: AdminWorkspace) -> list[dict[str, Any]]:
    return await run_in_threadpool(ws.coupon_pools)
