"""The edge: what every request gets, in one pure ASGI layer (each extra layer costs the hot path).

- an ``X-Request-ID``, taken from the request when well formed, else made, on every response, and
  in ``gateway.logs.request_id_var`` for every log line and error body of the request;
  ``X-Content-Type-Options: nosniff`` on every response (error bodies echo what clients sent);
- the ``Host`` check (DNS rebinding): only the configured names are served; a missing ``Host`` on
  HTTP/1.1, or two different ones, is a 400 (gateway.api.hosts);
- the body deadline: a request body must arrive within ``body_timeout`` seconds, or the request
  ends with 408 and frees its concurrency slot (slow clients cannot lock everyone out);
- request counts and latency by route and status;
- load shedding: beyond ``max_concurrency`` requests in flight, a quick 503 with Retry-After
  instead of an unbounded queue (probes and metrics are never shed);
- CORS for configured origins only, read per request so that a policy reload applies at once.
  There is no ``*`` by default: a loopback gateway with ``*`` would let any website read it
  through the user's browser. Preflights are answered here, without authentication, including
  Private Network Access (``Access-Control-Request-Private-Network``) for allowed origins;
- browser sessions (when an issuer has ``browser:``): on the routes that accept the session cookie
  (``SESSION_PATHS``) every answer carries ``Vary: Cookie``, and the embedders get CORS with
  ``Access-Control-Allow-Credentials: true`` there (and only there), so that their pages can send
  the cookie with ``fetch(..., {credentials: "include"})`` and read the answer;
- errors become responses here: a ``GatewayError`` that reaches this layer is its JSON answer,
  and anything unexpected is a JSON 500 that names only the request id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import error_body, error_response, internal_error, json_response
from gateway.api.hosts import HostCheck
from gateway.errors import ClientClosedRequest, GatewayError, RequestTimeout
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
    "authorization, content-type, x-request-id, range, if-none-match, if-modified-since, if-range, "
    "x-gateway-key-id, x-gateway-timestamp, x-gateway-signature"
)
EXPOSE_HEADERS = b"x-request-id, content-range, content-length, etag, last-modified, accept-ranges"
EXEMPT = ("/healthz", "/readyz", "/metrics")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_VARY_ORIGIN = (b"vary", b"Origin")
SESSION_PATHS = ("/v1/datasets/", "/v1/auth/")  # where a browser session may be used


class EdgeMiddleware:
    """See the module docstring. ``origins`` and ``max_age`` are read per request (policy reloads)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, origins: Callable[[], frozenset[str]],
                 max_age: Callable[[], int], max_concurrency: int = 0, hosts: HostCheck | None = None,
                 body_timeout: float = 10.0, embedders: Callable[[], frozenset[str] | None] = lambda: None) -> None:
        self.app = app
        self.metrics = metrics
        self.origins = origins
        self.embedders = embedders  # None: no browser sign-in configured
        self.max_age = max_age
        self.max_concurrency = max_concurrency
        self.hosts = hosts
        self.body_timeout = body_timeout
        self.in_flight = 0
        self._tally = metrics.tally
        # Label lookups cost microseconds each; the label sets are small and fixed, so keep them.
        self._counters: dict[tuple[str, int], Any] = {}
        self._timers: dict[str, Any] = {}  # route -> its latency histogram's pending observations
        # Unique per process (random prefix) and cheap per request (a counter): ids are not secrets.
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        origin: bytes | None = None
        host: bytes | None = None
        hosts = 0
        has_body = preflight = private_network = False
        for name, value in scope["headers"]:
            if name == b"host":
                hosts += host != value
                host = value
            elif name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                request_id = value.decode("ascii")
            elif name == b"origin":
                origin = value
            elif name == b"content-length":
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"access-control-request-method":
                preflight = True
            elif name == b"access-control-request-private-network":
                private_network = value.lower() == b"true"
        request_id = request_id or f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        extra = [(b"x-request-id", request_id.encode()), _NOSNIFF]
        # Browser sessions: answers that depend on the cookie say so, and embedders get credentialed CORS.
        embedders = self.embedders()
        credentialed = False
        if embedders is not None and scope["path"].startswith(SESSION_PATHS):
            extra.append((b"vary", b"Cookie"))
            credentialed = origin is not None and origin.decode("latin-1") in embedders
        cors = origin is not None and (credentialed or self._allowed(origin))
        if cors and origin is not None:
            extra += [(b"access-control-allow-origin", origin), (b"access-control-expose-headers", EXPOSE_HEADERS),
                      _VARY_ORIGIN]
            if credentialed:
                extra.append((b"access-control-allow-credentials", b"true"))
        elif self.origins() or embedders:
            # The answer depends on Origin wherever CORS is configured, allowed or not: caches must know.
            extra.append(_VARY_ORIGIN)
        if has_body:
            receive = self._deadline(receive, started)

        async def send_edge(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            if self.hosts is not None and (hosts > 1 or not self.hosts.allows(host, scope)):
                raise self.hosts.refusal(host, hosts)
            if scope["method"] == "OPTIONS":
                response = self._preflight(origin, cors, preflight, private_network, request_id)
                await response(scope, receive, send_edge)
            elif self.max_concurrency and self.in_flight >= self.max_concurrency and scope["path"] not in EXEMPT:
                body = error_body("overloaded", "the gateway is at its concurrency limit; retry shortly", request_id)
                await json_response(body, 503, {"Retry-After": "1"})(scope, receive, send_edge)
            else:
                self.in_flight += 1
                try:
                    await self.app(scope, receive, send_edge)
                finally:
                    self.in_flight -= 1
        except GatewayError as exc:
            if isinstance(exc, ClientClosedRequest):
                status = exc.status  # nobody is left to answer
            elif not response_started:
                await error_response(exc, request_id)(scope, receive, send_edge)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await internal_error(request_id)(scope, receive, send_edge)
        finally:
            if status == ClientClosedRequest.status:
                # Counted apart from the gateway's own errors, so a client cannot raise 5xx alerts.
                log.info("the client went away before its request arrived", extra={"request_id": request_id})
            route = route_label(scope["method"], scope["path"])
            counts = self._tally.counts
            counter = self._counters.get((route, status))
            if counter is None:
                counter = self._counters[(route, status)] = self.metrics.requests.labels(route, str(status))
            counts[counter] = counts.get(counter, 0) + 1
            timer = self._timers.get(route)
            if timer is None:
                timer = self._timers[route] = self._tally.histogram(self.metrics.request_seconds.labels(route))
            timer.add(time.perf_counter() - started)
            request_id_var.reset(token)

    def _deadline(self, receive: Receive, started: float) -> Receive:
        """``receive`` that raises RequestTimeout once the body is overdue (checked per message)."""
        deadline = time.monotonic() + self.body_timeout - (time.perf_counter() - started)
        timeout = self.body_timeout

        async def receive_by_deadline() -> Message:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                return await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                raise RequestTimeout(f"the request body did not arrive within {timeout:g}s") from None

        return receive_by_deadline

    def _allowed(self, origin: bytes) -> bool:
        allowed = self.origins()
        return bool(allowed) and (origin.decode("latin-1") in allowed or "*" in allowed)

    def _preflight(self, origin: bytes | None, allowed: bool, is_preflight: bool, private_network: bool,
                   request_id: str) -> Response:
        if origin is None or not is_preflight:
            return Response(status_code=204, headers={"Allow": ALLOW_METHODS})
        if not allowed:
            body = error_body("cors_origin_not_allowed", "this origin is not in cors.allow_origins", request_id)
            return json_response(body, 403, {"Vary": "Origin"})
        headers = {
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(self.max_age()),
        }
        if private_network:
            # Chromium asks before a public page may read a loopback or private address (Private
            # Network Access); only an origin this gateway already trusts is told yes.
            headers["Access-Control-Allow-Private-Network"] = "true"
        # The origin, expose and vary headers are added by send_edge like on every allowed response.
        return Response(status_code=204, headers=headers)
