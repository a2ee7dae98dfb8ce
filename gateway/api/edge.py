"""The edge: what every request gets, in one pure ASGI layer (each extra layer costs the hot path).

- the request, parsed once into the service layer's ``RequestContext``: headers, raw path and query,
  the client address (the socket peer, or what a trusted proxy wrote), the request id, and the policy
  snapshot the whole request is decided under (one read of the policy in force, invariant 13);
- the request's audit scope, on the routes that are audited: written exactly once, here, when the
  answer is over, with the status that was sent and the object bytes that went out (fail-closed:
  confirmed before the answer starts);
- an ``X-Request-ID``, taken from the request when well formed, else made, on every response, and
  in ``gateway.logs.request_id_var`` for every log line and error body of the request;
  ``X-Content-Type-Options: nosniff`` on every response (error bodies echo what clients sent);
- the ``Host`` check (DNS rebinding; gateway.api.hosts); the body deadline (a request body must
  arrive within ``body_timeout`` seconds, or the request ends with 408 and frees its concurrency
  slot); load shedding beyond ``max_concurrency`` requests in flight (a quick 503, never for probes);
- CORS and preflights (gateway.api.cors); request counts and latency by route and status;
- errors become responses here: a ``GatewayError`` that reaches this layer is its JSON answer, and
  anything unexpected is a JSON 500 that names only the request id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.context import attach, raw_path
from gateway.api.cors import VARY_ORIGIN, cors_headers, preflight
from gateway.api.errors import error_body, error_response, internal_error, json_response
from gateway.api.hosts import HostCheck
from gateway.audit.log import AuditLog
from gateway.auth import AuthRequest
from gateway.auth.client_ip import ForwardedHeader, client_address
from gateway.config import Network
from gateway.errors import ClientClosedRequest, GatewayError, RequestTimeout
from gateway.logs import request_id_var
from gateway.metrics import Metrics
from gateway.models import DenyReason
from gateway.routes import route_of
from gateway.service import AuditScope, RequestContext, StateHolder

log = logging.getLogger("gateway.http")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NOSNIFF = (b"x-content-type-options", b"nosniff")


class EdgeMiddleware:
    """See the module docstring. ``holder`` is None on the operators' listener (no policy, no CORS)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, holder: StateHolder | None = None,
                 audit: AuditLog | None = None, trusted_proxies: Sequence[Network] = (),
                 forwarded_header: ForwardedHeader = "x-forwarded-for", max_concurrency: int = 0,
                 hosts: HostCheck | None = None, body_timeout: float = 10.0) -> None:
        self.app = app
        self.metrics = metrics
        self.holder = holder
        self.audit = audit
        self.trusted = tuple(trusted_proxies)
        self.forwarded = forwarded_header
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
        raw_headers = scope["headers"]
        headers: dict[str, str] = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw_headers}
        hosts = 1
        if len(headers) != len(raw_headers):
            # A repeated header: joined with ", " as RFC 9110 allows (and two Host headers are refused).
            headers, hosts = _joined(raw_headers)
        get = headers.get
        host_text = get("host")
        host = host_text.encode("latin-1") if host_text is not None else None
        request_id = get("x-request-id", "")
        if request_id and not _REQUEST_ID.fullmatch(request_id):
            request_id = ""
        origin_text = get("origin")
        origin = origin_text.encode("latin-1") if origin_text is not None else None
        has_body = ("content-length" in headers and headers["content-length"] != "0") or "transfer-encoding" in headers
        is_preflight = "access-control-request-method" in headers
        private_network = get("access-control-request-private-network", "").lower() == "true"
        request_id = request_id or f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        path = scope["path"]
        route = route_of(path)
        state = self.holder.current if self.holder is not None else None  # the one read of the policy
        extra = [(b"x-request-id", request_id.encode()), _NOSNIFF]
        allowed = False
        if state is not None and (origin is not None or state.cors_origins or state.browsers):
            cors, allowed = cors_headers(state, origin, route)
            extra += cors
        audit: AuditScope | None = None
        status = 500
        sent = 0
        response_started = replaced = False
        if has_body:
            receive = self._deadline(receive, started)

        async def send_edge(message: Message) -> None:
            nonlocal status, response_started, sent, replaced
            if message["type"] == "http.response.start":
                if replaced:
                    return  # the answer was replaced by a 503: what the route still sends goes nowhere
                status = message["status"]
                if audit is not None and status < 400 and audit.fail_closed and not audit.written and not replaced:
                    # Fail-closed: no answer leaves before its record is written; else it is a 503.
                    try:
                        await audit.confirm(status, _declared(message) if audit.streams else None)
                    except GatewayError as exc:
                        replaced = True
                        answer = error_response(exc, request_id)
                        status, response_started = answer.status_code, True
                        await send({"type": "http.response.start", "status": status,
                                    "headers": [*answer.raw_headers, *extra]})
                        await send({"type": "http.response.body", "body": answer.body})
                        return
                response_started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            else:
                if replaced:
                    return
                sent += len(message.get("body", b""))
            await send(message)

        try:
            if self.hosts is not None and (hosts > 1 or not self.hosts.allows(host, scope)):
                raise self.hosts.refusal(host, hosts)
            if scope["method"] == "OPTIONS" and state is not None:
                response = preflight(state, origin, allowed, is_preflight, private_network, request_id)
                await response(scope, receive, send_edge)
            elif self.max_concurrency and self.in_flight >= self.max_concurrency and not route.exempt:
                body = error_body("overloaded", "the gateway is at its concurrency limit; retry shortly", request_id)
                await json_response(body, 503, {"Retry-After": "1"})(scope, receive, send_edge)
            else:
                if state is not None and not route.exempt:
                    peer = scope.get("client")
                    peer_ip = peer[0] if peer else None
                    audit = AuditScope(self.audit if route.audited else None, request_id, peer_ip or "-",
                                       headers.get("user-agent", ""), route.action, state.version,
                                       on_undecided=self._undecided)
                    # A trusted proxy's malformed forwarding header is a 400, and audited as one.
                    ip, client = client_address(peer_ip, headers, self.trusted, header=self.forwarded)
                    audit.client = client
                    query = scope.get("query_string", b"").decode("latin-1")
                    request = AuthRequest(scope["method"], raw_path(scope).decode("latin-1"), query, headers, ip,
                                          route.session, client)
                    attach(scope, RequestContext(request, request_id, state, audit))
                self.in_flight += 1
                try:
                    await self.app(scope, receive, send_edge)
                finally:
                    self.in_flight -= 1
        except GatewayError as exc:
            if isinstance(exc, ClientClosedRequest):
                status = exc.status  # nobody is left to answer
            elif not response_started and not replaced:
                await error_response(exc, request_id)(scope, receive, send_edge)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started and not replaced:
                await internal_error(request_id)(scope, receive, send_edge)
        finally:
            if audit is not None:
                audit.close(status, sent)
            self._count(scope["method"], route.label, status, started)
            request_id_var.reset(token)

    def _undecided(self, reason: DenyReason) -> None:
        self.metrics.decisions.labels("deny", reason).inc()

    def _count(self, method: str, label: str, status: int, started: float) -> None:
        if status == ClientClosedRequest.status:
            # Counted apart from the gateway's own errors, so a client cannot raise 5xx alerts.
            log.info("the client went away before its request arrived")
        route = "preflight" if method == "OPTIONS" else label
        counts = self._tally.counts
        counter = self._counters.get((route, status))
        if counter is None:
            counter = self._counters[(route, status)] = self.metrics.requests.labels(route, str(status))
        counts[counter] = counts.get(counter, 0) + 1
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self._tally.histogram(self.metrics.request_seconds.labels(route))
        timer.add(time.perf_counter() - started)

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


def _joined(raw_headers: Sequence[tuple[bytes, bytes]]) -> tuple[dict[str, str], int]:
    """Headers with repeated ones joined with ", ", and how many different Host values came."""
    headers: dict[str, str] = {}
    hosts: set[bytes] = set()
    for raw_name, raw_value in raw_headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if raw_name == b"host":
            hosts.add(raw_value)
    if len(hosts) == 1:  # the same Host twice is one Host
        headers["host"] = next(iter(hosts)).decode("latin-1")
    return headers, max(1, len(hosts))


def _declared(message: Message) -> int | None:
    """The body length an answer declares (its Content-Length), for a fail-closed record."""
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


__all__ = ["VARY_ORIGIN", "EdgeMiddleware"]
