"""What goes over the wire to discord.py: JSON answers it can read, Discord's error bodies, and the keys a
request carries between the middleware and the handlers."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

API_PREFIX = "/api/v10"
CDN_PREFIX = "/attachments"  # the files users attach, as Discord's CDN serves them


# Per-request storage keys (web.RequestKey where aiohttp has it, to avoid NotAppKeyWarning).
_RequestKey = getattr(web, "RequestKey", None)
BODY = _RequestKey("fake_body", object) if _RequestKey else "fake_body"
CALL = _RequestKey("fake_call", object) if _RequestKey else "fake_call"
BUCKET = _RequestKey("fake_bucket_headers", object) if _RequestKey else "fake_bucket_headers"


class HttpError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text() compares the header verbatim.
    response = web.Response(status=status, body=json.dumps(data).encode())
    response.headers["Content-Type"] = "application/json"
    response.headers.update(headers or {})
    return response


def error_body(code: int, message: str, errors: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors:
        body["errors"] = errors
    return body

