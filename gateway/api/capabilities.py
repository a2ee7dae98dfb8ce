"""Capabilities over HTTP (gateway/auth/capabilities.py): the connect page a vendor's page opens in a
popup, the renewal its module calls, and the module itself (``/v1/sdk/gateway.js``).

The connect page is a top-level visit of the gateway, so its own session cookie is there (first
party) whatever the browser does with third-party cookies; without a session it sends the popup
through sign-in and back. It hands the capability to the opener only, by ``postMessage`` to the exact
origin the page named, and only when that origin is an embedder of the session's issuer.
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.api.context import context_of
from gateway.api.errors import json_response
from gateway.auth.capabilities import MAX_SCOPE
from gateway.auth.cookies import cookie_values
from gateway.auth.sessions import COOKIE
from gateway.config import origin_of
from gateway.errors import BadRequest, CrossSiteRefused, InvalidKey, MethodNotAllowed, NotFound, Unavailable
from gateway.keys import validate_key
from gateway.models import Decision
from gateway.routes import CONNECT, SDK
from gateway.service import RequestContext, UseCases

_SDK = (Path(__file__).parent / "static" / "gateway.js").read_bytes()
_SDK_ETAG = '"' + secrets.token_hex(8) + '"'  # a new one per process start is enough: the file ships with it
_ISSUED = Decision(True, rule="capability")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _list(request: Request, name: str) -> tuple[str, ...]:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"give {name} at most once (comma-separated)")
    items = tuple(item.strip() for item in (values[0] if values else "").split(",") if item.strip())
    if len(items) > MAX_SCOPE:
        raise BadRequest(f"at most {MAX_SCOPE} {name}")
    return items


def capability_router(use: UseCases) -> APIRouter:
    router = APIRouter()

    @router.get(CONNECT, summary="Hand the opener page a capability (a popup, opened by a click)")
    async def connect(request: Request) -> Response:
        ctx = context_of(request)
        authority, sessions = ctx.state.capabilities, ctx.state.sessions
        if authority is None or sessions is None:
            raise NotFound("browser sign-in is not configured (no auth.oidc issuer has browser:)")
        origin = request.query_params.get("origin") or ""
        datasets, prefixes = _list(request, "datasets"), _list(request, "prefixes")
        if origin_of(origin) != origin or not datasets:
            raise BadRequest("give origin (the page's exact origin) and datasets (comma-separated)")
        unknown = [name for name in datasets if name not in ctx.state.policy.datasets]
        if unknown:
            raise BadRequest(f"no dataset named {unknown[0][:64]!r}")
        for prefix in prefixes:
            try:
                validate_key(prefix + "x")
            except InvalidKey as exc:
                raise BadRequest(f"a prefix is not valid: {exc.detail}") from None
        values = cookie_values(ctx.request.headers.get("cookie", ""), COOKIE)
        view = await use.signin.status(ctx, check_embedder=False)
        if view.session is None or len(values) != 1:
            # Sign in first, in this same popup, and come back here.
            here = use.signin.public_url + CONNECT + "?" + urlencode(
                {"origin": origin, "datasets": ",".join(datasets), **({"prefixes": ",".join(prefixes)}
                                                                     if prefixes else {})})
            return Response(status_code=303, headers={"Location": use.signin.login_url(here), **NO_STORE})
        session = view.session
        ctx.audit.principal = session.principal
        browser = ctx.state.browsers[session.issuer].browser
        if origin not in browser.embedders:
            # Only an embedder of this issuer's sessions may hold their delegates.
            raise CrossSiteRefused("this page's site is not an embedder of the gateway's sign-in")
        token, expires = authority.issue(values[0], session, embedder=origin, client=ctx.request.client_text,
                                         datasets=datasets, prefixes=prefixes)
        ctx.audit.keys, ctx.audit.decision = list(datasets), _ISSUED
        return _handover(origin, {"type": "gateway-capability", "capability": token, "expires_at": expires,
                                  "gateway": use.signin.public_url, "datasets": list(datasets)})

    @router.get(SDK, include_in_schema=False)
    async def sdk(request: Request) -> Response:
        if request.headers.get("if-none-match") == _SDK_ETAG:
            return Response(status_code=304, headers={"ETag": _SDK_ETAG})
        # Public code with no secret in it: any page may import it (CORS *, no credentials).
        return Response(_SDK, media_type="text/javascript; charset=utf-8", headers={
            "Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300", "ETag": _SDK_ETAG,
            "Cross-Origin-Resource-Policy": "cross-origin"})

    return router


def _handover(origin: str, message: dict[str, object]) -> Response:
    """The page that posts ``message`` to its opener at exactly ``origin``, and closes."""
    nonce = secrets.token_urlsafe(16)
    # Embedded as JSON inside the script; "<" escaped so that nothing in it can end the script.
    payload = json.dumps(message).replace("<", "\\u003c")
    target = json.dumps(origin).replace("<", "\\u003c")
    body = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Data gateway</title></head><body>"
            f"<p id=m>Connecting {html.escape(origin)} to the data gateway…</p>"
            f"<script nonce=\"{nonce}\">(function(){{var o=window.opener;"
            f"if(!o){{document.getElementById('m').textContent='Open this page from the vendor\\u2019s page.';"
            f"return;}}o.postMessage({payload},{target});window.close();}})();</script></body></html>")
    return Response(body, media_type="text/html; charset=utf-8", headers={
        **NO_STORE, "X-Frame-Options": "DENY",
        "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; "
                                   "frame-ancestors 'none'; form-action 'none'"})


async def renew(use: UseCases, ctx: RequestContext, token: str, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/c/{capability}/renew``: a fresh capability while the session lives (the module calls
    it before the old one expires; no popup)."""
    if ctx.request.method != "POST":
        raise MethodNotAllowed("use POST", allow="POST, OPTIONS")
    authority = ctx.state.capabilities
    if authority is None:
        raise Unavailable("this gateway hands out no capabilities (no browser sign-in)", retry_after=None)
    ctx.audit.action = "renew_capability"
    fresh, expires = await use.gate.renew(ctx, authority, token)
    await json_response({"capability": fresh, "expires_at": expires}, 200, NO_STORE)(scope, receive, send)
