"""The object routes. Thin: parse the request, call one service function, shape the response.

``/v1/datasets/...`` and ``/v1/local/...`` are dispatched on the raw path before any router, so
that the key arrives exactly as sent (percent-encoding intact) and the hot path skips FastAPI's
per-request validation. Errors are raised, and become answers at the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import LOCAL, OBJECTS, header_map, raw_path, request_context, split_path
from gateway.api.errors import json_response
from gateway.api.files import file_response
from gateway.api.proxy import serve_object
from gateway.auth.client_ip import ForwardedHeader
from gateway.config import Network
from gateway.errors import BadRequest, MethodNotAllowed
from gateway.models import SignedUrl
from gateway.service import GatewayService, ProxyReads

_REDIRECT = [(b"referrer-policy", b"no-referrer"), (b"vary", b"Accept"), (b"content-length", b"0")]


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def url_json(url: SignedUrl) -> dict[str, str]:
    return {"url": url.url, "expires_at": rfc3339(url.expires_at)}


def _wants_json(scope: Scope, headers: dict[str, str]) -> bool:
    query = scope.get("query_string", b"")
    if b"format=json" in query and parse_qs(query.decode("latin-1")).get("format") == ["json"]:
        return True
    accept = headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def redirect(send: Send, url: SignedUrl, max_age: int) -> None:
    """Send the redirect as two raw ASGI messages: it is the hot path, and a Starlette Response
    (header normalization, content-length rendering) costs more than the rest. The Location is the
    backend's URL for the authorized key; nothing from the request is in it."""
    headers = [(b"location", url.url.encode("latin-1")), (b"cache-control", b"private, max-age=%d" % max_age),
               *_REDIRECT]
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class ObjectRoutes:
    """Serves the object and local-file routes; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, service: GatewayService, *, trusted_proxies: Sequence[Network],
                 forwarded_header: ForwardedHeader = "x-forwarded-for", proxy: ProxyReads | None = None) -> None:
        self.app = app
        self.service = service
        self.trusted = tuple(trusted_proxies)
        self.forwarded = forwarded_header
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = raw_path(scope)
        if path.startswith(OBJECTS):
            if scope["method"] not in ("GET", "HEAD"):
                raise MethodNotAllowed("use GET or HEAD")
            await self.objects(scope, receive, send, path)
        elif path.startswith(LOCAL):
            if scope["method"] not in ("GET", "HEAD"):
                raise MethodNotAllowed("use GET or HEAD")
            await (await self.local(scope, path))(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def objects(self, scope: Scope, receive: Receive, send: Send, path: bytes) -> None:
        dataset, raw_key = split_path(path, OBJECTS, b"objects/")
        headers = header_map(scope)
        wants_json = _wants_json(scope, headers)
        if self.proxy is not None and dataset in self.service.holder.current.policy.proxied and (
                not wants_json or b"sig=" in scope.get("query_string", b"")):
            # delivery: proxy streams the object itself (one set lookup for every other request);
            # its JSON answer below holds a gateway URL, which is streamed when used.
            await serve_object(self.proxy, self.trusted, scope, receive, send, dataset, raw_key, headers,
                               self.forwarded)
            return
        ctx = await request_context(scope, self.service, self.trusted, headers=headers,
                                    forwarded_header=self.forwarded)
        if wants_json:
            url, max_age = await self.service.sign(ctx, dataset, raw_key, action="sign", status=200)
            response = json_response(url_json(url), 200, {
                "Cache-Control": f"private, max-age={max_age}", "Referrer-Policy": "no-referrer", "Vary": "Accept"})
            await response(scope, receive, send)
            return
        url, max_age = await self.service.sign(ctx, dataset, raw_key, action="redirect", status=302)
        await redirect(send, url, max_age)

    async def local(self, scope: Scope, path: bytes) -> Response:
        dataset, raw_key = split_path(path, LOCAL, b"")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        exp, sig = query.get("exp", [""]), query.get("sig", [""])
        if len(exp) != 1 or len(sig) != 1:
            raise BadRequest("give exp and sig exactly once")
        headers = header_map(scope)
        # The URL's own signature is the credential here; no other authentication applies.
        ctx = await request_context(scope, self.service, self.trusted, authenticate=False, headers=headers,
                                    forwarded_header=self.forwarded)
        file = await self.service.resolve_local(ctx, dataset, raw_key, exp[0], sig[0])
        return file_response(file.path, scope["method"], headers, file.max_age, etag_key=file.etag_key)
