"""Batch signing, health, readiness and metrics (the routes that go through FastAPI)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.responses import Response

from gateway.api.context import request_context
from gateway.api.errors import json_response
from gateway.api.routes import rfc3339
from gateway.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from gateway.app import Runtime

router = APIRouter()
MAX_KEY_JSON = 1100  # bytes per key in a batch body, generously: 1024-byte keys plus quoting


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.post("/v1/sign", summary="Sign a batch of keys", response_description="One result per key, in order")
async def sign_batch(request: Request) -> Response:
    """Body: ``{"dataset": "...", "keys": ["...", ...]}``. One bad key never fails the batch."""
    runtime = _runtime(request)
    limit = runtime.holder.current.policy.source.defaults.batch_limit
    body = await _read_body(request, limit * MAX_KEY_JSON + 4096)
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(payload, dict) or set(payload) - {"dataset", "keys"}:
        raise BadRequest('expected {"dataset": "<name>", "keys": ["<key>", ...]} and nothing else')
    dataset, keys = payload.get("dataset"), payload.get("keys")
    if not isinstance(dataset, str) or not isinstance(keys, list):
        raise BadRequest('"dataset" must be a string and "keys" a list of strings')
    if len(keys) > limit:
        raise PayloadTooLarge(f"a batch holds at most {limit} keys; got {len(keys)}")
    ctx = await request_context(request.scope, runtime.service, runtime.settings.trusted_proxies)
    items = await runtime.service.sign_batch(ctx, dataset, keys)
    stamps: dict[float, str] = {}  # a batch shares one or two expiry times: format each once
    results = []
    for item in items:
        if item.url is None:
            results.append({"key": item.key, "error": item.error, "detail": item.detail})
            continue
        expires = stamps.get(item.url.expires_at)
        if expires is None:
            expires = stamps[item.url.expires_at] = rfc3339(item.url.expires_at)
        results.append({"key": item.key, "url": item.url.url, "expires_at": expires})
    return json_response({"results": results}, 200, {"Cache-Control": "no-store"})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/healthz", summary="Liveness")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness: policy, backends, cache")
async def readyz(request: Request) -> Response:
    runtime = _runtime(request)
    body = await runtime.readiness()
    return json_response(body, 200 if body["status"] != "unavailable" else 503, {"Cache-Control": "no-store"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    runtime = _runtime(request)
    registry = runtime.metrics.registry
    runtime.metrics.tally.flush()  # this worker's counts are current; others' at most a second old
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several workers: every process writes its own files; collect them all for each scrape.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
