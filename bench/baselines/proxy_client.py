"""The smallest streaming proxy an async HTTP client allows, to choose the gateway's client by
measurement: ``GET /{path}`` streams ``$PROXY_UPSTREAM/{path}`` with ``PROXY_CLIENT=aiohttp`` or
``httpx`` (one pooled client per worker, 64 KiB chunks), and nothing else (no auth, no policy)."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import httpx

UPSTREAM = os.environ.get("PROXY_UPSTREAM", "http://127.0.0.1:9")
CLIENT = os.environ.get("PROXY_CLIENT", "aiohttp")
CHUNK = 64 * 1024
_clients: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    url = UPSTREAM + scope["path"]
    if CLIENT == "httpx":
        client = _clients.get("httpx") or _clients.setdefault("httpx", httpx.AsyncClient(timeout=30))
        async with client.stream("GET", url) as response:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(b"content-length", response.headers["content-length"].encode())]})
            async for chunk in response.aiter_raw(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    else:
        session = _clients.get("aiohttp") or _clients.setdefault("aiohttp", aiohttp.ClientSession(
            auto_decompress=False))
        async with session.get(url) as upstream:
            await send({"type": "http.response.start", "status": upstream.status,
                        "headers": [(b"content-length", upstream.headers["content-length"].encode())]})
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
