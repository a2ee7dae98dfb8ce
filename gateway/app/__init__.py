"""The composition root's entry points: ``create_app(settings)`` builds the parts (``runtime.py``,
``build.py``) and hands the HTTP layer what it needs (``gateway.api.stack``)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.stack import build_http_app
from gateway.app.runtime import Runtime
from gateway.settings import Settings


class GatewayApp:
    """The ASGI entry point, with its runtime at hand for the CLI and the tests. Servers are given
    ``asgi`` itself: one coroutine less on every request."""

    def __init__(self, asgi: ASGIApp, runtime: Runtime) -> None:
        self.asgi = asgi
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time,
               registry: CollectorRegistry | None = None, environ: Mapping[str, str] | None = None) -> GatewayApp:
    """Build the ASGI app. Raises ConfigError, listing every problem, when the policy is invalid."""
    runtime = Runtime(settings, clock=clock, registry=registry, environ=environ)
    asgi = build_http_app(runtime.use, settings, metrics=runtime.metrics, readiness=runtime.readiness,
                          lifespan=runtime.lifespan)
    return GatewayApp(asgi, runtime)


def app_from_env() -> ASGIApp:
    """Factory for multi-worker serving: each worker reads the same GATEWAY_* environment."""
    from gateway import logs
    from gateway.app.protocol import Limits, configure

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    configure(Limits.of(settings))  # this worker's connections
    app = create_app(settings)
    freeze_startup_heap()
    return app.asgi


# The collector's thresholds for a server. Python's default (700 allocations between young
# collections) promotes a request's short-lived objects into the old generations while 64 requests are
# in flight, so full collections come often and, over caches holding 100,000 entries, cost tens of
# milliseconds each: the vendor HMAC row's p99 was 76 ms with the default and 12 ms with these
# (bench/README.md, "Garbage collection"). Young objects of a finished request die before a collection
# at 20,000 (the soak row checks that memory stays flat under it).
SERVER_GC_THRESHOLDS = (20_000, 20, 10)


def freeze_startup_heap() -> None:
    """Move everything built at startup (boto3's models, the compiled policy, the app) out of the
    cyclic garbage collector's reach: it never becomes garbage, and scanning it on every full
    collection cost the request path milliseconds at a time. Then set the server's thresholds (see
    SERVER_GC_THRESHOLDS). For servers only, once, at startup."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_GC_THRESHOLDS)
