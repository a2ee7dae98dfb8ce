"""The HTTP pipeline, assembled in one place and read top to bottom:

    edge (request id, CORS and preflights, concurrency limit, metrics, errors become answers)
      ▶ object routes (/v1/datasets/..., /v1/local/...: raw paths, the hot path)
      ▶ FastAPI (POST /v1/sign, /v1/auth/..., /healthz, /readyz, /metrics)

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
from starlette.types import ASGIApp

from gateway.api.auth_routes import auth_router
from gateway.api.batch import batch_router
from gateway.api.edge import EdgeMiddleware
from gateway.api.errors import error_body, error_response, json_response
from gateway.api.objects import ObjectRoutes
from gateway.api.ops import Readiness, ops_router
from gateway.errors import GatewayError
from gateway.logs import request_id_var
from gateway.metrics import Metrics
from gateway.service import GatewayService
from gateway.service.signin import SignInService
from gateway.settings import Settings

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]


def build_http_app(service: GatewayService, settings: Settings, *, metrics: Metrics, readiness: Readiness,
                   lifespan: Lifespan | None = None, signin: SignInService | None = None) -> ASGIApp:
    routes = FastAPI(title="URL-signing gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    routes.include_router(batch_router(service, trusted_proxies=settings.trusted_proxies))
    if signin is not None:
        routes.include_router(auth_router(signin, service, trusted_proxies=settings.trusted_proxies))
    routes.include_router(ops_router(readiness=readiness, metrics=metrics))
    _json_errors(routes)

    holder = service.holder
    app: ASGIApp = ObjectRoutes(routes, service, trusted_proxies=settings.trusted_proxies, signin=signin)
    return EdgeMiddleware(app, metrics, origins=lambda: holder.current.cors_origins,
                          max_age=lambda: int(holder.current.policy.source.cors.max_age),
                          max_concurrency=settings.max_concurrency,
                          embedders=lambda: holder.current.embedders if holder.current.browsers else None)


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

    @routes.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response(error_body("bad_request", "the request is malformed", request_id()), 400)
