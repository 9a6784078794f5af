"""API errors as values with a status: every refusal names the field and the reason."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, field: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.field = field
        self.reason = reason
        self.headers = headers

    def response(self) -> JSONResponse:
        return refusal(self.status, [{"field": self.field, "reason": self.reason}], self.headers)


CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large",
         415: "unsupported_encoding", 503: "unavailable"}


def refusal(status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> JSONResponse:
    """Our error body. `code` and `message` are what Segment and RudderStack client libraries read."""
    first = errors[0] if errors else {}
    message = f"{first['field']}: {first['reason']}" if first.get("field") else str(first.get("reason", ""))
    body = {"success": False, "code": CODES.get(status, "error"), "message": message, "errors": errors}
    return JSONResponse(body, status_code=status, headers=headers)
