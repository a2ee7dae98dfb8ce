"""The object routes. Thin: parse the request, call one service function, shape the response.

``/v1/datasets/...`` and ``/v1/local/...`` are dispatched on the raw path before any router, so
that the key arrives exactly as sent (percent-encoding intact) and the hot path skips FastAPI's
per-request validation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import LOCAL, OBJECTS, header_map, raw_path, request_context, split_path
from gateway.api.errors import error_response, json_response
from gateway.api.fastlane import GRANT_KEY, key_matches, redirect_headers, session_key
from gateway.api.files import file_response
from gateway.errors import BadRequest, GatewayError, MethodNotAllowed
from gateway.models import SignedUrl

if TYPE_CHECKING:
    from gateway.app import Runtime



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


class RawResponse:
    """A body-less response sent as two ASGI messages: the redirect is the hot path, and building a
    Starlette Response (header normalization, content-length rendering) costs more than the rest."""

    __slots__ = ("status", "headers")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b""})


class ObjectRoutes:
    """Serves the object and local-file routes; hands everything else to the inner app."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = raw_path(scope)
        if path.startswith(OBJECTS):
            handler = self.objects
        elif path.startswith(LOCAL):
            handler = self.local
        else:
            await self.app(scope, receive, send)
            return
        response: Response | RawResponse
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise MethodNotAllowed("use GET or HEAD")
            response = await handler(scope, path)
        except GatewayError as exc:
            response = error_response(exc, scope["state"]["request_id"])
            if isinstance(exc, MethodNotAllowed):
                response.headers["Allow"] = "GET, HEAD, OPTIONS"
        await response(scope, receive, send)

    async def objects(self, scope: Scope, path: bytes) -> Response | RawResponse:
        dataset, raw_key = split_path(path, OBJECTS, b"objects/")
        runtime = self.runtime
        service = runtime.service
        headers = header_map(scope)
        state = runtime.holder.current  # before authenticating: a session is only kept for this state
        ctx = await request_context(scope, service, runtime.settings.trusted_proxies, headers=headers)
        as_json = _wants_json(scope, headers)
        grant_key = scope["state"].get(GRANT_KEY)
        if grant_key is not None and (as_json or not key_matches(grant_key, headers)):
            grant_key = None
        if grant_key is not None:
            service.sessions.remember(session_key(grant_key), state, ctx.principal, ctx.client_ip)
        url = await service.sign(ctx, dataset, raw_key, action="sign" if as_json else "redirect",
                                 status=200 if as_json else 302, grant_key=grant_key)
        max_age = service.cache_max_age(url)
        if as_json:
            return json_response(url_json(url), 200, {
                "Cache-Control": f"private, max-age={max_age}", "Referrer-Policy": "no-referrer", "Vary": "Accept"})
        return RawResponse(302, redirect_headers(url.url.encode("latin-1"), max_age))

    async def local(self, scope: Scope, path: bytes) -> Response | RawResponse:
        dataset, raw_key = split_path(path, LOCAL, b"")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        exp, sig = query.get("exp", [""]), query.get("sig", [""])
        if len(exp) != 1 or len(sig) != 1:
            raise BadRequest("give exp and sig exactly once")
        runtime = self.runtime
        headers = header_map(scope)
        # The URL's own signature is the credential here; no other authentication applies.
        ctx = await request_context(scope, runtime.service, runtime.settings.trusted_proxies, authenticate=False,
                                    headers=headers)
        file = await runtime.service.resolve_local(ctx, dataset, raw_key, exp[0], sig[0])
        max_age = max(0, int(exp[0]) - int(runtime.clock()))
        return file_response(file, scope["method"], headers, max_age)

