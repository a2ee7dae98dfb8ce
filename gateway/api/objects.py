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

from gateway.api.capabilities import renew
from gateway.api.context import context_of, split_path
from gateway.api.errors import json_response
from gateway.api.files import file_response
from gateway.api.listing import list_objects
from gateway.api.proxy import serve_object
from gateway.auth import AuthRequest
from gateway.errors import CrossSiteRefused, MethodNotAllowed, NotFound, Unauthenticated
from gateway.models import AuthMethod, SignedUrl
from gateway.routes import CAPABILITY, INDEX, LOCAL, OBJECTS, OBJECTS_MIDDLE, RENEW
from gateway.service import RequestContext, UseCases, url_signature
from gateway.service.url_signature import UrlSignature

_REDIRECT = [(b"referrer-policy", b"no-referrer"), (b"vary", b"Accept"), (b"content-length", b"0")]
_REDIRECT_AUTO = [(b"referrer-policy", b"no-referrer"), (b"vary", b"Accept, Sec-Fetch-Mode"),
                  (b"content-length", b"0")]
_READABLE = ("cors", "same-origin")  # fetch modes whose answer the page can read
# Answers to a session or its capability are never stored: no cached copy outlives a sign-out.
_NEVER_STORED = (AuthMethod.BROWSER_SESSION, AuthMethod.CAPABILITY)
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


async def redirect(send: Send, url: SignedUrl, cache_control: bytes, renewal: str | None = None, *,
                   vary: bool = False) -> None:
    """Send the redirect as two raw ASGI messages: it is the hot path, and a Starlette Response
    (header normalization, content-length rendering) costs more than the rest. The Location is the
    backend's URL for the authorized key; nothing from the request is in it. ``vary``: the answer
    depends on the fetch mode (delivery: auto), so that no cache hands the redirect to a CORS fetch."""
    headers = [(b"location", url.url.encode("latin-1")), (b"cache-control", cache_control),
               *(_REDIRECT_AUTO if vary else _REDIRECT)]
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
    """Serves the object, capability, listing and local-file routes; hands everything else to ``app``."""

    def __init__(self, app: ASGIApp, use_cases: UseCases) -> None:
        self.app = app
        self.use = use_cases

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith((OBJECTS, LOCAL, CAPABILITY)):
            await self.app(scope, receive, send)
            return
        ctx = context_of(scope)
        raw = ctx.request.path
        capability = None
        if raw.startswith(CAPABILITY):
            # /v1/c/{capability}/datasets/...: the capability is the credential of the path below it.
            capability, _, rest = raw[len(CAPABILITY):].partition("/")
            if rest == RENEW:
                await renew(self.use, ctx, capability, scope, receive, send)
                return
            raw = "/v1/" + rest
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowed("use GET or HEAD")
        if raw.startswith(OBJECTS):
            dataset, tail = split_path(raw, OBJECTS, "")
            if tail == INDEX:
                await list_objects(self.use, ctx, dataset, capability, scope, receive, send)
            elif tail.startswith(OBJECTS_MIDDLE):
                await self.objects(ctx, dataset, tail[len(OBJECTS_MIDDLE):], capability, scope, receive, send)
            else:
                raise NotFound(f"expected {OBJECTS}{{dataset}}/{OBJECTS_MIDDLE}{{key}} or {OBJECTS}{{dataset}}/{INDEX}")
        elif raw.startswith(LOCAL) and capability is None:
            await self.local(ctx, scope, receive, send)
        else:  # the decoded path is an object path, the raw one is not (an encoded "/v1/%64atasets/")
            raise NotFound("there is no such route")

    async def objects(self, ctx: RequestContext, dataset: str, tail: str, capability: str | None, scope: Scope,
                      receive: Receive, send: Send) -> None:
        request = ctx.request
        raw_key = tail.encode("latin-1")  # the raw bytes as sent (the path was decoded as latin-1)
        signature = url_signature(request.query, "gateway") if capability is None else None
        as_json = _wants_json(request)
        policy = ctx.state.policy
        # delivery: auto streams what the page can read (a CORS fetch, a CORS image) and redirects
        # what it cannot (<img>, navigations, servers without fetch metadata).
        auto = dataset in policy.auto
        readable = auto and not as_json and request.headers.get("sec-fetch-mode") in _READABLE
        try:
            if signature is not None or (not as_json and (dataset in policy.proxied or readable)):
                if readable and ctx.state.backends.get(dataset) is not None and dataset not in ctx.state.sources:
                    await self.local_file(ctx, dataset, raw_key, capability, scope, receive, send)
                    return
                # A gateway URL (its signature is its credential), proxy or auto delivery: the object itself.
                await serve_object(self.use.proxy, ctx, scope, receive, send, dataset, raw_key, signature,
                                   capability=capability, vary=auto)
                return
            url, max_age, admitted = await self.use.redirects.one(ctx, dataset, raw_key, as_json=as_json,
                                                                  capability=capability)
        except (Unauthenticated, CrossSiteRefused) as exc:
            if capability is not None or not self.use.signin.enabled(ctx.state) or not _navigation(ctx):
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
        session = admitted.principal.method in _NEVER_STORED
        cache_control = b"private, no-store" if session else b"private, max-age=%d" % max_age
        if as_json:
            extra = {"Set-Cookie": admitted.renewal} if admitted.renewal else {}
            response = json_response(url_json(url), 200, {
                "Cache-Control": cache_control.decode(), "Referrer-Policy": "no-referrer",
                "Vary": "Accept, Sec-Fetch-Mode" if auto else "Accept", **extra})
            await response(scope, receive, send)
        else:
            await redirect(send, url, cache_control, admitted.renewal, vary=auto)

    async def _see_other(self, scope: Scope, receive: Receive, send: Send, location: str) -> None:
        response = Response(status_code=303, headers={"Location": location, "Cache-Control": "no-store",
                                                      "Referrer-Policy": "no-referrer"})
        await response(scope, receive, send)

    async def local(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send) -> None:
        dataset, tail = split_path(ctx.request.path, LOCAL, "")
        # The URL's own signature is the credential here; no other authentication applies.
        signature = url_signature(ctx.request.query, "local") or _NO_SIGNATURE
        file = await self.use.local.read(ctx, dataset, tail.encode("latin-1"), signature)
        response = file_response(file.path, scope["method"], ctx.request.headers, file.max_age,
                                 etag_key=file.etag_key)
        await response(scope, receive, send)

    async def local_file(self, ctx: RequestContext, dataset: str, raw_key: bytes, capability: str | None,
                         scope: Scope, receive: Receive, send: Send) -> None:
        """delivery: auto on a local dataset, for a page that can read the answer: the file itself,
        admitted by the request's credential like a redirect would be."""
        file = await self.use.local.serve(ctx, dataset, raw_key, capability=capability)
        response = file_response(file.path, scope["method"], ctx.request.headers, file.max_age,
                                 etag_key=file.etag_key, private=file.private)
        response.headers.append("Vary", "Sec-Fetch-Mode")
        await response(scope, receive, send)
