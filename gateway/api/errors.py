"""Maps the error tree to JSON responses, in exactly one place (every layer that answers an error calls
:func:`error_response`)."""

from __future__ import annotations

import logging

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError, MethodNotAllowed, RangeNotSatisfiable, RequestTimeout, Unauthenticated

log = logging.getLogger("gateway.http")
JSON = "application/json"


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_body(code: str, detail: str, request_id: str) -> dict[str, str]:
    return {"error": code, "detail": detail, "request_id": request_id}


def error_response(exc: GatewayError, request_id: str) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        # RFC 6750 error codes for Bearer; the detail never contains the credential itself.
        error = "invalid_request" if exc.reason == "missing" else "invalid_token"
        headers["WWW-Authenticate"] = f'{exc.scheme} realm="gateway", error="{error}"'
    if isinstance(exc, RangeNotSatisfiable):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = exc.allow
    if isinstance(exc, RequestTimeout):
        headers["Connection"] = "close"  # the rest of the body may still be on its way
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    detail = exc.detail if exc.status < 500 else _public_5xx(exc)
    return json_response(error_body(exc.code, detail, request_id), exc.status, headers)


def _public_5xx(exc: GatewayError) -> str:
    # 5xx details are written by us for the client (no exception text from libraries).
    return exc.detail if exc.code != "internal_error" else "internal error; quote the request id"


def internal_error(request_id: str) -> Response:
    return json_response(error_body("internal_error", "internal error; quote the request id", request_id), 500)

