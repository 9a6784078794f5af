"""Withdrawing consent over HTTP:

- `GET /u/{link}`: the unsubscribe page an advertising email links to: one button (and a box to refuse
  every channel); the page after it shows the result, which is the person's result notice;
- `POST /u/{link}` with `List-Unsubscribe=One-Click`: RFC 8058's one-click unsubscribe, posted by the mail
  provider from the `List-Unsubscribe` header, answered without a page, a login or a cookie;
- `POST /v1/sms/replies` (admin key): text messages people sent back, for an SMS provider's inbound webhook;
  "수신거부" / "STOP" withdraws advertising for that number.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from nudgekit.api.auth import require
from nudgekit.consent.optout import CHANNEL_NAMES
from nudgekit.profiles.contacts import FieldError
from nudgekit.vocabulary import Channel, KeyScope
from nudgekit.workspace import Workspace

router = APIRouter(tags=["withdrawing consent"])


PAGE = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #444;background:#222;color:#fff}}
p.en{{color:#555}}</style></head><body>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), body=body), status_code=status,
                        headers={"Cache-Control": "no-store"})


def _broken(reason: str) -> HTMLResponse:
    return _page("수신거부 링크 오류", f"<h1>링크를 확인할 수 없습니다</h1><p class=en>This unsubscribe link cannot be "
                 f"used: {html.escape(reason)}</p><p>보내신 곳에 직접 수신거부를 요청해 주세요.</p>", 404)


@router.get("/u/{link}", response_class=HTMLResponse, summary="The unsubscribe page an email links to")
async def unsubscribe_page(request: Request, link: str) -> HTMLResponse:
    ws: Workspace = request.app.state.ws
    try:
        channel = await run_in_threadpool(ws.unsubscribe_channel, link)
    except FieldError as exc:
        return _broken(exc.reason)
    en, ko = CHANNEL_NAMES[channel]
    sender = html.escape(ws.settings.sender.name or ws.settings.brand)
    body = (f"<h1>{sender} 광고 수신거부</h1><p>{sender}의 {ko} 광고성 정보를 더 이상 받지 않습니다.</p>"
            f"<p class=en>Stop advertising {en} from {sender}.</p>"
            f'<form method="post"><input type="hidden" name="confirm" value="yes">'
            f'<p><label><input type="checkbox" name="every" value="yes"> 모든 채널(문자, 카카오톡, 앱 푸시, 이메일)의 '
            f"광고 수신거부 / every channel</label></p><button type=submit>수신거부 / Unsubscribe</button></form>")
    return _page("광고 수신거부", body)


@router.post("/u/{link}", summary="Unsubscribe: the page's button, or RFC 8058 one-click (List-Unsubscribe=One-Click)")
async def unsubscribe(request: Request, link: str) -> Any:
    ws: Workspace = request.app.state.ws
    raw = (await request.body())[:4096]
    form = parse_qs(raw.decode("utf-8", "replace"))
    # RFC 8058 allows the one-click body as application/x-www-form-urlencoded or multipart/form-data
    one_click = form.get("List-Unsubscribe") == ["One-Click"] or (
        b'name="List-Unsubscribe"' in raw and b"One-Click" in raw)
    every = form.get("every") == ["yes"]
    try:
        done = await run_in_threadpool(lambda: ws.unsubscribe(link, every_channel=every, one_click=one_click,
                                                              shown=not one_click))
    except FieldError as exc:
        if one_click:
            return PlainTextResponse(exc.reason, status_code=404)
        return _broken(exc.reason)
    if one_click:
        return PlainTextResponse("unsubscribed")
    day = done["day"]
    sender = html.escape(done["sender"])
    ko = ", ".join(CHANNEL_NAMES[Channel(c)][1] for c in done["channels"])
    en = ", ".join(CHANNEL_NAMES[Channel(c)][0] for c in done["channels"])
    body = (f"<h1>수신거부가 처리되었습니다</h1><p>{sender}: {day}에 요청하신 {ko} 광고성 정보 수신거부가 "
            f"{day}에 처리되었습니다. 앞으로 광고성 정보를 보내지 않습니다.</p>"
            f"<p class=en>{sender}: your request of {day} to stop advertising by {en} was processed on {day}. "
            "You will receive no more advertising there.</p>")
    return _page("수신거부 완료", body)


class Reply(BaseModel):
    """A text message a person sent to one of the workspace's numbers."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, max_length=40, description="The number it came from")
    text: str = Field(max_length=2000)
    at: datetime | None = Field(None, description="When it was sent (default: now)")
    id: str | None = Field(None, max_length=200, description="The provider's id for it: a retried webhook "
                           "records it once")


class Replies(BaseModel):
    replies: list[Reply] = Field(min_length=1, max_length=1000)


@router.post("/v1/sms/replies", tags=["withdrawing consent"],
             summary='Text messages people sent back ("수신거부", "STOP" withdraw advertising)')
async def sms_replies(request: Request, body: Replies | Reply) -> dict[str, Any]:
    ws: Workspace = request.app.state.ws
    require(ws, request, KeyScope.ADMIN)
    replies = body.replies if isinstance(body, Replies) else [body]
    answers = []
    for reply in replies:
        try:
            answers.append(await run_in_threadpool(
                lambda r=reply: ws.sms_reply(r.from_, r.text, at=r.at, reply_id=r.id)))
        except FieldError as exc:
            answers.append({"from": reply.from_, "error": {"field": exc.field, "reason": exc.reason}})
    return {"replies": answers}
