"""What operators and probes read: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.responses import Response

from gateway.api.errors import json_response
from gateway.metrics import Metrics
from gateway.routes import HEALTHZ, METRICS, READYZ

Readiness = Callable[[], Awaitable[dict[str, Any]]]


def ops_router(*, readiness: Readiness, metrics: Metrics | None, detailed: bool) -> APIRouter:
    """Probes, and /metrics when ``metrics`` is given. ``detailed``: /readyz lists the datasets,
    backends, credentials and caches (for operators); otherwise only the status, since strangers
    can read it too."""
    router = APIRouter()

    @router.get(HEALTHZ, summary="Liveness")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get(READYZ, summary="Readiness: policy, backends, cache")
    async def readyz() -> Response:
        # 200 whenever this process answers: it cannot run without a valid policy, and with Redis
        # down or a backend failing it still serves (the body says "degraded" and why).
        body = await readiness()
        return json_response(body if detailed else {"status": body["status"]}, 200, {"Cache-Control": "no-store"})

    if metrics is None:
        return router

    @router.get(METRICS, summary="Prometheus metrics")
    async def prometheus() -> Response:
        assert metrics is not None  # noqa: S101 - narrowed above, for the type checker
        registry = metrics.registry
        metrics.tally.flush()  # this worker's counts are current; others' at most a second old
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Several workers: every process writes its own files; collect them all for each scrape.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
