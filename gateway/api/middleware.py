"""Pure ASGI middleware: request ids and metrics on every response, and CORS from the policy."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import error_body, internal_error, json_response
from gateway.logs import request_id_var
from gateway.metrics import Metrics

log = logging.getLogger("gateway.http")
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ROUTES = (
    ("/v1/datasets/", "objects"),
    ("/v1/sign", "sign"),
    ("/v1/local/", "local"),
    ("/healthz", "healthz"),
    ("/readyz", "readyz"),
    ("/metrics", "metrics"),
)


def route_label(method: str, path: str) -> str:
    if method == "OPTIONS":
        return "preflight"
    for prefix, label in _ROUTES:
        if path.startswith(prefix):
            return label
    return "other"


class RequestIdMiddleware:
    """Takes a well-formed ``X-Request-ID`` or makes one, puts it on every response, counts the
    request, and turns anything unexpected into a JSON 500 that names only the request id."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Label lookups cost microseconds each; the label sets are small and fixed, so keep them.
        self._counters: dict[tuple[str, int], Any] = {}
        # Unique per process (random prefix) and cheap per request (a counter): ids are not secrets.
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._timers: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                request_id = value.decode("ascii")
                break
        request_id = request_id or f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await internal_error(request_id)(scope, receive, send_with_id)
        finally:
            route = route_label(scope["method"], scope["path"])
            counter = self._counters.get((route, status))
            if counter is None:
                counter = self._counters[(route, status)] = self.metrics.requests.labels(route, str(status))
            counter.inc()
            timer = self._timers.get(route)
            if timer is None:
                timer = self._timers[route] = self.metrics.request_seconds.labels(route)
            timer.observe(time.perf_counter() - started)
            request_id_var.reset(token)


class LoadShedMiddleware:
    """Refuses work beyond ``limit`` requests in flight with a quick 503 and Retry-After, instead of
    queueing without bound (which turns a burst into seconds of p99 for everyone). Probes and
    metrics are never shed."""

    EXEMPT = ("/healthz", "/readyz", "/metrics")

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            request_id = scope["state"].get("request_id", "-")
            body = error_body("overloaded", "the gateway is at its concurrency limit; retry shortly", request_id)
            await json_response(body, 503, {"Retry-After": "1"})(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
ALLOW_HEADERS = (
    "authorization, content-type, x-request-id, range, if-none-match, if-modified-since, "
    "x-gateway-key-id, x-gateway-timestamp, x-gateway-signature"
)
EXPOSE_HEADERS = "x-request-id, content-range, content-length, etag, last-modified, accept-ranges"


class CorsMiddleware:
    """CORS only for configured origins, read per request so that a policy reload applies at once.

    There is no ``*`` by default: a loopback gateway with ``*`` would let any website read it
    through the user's browser. Preflights are answered without authentication.
    """

    def __init__(self, app: ASGIApp, origins: Callable[[], frozenset[str]], max_age: Callable[[], int]) -> None:
        self.app = app
        self.origins = origins
        self.max_age = max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = None
        preflight_method = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight_method = value
        allowed_origins = self.origins()
        allowed = origin is not None and (origin in allowed_origins or "*" in allowed_origins)
        if scope["method"] == "OPTIONS":
            await self._preflight(scope, receive, send, origin, allowed, preflight_method is not None)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Access-Control-Allow-Origin"] = origin or ""
                headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
                headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, receive: Receive, send: Send, origin: str | None,
                         allowed: bool, is_preflight: bool) -> None:
        request_id = scope["state"].get("request_id", "-")
        response: Response
        if origin is None or not is_preflight:
            response = Response(status_code=204, headers={"Allow": ALLOW_METHODS})
        elif not allowed:
            body = error_body("cors_origin_not_allowed", "this origin is not in cors.allow_origins", request_id)
            response = json_response(body, 403, {"Vary": "Origin"})
        else:
            response = Response(status_code=204, headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(self.max_age()),
                "Vary": "Origin",
            })
        await response(scope, receive, send)
