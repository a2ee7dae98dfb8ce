"""Browser sign-in's routes: ``/v1/auth/login``, ``/callback``, ``/logout``, ``/session`` and the
page ``/v1/auth/``. Thin: each reads the request, calls one SignInService use case, and shapes the
answer. Every answer is ``no-store``: none of them may be replayed from a cache."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.context import context_of, read_body
from gateway.api.errors import error_response, json_response
from gateway.api.objects import rfc3339
from gateway.config import origin_of
from gateway.errors import BadRequest, NotFound, SignInFailed
from gateway.routes import AUTH, LOGOUT
from gateway.service import Gate, RequestContext
from gateway.service.signin import Redirect, SessionView, SignInService

NO_STORE = {"Cache-Control": "no-store"}
MAX_FORM = 4096


def _one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"give {name} at most once")
    return values[0] if values else None


def _redirect(result: Redirect, status: int) -> Response:
    response = Response(status_code=status, headers={"Location": result.location, **NO_STORE,
                                                     "Referrer-Policy": "no-referrer"})
    for cookie in result.cookies:
        response.headers.append("Set-Cookie", cookie)
    return response


def _view_json(signin: SignInService, ctx: RequestContext, view: SessionView) -> dict[str, object]:
    session = view.session
    if session is None:
        return {"signed_in": False, "reason": view.reason, "login_url": signin.login_url()}
    return {"signed_in": True, "issuer": session.issuer, "subject": session.subject, "email": session.email,
            "groups": list(session.groups), "expires_at": rfc3339(session.expires),
            "idle_expires_at": rfc3339(signin.idle_deadline(ctx.state, session)),
            "logout_url": signin.public_url + LOGOUT}


def auth_router(signin: SignInService, gate: Gate) -> APIRouter:
    router = APIRouter(prefix=AUTH.rstrip("/"))

    def enabled(request: Request) -> RequestContext:
        ctx = context_of(request)
        if not signin.enabled(ctx.state):
            raise NotFound("browser sign-in is not configured (no auth.oidc issuer has browser:)")
        return ctx

    @router.get("/login", summary="Start a browser sign-in (a top-level navigation)")
    async def login(request: Request) -> Response:
        ctx = enabled(request)
        result = await signin.begin(ctx, issuer=_one(request, "issuer"), return_to=_one(request, "return_to"))
        return _redirect(result, 302)

    @router.get("/callback", summary="Where the issuer sends the browser back")
    async def callback(request: Request) -> Response:
        ctx = enabled(request)
        try:
            result = await signin.complete(ctx)
        except SignInFailed as exc:
            response = error_response(exc, ctx.request_id)
            response.headers.update(NO_STORE)
            for cookie in exc.set_cookies:
                response.headers.append("Set-Cookie", cookie)
            return response
        return _redirect(result, 303)

    @router.post("/logout", summary="End the browser session")
    async def logout(request: Request) -> Response:
        ctx = enabled(request)
        body = await read_body(request, MAX_FORM, "the sign-out form")
        gate.check_body(ctx, body)  # no vendor signs a sign-out, but whatever a body claims is held to it
        form = parse_qs(body.decode("latin-1"))
        navigate = ctx.headers.get("sec-fetch-mode") == "navigate"
        result = await signin.end(ctx, end_session=form.get("end_session", [""])[0] in ("1", "true", "on"),
                                  return_to=form.get("return_to", [None])[0])
        if navigate:
            return _redirect(result, 303)
        response = json_response({"signed_in": False, "next": result.location}, 200, NO_STORE)
        for cookie in result.cookies:
            response.headers.append("Set-Cookie", cookie)
        return response

    @router.api_route("/session", methods=["GET", "HEAD"], summary="Whether this browser is signed in, as whom")
    async def session(request: Request) -> Response:
        ctx = enabled(request)
        view = await signin.status(ctx)
        return json_response(_view_json(signin, ctx, view), 200, NO_STORE)

    @router.get("", include_in_schema=False)
    async def bare(request: Request) -> Response:
        enabled(request)  # to the page, by the public URL: a URL built from the Host header could point anywhere
        return Response(status_code=308, headers={"Location": signin.page, **NO_STORE})

    @router.get("/", summary="The sign-in page")
    async def page(request: Request) -> Response:
        ctx = enabled(request)
        view = await signin.status(ctx, check_embedder=False)
        issuers = " ".join(sorted({o for c in ctx.state.browsers.values() if (o := origin_of(c.issuer.issuer))}))
        headers = {
            **NO_STORE, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # Nothing runs here; the sign-out form may go to the gateway and on to the issuer only.
            "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {issuers}; "
                                       "frame-ancestors 'none'; base-uri 'none'",
        }
        target = signin.next_object(_one(request, "next"))
        return Response(_page(signin, ctx, view, target), media_type="text/html; charset=utf-8", headers=headers)

    return router


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _page(signin: SignInService, ctx: RequestContext, view: SessionView, target: str | None) -> str:
    esc = html.escape
    session = view.session
    if session is None:
        body = (f"<p>You are not signed in to the data gateway.</p>"
                f'<p><a href="{esc(signin.login_url(target))}">Sign in</a></p>')
    elif target is not None:
        # Reached from another site (a link, or the way back from sign-in): the session is used
        # only once the user follows this first-party link.
        body = (f"<p>Signed in as <strong>{esc(session.email or session.subject)}</strong>.</p>"
                f'<p><a id="continue" href="{esc(target)}">Continue to {esc(target)}</a></p>')
    else:
        who = esc(session.email or session.subject)
        body = (f"<p>Signed in as <strong>{who}</strong> ({esc(session.issuer)}), until "
                f"{_when(session.expires)}; idle sign-out at {_when(signin.idle_deadline(ctx.state, session))}.</p>"
                f'<form method="post" action="{esc(signin.public_url)}{LOGOUT}">'
                f'<label><input type="checkbox" name="end_session" value="1"> also sign out at the identity '
                f"provider</label> <button>Sign out</button></form>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Data gateway sign-in</title>"
            "<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:3em auto}</style></head>"
            f"<body><h1>Data gateway</h1>{body}</body></html>")
