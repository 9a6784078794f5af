"""Key checks shared by the routers: HTTP Basic with the key as user name (Segment's way), or Bearer."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from nudgekit.api.errors import ApiError
from nudgekit.vocabulary import KeyScope
from nudgekit.workspace import Workspace

CHALLENGE = {"WWW-Authenticate": 'Basic realm="nudgekit"'}


def presented_key(request: Request, body_key: object = None) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "authorization", "the Basic credentials are not valid base64", CHALLENGE) from None
        return decoded.partition(":")[0] or None
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return body_key if isinstance(body_key, str) else None


def require(ws: Workspace, request: Request, scope: KeyScope, body_key: object = None) -> None:
    key = presented_key(request, body_key)
    if not key:
        raise ApiError(
            401, "writeKey" if scope == KeyScope.WRITE else "authorization",
            "no key given: send the key as the HTTP Basic user name", CHALLENGE,
        )
    granted = ws.keys.scope_of(key)
    if granted is None:
        field = "writeKey" if scope == KeyScope.WRITE else "authorization"
        raise ApiError(401, field, "this key is unknown or was revoked", CHALLENGE)
    if scope == KeyScope.ADMIN and granted != KeyScope.ADMIN:
        raise ApiError(403, "authorization", "this endpoint needs an admin key (nudge keys create --scope admin)")
