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
from gateway.errors import BadRequest, CrossSiteRefused, MethodNotAllowed, Unauthenticated
from gateway.models import AuthMethod, SignedUrl
from gateway.service import GatewayService, ProxyReads
from gateway.service.signin import SignInService

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


async def session_redirect(send: Send, url: SignedUrl, renewal: str | None) -> None:
    """The redirect for a browser session: never stored, so that no cached answer outlives a
    sign-out; with the renewed session cookie when the idle clock moved on."""
    headers = [(b"location", url.url.encode("latin-1")), (b"cache-control", b"private, no-store"), *_REDIRECT]
    if renewal is not None:
        headers.append((b"set-cookie", renewal.encode("latin-1")))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _navigation(scope: Scope, headers: dict[str, str]) -> bool:
    return (scope["method"] == "GET" and headers.get("sec-fetch-mode") == "navigate"
            and headers.get("sec-fetch-dest") == "document")


def _sign_in_helps(exc: Unauthenticated) -> bool:
    """A top-level navigation without a (live) session is sent to sign in; a subresource (an
    <img>, a fetch) gets the 401: a page of 500 thumbnails must not start 500 sign-ins."""
    return exc.reason == "missing" or (exc.scheme == "Session" and exc.reason not in ("duplicate", "wrong_route"))


def _target(scope: Scope, path: bytes) -> str:
    query = scope.get("query_string", b"")
    return path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


class ObjectRoutes:
    """Serves the object and local-file routes; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, service: GatewayService, *, trusted_proxies: Sequence[Network],
                 forwarded_header: ForwardedHeader = "x-forwarded-for", proxy: ProxyReads | None = None,
                 signin: SignInService | None = None) -> None:
        self.app = app
        self.service = service
        self.trusted = tuple(trusted_proxies)
        self.forwarded = forwarded_header
        self.proxy = proxy
        self.signin = signin

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
        as_json = _wants_json(scope, headers)
        proxied = self.proxy is not None and dataset in self.service.holder.current.policy.proxied and (
            not as_json or b"sig=" in scope.get("query_string", b""))
        try:
            if proxied:
                # delivery: proxy streams the object itself (one set lookup for every other request);
                # its JSON answer below holds a gateway URL, which is streamed when used.
                assert self.proxy is not None  # noqa: S101 - checked just above
                await serve_object(self.proxy, self.trusted, scope, receive, send, dataset, raw_key, headers,
                                   self.forwarded, session_route=True)
                return
            ctx = await request_context(scope, self.service, self.trusted, headers=headers,
                                        forwarded_header=self.forwarded, session_route=True)
            url, max_age = await self.service.sign(ctx, dataset, raw_key, action="sign" if as_json else "redirect",
                                                   status=200 if as_json else 302)
        except (Unauthenticated, CrossSiteRefused) as exc:
            if self.signin is None or not self.signin.enabled or not _navigation(scope, headers):
                raise
            if isinstance(exc, CrossSiteRefused):
                # A link on another site (or the way back from the issuer after sign-in): the
                # session is not used for it; the gateway's own page asks the user to continue.
                await self.to_page(scope, receive, send, path)
                return
            if not _sign_in_helps(exc):
                raise
            await self.to_sign_in(scope, receive, send, path)
            return
        session = ctx.principal.method is AuthMethod.BROWSER_SESSION
        if as_json:
            extra = {"Set-Cookie": ctx.session_cookie} if ctx.session_cookie else {}
            response = json_response(url_json(url), 200, {
                "Cache-Control": "private, no-store" if session else f"private, max-age={max_age}",
                "Referrer-Policy": "no-referrer", "Vary": "Accept", **extra})
            await response(scope, receive, send)
        elif session:
            await session_redirect(send, url, ctx.session_cookie)
        else:
            await redirect(send, url, max_age)

    async def to_sign_in(self, scope: Scope, receive: Receive, send: Send, path: bytes) -> None:
        """303 to sign-in, which brings the browser back to this very object."""
        assert self.signin is not None  # noqa: S101 - checked by the caller
        here = self.signin.public_url + _target(scope, path)
        await self._see_other(scope, receive, send, self.signin.login_url(here))

    async def to_page(self, scope: Scope, receive: Receive, send: Send, path: bytes) -> None:
        """303 to the gateway's own page, with a link to this object (a first-party navigation)."""
        assert self.signin is not None  # noqa: S101 - checked by the caller
        await self._see_other(scope, receive, send, self.signin.continue_url(_target(scope, path)))

    async def _see_other(self, scope: Scope, receive: Receive, send: Send, location: str) -> None:
        response = Response(status_code=303, headers={"Location": location, "Cache-Control": "no-store",
                                                      "Referrer-Policy": "no-referrer"})
        await response(scope, receive, send)

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
