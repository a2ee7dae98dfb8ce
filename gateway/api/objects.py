"""The object routes. Thin: read the request's context, call one use case, shape the answer.

``/v1/datasets/...`` and ``/v1/local/...`` are dispatched on the raw path before any router, so that
the key arrives exactly as sent (percent-encoding intact) and the hot path skips FastAPI's
per-request validation. Errors are raised, and become answers at the edge. Which use case runs is
chosen from the request alone (a URL signature in the query, the dataset's delivery in the
request's policy snapshot); every one of them is let in by the same admit step, so a caller that is
refused hears the same whichever it was.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import context_of, split_path
from gateway.api.errors import json_response
from gateway.api.files import file_response
from gateway.api.proxy import serve_object
from gateway.auth import AuthRequest
from gateway.errors import CrossSiteRefused, MethodNotAllowed, NotFound, Unauthenticated
from gateway.models import AuthMethod, SignedUrl
from gateway.routes import LOCAL, OBJECTS, OBJECTS_MIDDLE
from gateway.service import RequestContext, UseCases, url_signature
from gateway.service.url_signature import UrlSignature

_REDIRECT = [(b"referrer-policy", b"no-referrer"), (b"vary", b"Accept"), (b"content-length", b"0")]
_NO_SIGNATURE = UrlSignature("local", "", "")


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def url_json(url: SignedUrl) -> dict[str, str]:
    return {"url": url.url, "expires_at": rfc3339(url.expires_at)}


def _wants_json(request: AuthRequest) -> bool:
    query = request.query
    if "format=json" in query and "format=json" in query.split("&"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def redirect(send: Send, url: SignedUrl, cache_control: bytes, renewal: str | None = None) -> None:
    """Send the redirect as two raw ASGI messages: it is the hot path, and a Starlette Response
    (header normalization, content-length rendering) costs more than the rest. The Location is the
    backend's URL for the authorized key; nothing from the request is in it."""
    headers = [(b"location", url.url.encode("latin-1")), (b"cache-control", cache_control), *_REDIRECT]
    if renewal is not None:
        headers.append((b"set-cookie", renewal.encode("latin-1")))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _navigation(ctx: RequestContext) -> bool:
    headers = ctx.headers
    return (ctx.request.method == "GET" and headers.get("sec-fetch-mode") == "navigate"
            and headers.get("sec-fetch-dest") == "document")


def _sign_in_helps(exc: Unauthenticated) -> bool:
    """A top-level navigation without a (live) session is sent to sign in; a subresource (an
    <img>, a fetch) gets the 401: a page of 500 thumbnails must not start 500 sign-ins."""
    return exc.reason == "missing" or (exc.scheme == "Session" and exc.reason not in ("duplicate", "wrong_route"))


def _target(ctx: RequestContext) -> str:
    return ctx.request.path + ("?" + ctx.query if ctx.query else "")


class ObjectRoutes:
    """Serves the object and local-file routes; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, use_cases: UseCases) -> None:
        self.app = app
        self.use = use_cases

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith((OBJECTS, LOCAL)):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowed("use GET or HEAD")
        ctx = context_of(scope)
        if ctx.request.path.startswith(OBJECTS):
            await self.objects(ctx, scope, receive, send)
        elif ctx.request.path.startswith(LOCAL):
            await self.local(ctx, scope, receive, send)
        else:  # the decoded path is an object path, the raw one is not (an encoded "/v1/%64atasets/")
            raise NotFound("there is no such route")

    async def objects(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        request = ctx.request
        dataset, tail = split_path(request.path, OBJECTS, OBJECTS_MIDDLE)
        raw_key = tail.encode("latin-1")  # the raw bytes as sent (the path was decoded as latin-1)
        signature = url_signature(request.query, "gateway")
        as_json = _wants_json(request)
        try:
            if signature is not None or (dataset in ctx.state.policy.proxied and not as_json):
                # A gateway URL (its signature is its credential), or delivery: proxy: the object itself.
                await serve_object(self.use.proxy, ctx, scope, receive, send, dataset, raw_key, signature)
                return
            url, max_age, admitted = await self.use.redirects.one(ctx, dataset, raw_key, as_json=as_json)
        except (Unauthenticated, CrossSiteRefused) as exc:
            if not self.use.signin.enabled(ctx.state) or not _navigation(ctx):
                raise
            if isinstance(exc, CrossSiteRefused):
                # A link on another site (or the way back from the issuer after sign-in): the
                # session is not used for it; the gateway's own page asks the user to continue.
                await self._see_other(scope, receive, send, self.use.signin.continue_url(_target(ctx)))
                return
            if not _sign_in_helps(exc):
                raise
            # 303 to sign-in, which brings the browser back to this very object.
            here = self.use.signin.public_url + _target(ctx)
            await self._see_other(scope, receive, send, self.use.signin.login_url(here))
            return
        # Answers to a browser session are never stored, so that no cached answer outlives a sign-out.
        session = admitted.principal.method is AuthMethod.BROWSER_SESSION
        cache_control = b"private, no-store" if session else b"private, max-age=%d" % max_age
        if as_json:
            extra = {"Set-Cookie": admitted.renewal} if admitted.renewal else {}
            response = json_response(url_json(url), 200, {
                "Cache-Control": cache_control.decode(), "Referrer-Policy": "no-referrer", "Vary": "Accept", **extra})
            await response(scope, receive, send)
        else:
            await redirect(send, url, cache_control, admitted.renewal)

    async def _see_other(self, scope: Scope, receive: Receive, send: Send, location: str) -> None:
        response = Response(status_code=303, headers={"Location": location, "Cache-Control": "no-store",
                                                      "Referrer-Policy": "no-referrer"})
        await response(scope, receive, send)

    async def local(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        dataset, tail = split_path(ctx.request.path, LOCAL, "")
        # The URL's own signature is the credential here; no other authentication applies.
        signature = url_signature(ctx.query, "local") or _NO_SIGNATURE
        file = await self.use.local.read(ctx, dataset, tail.encode("latin-1"), signature)
        response = file_response(file.path, scope["method"], ctx.headers, file.max_age, etag_key=file.etag_key)
        await response(scope, receive, send)
