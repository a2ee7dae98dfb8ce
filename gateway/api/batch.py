"""``POST /v1/sign``: many keys in one request. One bad key never fails the batch.

Hostile bodies get precise answers: a body that is not ``application/json`` is 415 (a cross-site
page cannot send JSON without a CORS preflight), a body that does not arrive in time is 408 (the
edge), one that stops arriving is counted as 499, JSON nested absurdly deep is 400, and a key
that is not a string is that key's own error, never the batch's.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.context import context_of, read_body
from gateway.api.errors import json_response
from gateway.api.objects import rfc3339
from gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from gateway.routes import SIGN
from gateway.service import Gate, Redirects

MAX_KEY_JSON = 1100  # bytes per key in a batch body, generously: 1024-byte keys plus quoting
MAX_DEPTH = 32  # JSON nesting of a batch body; a real one is 3 deep


def batch_router(redirects: Redirects, gate: Gate) -> APIRouter:
    router = APIRouter()

    @router.post(SIGN, summary="Sign a batch of keys", response_description="One result per key, in order")
    async def sign_batch(request: Request) -> Response:
        """Body: ``{"dataset": "...", "keys": ["...", ...]}``. One bad key never fails the batch."""
        ctx = context_of(request)
        media_type = ctx.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType("send the batch as Content-Type: application/json")
        identity = await gate.authenticate(ctx)  # a bad credential is refused before the body is read
        limit = ctx.state.policy.source.defaults.batch_limit
        body = await read_body(request, limit * MAX_KEY_JSON + 4096)
        gate.check_body(ctx, body)  # a vendor's signature covers the body: nothing unchecked is used
        dataset, keys = _parse(body)
        if len(keys) > limit:
            raise PayloadTooLarge(f"a batch holds at most {limit} keys; got {len(keys)}")
        items = await redirects.batch(ctx, dataset, keys, identity=identity)
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


def _parse(body: bytes) -> tuple[str, list[Any]]:
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = _lenient(body, exc)
    if not isinstance(payload, dict) or set(payload) - {"dataset", "keys"}:
        raise BadRequest('expected {"dataset": "<name>", "keys": ["<key>", ...]} and nothing else')
    dataset, keys = payload.get("dataset"), payload.get("keys")
    if not isinstance(dataset, str) or not isinstance(keys, list):
        raise BadRequest('"dataset" must be a string and "keys" a list of strings')
    for key in keys:
        if isinstance(key, list | dict) and _too_deep(key):
            raise BadRequest(f"the body nests JSON more than {MAX_DEPTH} levels deep")
    return dataset, keys


def _lenient(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """JSON that orjson refuses only because a string holds a lone surrogate (``"\\ud800"``) is
    still JSON: such a key is its own error, not the batch's."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(f"the body is not valid JSON ({error.msg} at position {error.pos})") from None


def _too_deep(value: Any) -> bool:
    """Deeper than MAX_DEPTH, found without recursion (the value may nest a thousand levels)."""
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [child for item in level if isinstance(item, list | dict)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return any(isinstance(item, list | dict) for item in level)
