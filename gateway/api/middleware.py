"""Pure ASGI middleware: request ids and metrics on every response, and CORS from the policy."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

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


ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
ALLOW_HEADERS = (
    "authorization, content-type, x-request-id, range, if-none-match, if-modified-since, "
    "x-gateway-key-id, x-gateway-timestamp, x-gateway-signature"
)
EXPOSE_HEADERS = b"x-request-id, content-range, content-length, etag, last-modified, accept-ranges"
EXEMPT = ("/healthz", "/readyz", "/metrics")


class EdgeMiddleware:
    """Everything every request gets, in one layer (each extra ASGI layer costs the hot path):

    - an ``X-Request-ID``, taken from the request when well formed, else made, on every response;
    - request counts and latency by route and status;
    - load shedding: beyond ``max_concurrency`` requests in flight, a quick 503 with Retry-After
      instead of an unbounded queue (probes and metrics are never shed);
    - CORS for configured origins only, read per request so that a policy reload applies at once.
      There is no ``*`` by default: a loopback gateway with ``*`` would let any website read it
      through the user's browser. Preflights are answered without authentication;
    - anything unexpected becomes a JSON 500 that names only the request id.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, *, origins: Callable[[], frozenset[str]],
                 max_age: Callable[[], int], max_concurrency: int = 0) -> None:
        self.app = app
        self.metrics = metrics
        self.origins = origins
        self.max_age = max_age
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        # Label lookups cost microseconds each; the label sets are small and fixed, so keep them.
        self._counters: dict[tuple[str, int], Any] = {}
        self._timers: dict[str, Any] = {}
        # Unique per process (random prefix) and cheap per request (a counter): ids are not secrets.
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        origin: bytes | None = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                request_id = value.decode("ascii")
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        request_id = request_id or self._new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        cors = origin is not None and self._allowed(origin)
        extra = [(b"x-request-id", request_id.encode())]
        if cors and origin is not None:
            extra += self._cors(origin)

        async def send_edge(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        shed = self.max_concurrency and scope["path"] not in EXEMPT
        try:
            if scope["method"] == "OPTIONS":
                await self._preflight(origin, cors, preflight, request_id)(scope, receive, send_edge)
            elif shed and self.in_flight >= self.max_concurrency:
                body = error_body("overloaded", "the gateway is at its concurrency limit; retry shortly", request_id)
                await json_response(body, 503, {"Retry-After": "1"})(scope, receive, send_edge)
            else:
                self.in_flight += 1
                try:
                    await self.app(scope, receive, send_edge)
                finally:
                    self.in_flight -= 1
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await internal_error(request_id)(scope, receive, send_edge)
        finally:
            route = route_label(scope["method"], scope["path"])
            counter = self._counters.get((route, status))
            if counter is None:
                counter = self._counters[(route, status)] = self.metrics.requests.labels(route, str(status))
            tally = self.metrics.tally
            tally.inc(counter)
            timer = self._timers.get(route)
            if timer is None:
                timer = self._timers[route] = self.metrics.request_seconds.labels(route)
            tally.observe(timer, time.perf_counter() - started)
            request_id_var.reset(token)

    def _new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"

    def request_id(self, sent: bytes | None) -> str:
        """The request's id: the client's ``X-Request-ID`` when well formed, else a new one."""
        if sent is not None and _REQUEST_ID.fullmatch(sent):
            return sent.decode("ascii")
        return self._new_request_id()

    def cors_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        """The CORS headers of a (non-preflight) answer to ``origin``; none for a foreign origin."""
        return self._cors(origin) if self._allowed(origin) else []

    @staticmethod
    def _cors(origin: bytes) -> list[tuple[bytes, bytes]]:
        return [(b"access-control-allow-origin", origin), (b"access-control-expose-headers", EXPOSE_HEADERS),
                (b"vary", b"Origin")]

    def _allowed(self, origin: bytes) -> bool:
        allowed = self.origins()
        return bool(allowed) and (origin.decode("latin-1") in allowed or "*" in allowed)

    def _preflight(self, origin: bytes | None, allowed: bool, is_preflight: bool, request_id: str) -> Response:
        if origin is None or not is_preflight:
            return Response(status_code=204, headers={"Allow": ALLOW_METHODS})
        if not allowed:
            body = error_body("cors_origin_not_allowed", "this origin is not in cors.allow_origins", request_id)
            return json_response(body, 403, {"Vary": "Origin"})
        # The origin, expose and vary headers are added by send_edge like on every allowed response.
        return Response(status_code=204, headers={
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(self.max_age()),
        })
