"""The HTTP pipeline, assembled in one place and read top to bottom:

    (connection: head deadline, head limits, JSON for unparseable requests: gateway/protocol.py)
    edge (the request parsed once into its context with the policy snapshot, the audit scope, request
          id, nosniff, Host check, body deadline, CORS and preflights, concurrency limit, metrics,
          errors become answers)
      ▶ object routes (/v1/datasets/..., /v1/local/...: raw paths, the hot path; proxy datasets stream;
        a browser navigation without a session is sent to sign in)
      ▶ FastAPI (POST /v1/sign, /v1/auth/..., /healthz, /readyz, and /metrics unless the admin port serves it)

Every use case behind them is let in by the one admit step (gateway/service/admit.py).

With ``GATEWAY_ADMIN_PORT`` a second listener answers only the operators' routes (/metrics, the
detailed /readyz, /healthz), and the public /readyz says only ``ready`` or ``degraded``.

Each layer owns its answers and no layer repeats another's headers, errors or counting. The
HTTP layer receives what it needs (the service, the settings it reads, readiness and metrics);
it never imports the composition root.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.auth_routes import auth_router
from gateway.api.batch import batch_router
from gateway.api.capabilities import capability_router
from gateway.api.edge import EdgeMiddleware
from gateway.api.errors import error_body, error_response, internal_error, json_response
from gateway.api.hosts import HostCheck
from gateway.api.objects import ObjectRoutes
from gateway.api.ops import Readiness, ops_router
from gateway.errors import GatewayError
from gateway.logs import request_id_var
from gateway.metrics import Metrics
from gateway.service import UseCases
from gateway.settings import Settings

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def build_http_app(use: UseCases, settings: Settings, *, metrics: Metrics, readiness: Readiness,
                   lifespan: Lifespan | None = None) -> ASGIApp:
    admin = settings.admin_port is not None
    routes = _fastapi(settings, lifespan)
    routes.include_router(batch_router(use.redirects, use.gate))
    routes.include_router(auth_router(use.signin, use.gate))
    routes.include_router(capability_router(use))
    routes.include_router(ops_router(readiness=readiness, metrics=None if admin else metrics, detailed=not admin))
    public = EdgeMiddleware(ObjectRoutes(routes, use), metrics, holder=use.holder, audit=use.audit,
                            trusted_proxies=settings.trusted_proxies, forwarded_header=settings.forwarded_header,
                            max_concurrency=settings.max_concurrency, hosts=HostCheck.of(settings),
                            body_timeout=settings.body_timeout)
    if settings.admin_port is None:
        return public
    operators = _fastapi(settings, None)
    operators.include_router(ops_router(readiness=readiness, metrics=metrics, detailed=True))
    return ByListener(public, EdgeMiddleware(operators, metrics), admin_port=settings.admin_port)


class ByListener:
    """The public app, or the operators' app for requests that came in on the admin port."""

    def __init__(self, public: ASGIApp, operators: ASGIApp, *, admin_port: int) -> None:
        self.public = public
        self.operators = operators
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.admin_port:
            await self.operators(scope, receive, send)
        else:
            await self.public(scope, receive, send)  # and the lifespan, once


def _fastapi(settings: Settings, lifespan: Lifespan | None) -> FastAPI:
    routes = FastAPI(title="URL-signing gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                     openapi_url="/openapi.json" if settings.openapi else None)
    _json_errors(routes)
    return routes


def _json_errors(routes: FastAPI) -> None:
    """FastAPI answers its own errors before the edge sees them: make them the gateway's JSON."""

    def request_id() -> str:
        return request_id_var.get() or "-"

    @routes.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return error_response(exc, request_id())

    @routes.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return json_response(error_body(code, str(exc.detail).lower(), request_id()), exc.status_code,
                             dict(exc.headers or {}))

    @routes.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette answers a bug with plain text, then re-raises: the edge logs it (once).
        return internal_error(request_id())

    @routes.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response(error_body("bad_request", "the request is malformed", request_id()), 400)
