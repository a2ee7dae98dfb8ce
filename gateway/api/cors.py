"""CORS, for configured origins only, and the preflights answered without authentication.

There is no ``*`` by default: a loopback gateway with ``*`` would let any website read it through
the user's browser. The origins are the request's policy snapshot's, so a reload applies at once.
Browser sessions (an issuer with ``browser:``): on the routes that accept the session cookie the
embedders get ``Access-Control-Allow-Credentials: true`` (and only there), so their pages can send
the cookie with ``fetch(..., {credentials: "include"})`` and read the answer; those answers vary on
``Cookie``.
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.api.errors import error_body, json_response
from gateway.routes import Route
from gateway.service import State

ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
ALLOW_HEADERS = (
    "authorization, content-type, x-request-id, range, if-none-match, if-modified-since, if-range, "
    "x-gateway-key-id, x-gateway-timestamp, x-gateway-signature, x-gateway-content-sha256, "
    "x-gateway-signature-version"
)
EXPOSE_HEADERS = b"x-request-id, content-range, content-length, etag, last-modified, accept-ranges"
VARY_ORIGIN = (b"vary", b"Origin")


def cors_headers(state: State, origin: bytes | None, route: Route) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The CORS (and Vary) headers every answer to this request carries, and whether the origin is
    allowed at all."""
    if route.public:  # public code (the browser module): any page may import it, without credentials
        return [], True
    embedders = state.embedders if state.browsers else None
    extra: list[tuple[bytes, bytes]] = []
    credentialed = False
    text = origin.decode("latin-1") if origin is not None else None
    if embedders is not None and route.session:
        extra.append((b"vary", b"Cookie"))
        credentialed = text is not None and text in embedders
    elif route.cookieless and text is not None:
        # The answer is the same with or without cookies (a signed URL, a capability): a page's
        # fetch(..., {credentials: "include"}) or <img crossorigin=use-credentials> may read it.
        credentialed = (embedders is not None and text in embedders) or _allowed(state, origin or b"")
    allowed = origin is not None and (credentialed or _allowed(state, origin))
    if allowed and origin is not None:
        extra += [(b"access-control-allow-origin", origin), (b"access-control-expose-headers", EXPOSE_HEADERS),
                  VARY_ORIGIN]
        if credentialed:
            extra.append((b"access-control-allow-credentials", b"true"))
    elif state.cors_origins or embedders:
        # The answer depends on Origin wherever CORS is configured, allowed or not: caches must know.
        extra.append(VARY_ORIGIN)
    return extra, allowed


def _allowed(state: State, origin: bytes) -> bool:
    allowed = state.cors_origins
    return bool(allowed) and (origin.decode("latin-1") in allowed or "*" in allowed)


def preflight(state: State, origin: bytes | None, allowed: bool, is_preflight: bool, private_network: bool,
              request_id: str) -> Response:
    if origin is None or not is_preflight:
        return Response(status_code=204, headers={"Allow": ALLOW_METHODS})
    if not allowed:
        body = error_body("cors_origin_not_allowed", "this origin is not in cors.allow_origins", request_id)
        return json_response(body, 403, {"Vary": "Origin"})
    headers = {
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(int(state.policy.source.cors.max_age)),
    }
    if private_network:
        # Chromium asks before a public page may read a loopback or private address (Private
        # Network Access); only an origin this gateway already trusts is told yes.
        headers["Access-Control-Allow-Private-Network"] = "true"
    # The origin, expose and vary headers are added like on every allowed response.
    return Response(status_code=204, headers=headers)
