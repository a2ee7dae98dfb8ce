"""``POST /v1/sign``: many keys in one request. One bad key never fails the batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.context import request_context
from gateway.api.errors import json_response
from gateway.api.objects import rfc3339
from gateway.config import Network
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.service import GatewayService

MAX_KEY_JSON = 1100  # bytes per key in a batch body, generously: 1024-byte keys plus quoting


def batch_router(service: GatewayService, *, trusted_proxies: Sequence[Network]) -> APIRouter:
    router = APIRouter()
    trusted = tuple(trusted_proxies)

    @router.post("/v1/sign", summary="Sign a batch of keys", response_description="One result per key, in order")
    async def sign_batch(request: Request) -> Response:
        """Body: ``{"dataset": "...", "keys": ["...", ...]}``. One bad key never fails the batch."""
        limit = service.batch_limit
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
        ctx = await request_context(request.scope, service, trusted)
        items = await service.sign_batch(ctx, dataset, keys)
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

    return router


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
