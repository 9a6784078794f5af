"""Click and open tracking over HTTP (tracking/__init__.py):

- `GET /c/{token}`: a tracked link in a message; records the click and redirects (302) to the link as
  written. A token this workspace did not make gets a 404 page and is never redirected anywhere (no open
  redirect). `HEAD` answers the same without recording a click (mail scanners look before people do).
- `GET /o/{token}`: an email's open pixel; records the open and answers a transparent 1×1 GIF.

Neither needs a key: the token is the proof. Neither is cached, so every click and open reaches us.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nudgekit import tracking
from nudgekit.workspace import Workspace

router = APIRouter(tags=["tracking"])
NO_STORE = {"Cache-Control": "no-store, private", "X-Robots-Tag": "noindex"}
UNKNOWN = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>링크를 찾을 수 없습니다</title>
</head><body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
<h1>링크를 찾을 수 없습니다</h1><p>주소가 잘못되었거나 더 이상 쓰이지 않는 링크입니다.</p>
<p style="color:#555">This link is not one we know: it may be mistyped or cut short.</p></body></html>"""


def _unknown() -> HTMLResponse:
    return HTMLResponse(UNKNOWN, status_code=404, headers=NO_STORE)


@router.api_route("/c/{token}", methods=["GET", "HEAD"], summary="A tracked link: records the click, redirects")
async def click(request: Request, token: str) -> Response:
    ws: Workspace = request.app.state.ws
    url = await run_in_threadpool(ws.follow_link, token, record=request.method == "GET",
                                  user_agent=request.headers.get("user-agent"))
    if not url:
        return _unknown()
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/o/{token}", summary="An email's open pixel: records the open")
async def open_pixel(request: Request, token: str) -> Response:
    ws: Workspace = request.app.state.ws
    known = await run_in_threadpool(ws.open_pixel, token, user_agent=request.headers.get("user-agent"))
    return Response(tracking.GIF, status_code=200 if known else 404, media_type="image/gif", headers=NO_STORE)
