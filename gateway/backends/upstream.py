"""One proxied storage read over the pool: the storage's status becomes 200/206/304 or a typed error.

Shared by the S3 and GCS sources; they differ only in the URL and the authentication headers. The
storage's error bodies are read by no one and its headers are filtered: nothing of the storage but
the object and its validators reaches the client (invariant 10).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from gateway.backends.http_pool import UpstreamPool
from gateway.errors import BadGateway, GatewayError, GatewayTimeout, NotFound, RangeNotSatisfiable, Unavailable
from gateway.models import Fetched, FetchRequest

CHUNK = 64 * 1024  # bytes per ASGI send: big enough to keep per-send overhead small, small enough to stream
PASSED = ("content-type", "content-length", "content-range", "etag", "last-modified", "content-encoding",
          "content-language", "content-disposition")
_TOTAL = re.compile(r"/([0-9]+)\s*$")

Sign = Callable[[str], Awaitable[dict[str, str]]]
"""Given the method (GET or HEAD), the headers that authenticate it (fresh for every request)."""


def forwarded(request: FetchRequest) -> dict[str, str]:
    """The only request headers that reach the storage; never the client's credentials or cookies."""
    headers: dict[str, str] = {}
    if request.range is not None:
        headers["Range"] = request.range
    if request.if_none_match is not None:
        headers["If-None-Match"] = request.if_none_match
    if request.if_modified_since is not None:
        headers["If-Modified-Since"] = request.if_modified_since
    return headers


def _size(status: int, headers: dict[str, str]) -> int | None:
    if status == 206:
        match = _TOTAL.search(headers.get("content-range", ""))
        return int(match.group(1)) if match else None
    length = headers.get("content-length", "")
    return int(length) if status == 200 and length.isdigit() else None


async def fetch(pool: UpstreamPool, url: str, sign: Sign, request: FetchRequest) -> Fetched:
    method = "HEAD" if request.head else "GET"
    response = await _send(pool, method, url, {**await sign(method), **forwarded(request)})
    status = response.status
    if status in (200, 206, 304):
        headers = {name: response.headers[name] for name in PASSED if name in response.headers}
        if method == "HEAD" or status == 304:
            response.release()
            return Fetched(status, headers, _size(status, headers))
        return Fetched(status, headers, _size(status, headers), _body(response), response.release)
    response.release()  # closes the connection when an error body is left unread: it is never read
    if status == 404:
        raise NotFound("no such object")
    if status == 416:
        head = await fetch(pool, url, sign, FetchRequest(head=True))
        raise RangeNotSatisfiable("the range is outside the object", size=head.size or 0)
    if status == 412:
        raise Unavailable("the object changed while it was read; retry", retry_after=1)
    if status in (429, 500, 502, 503, 504):
        raise Unavailable("the storage is unavailable; retry shortly", retry_after=5)
    # 400, 401, 403 (a bad or expired signature, a denied role) and anything unexpected: the storage
    # refused the gateway's own request, which no client can fix.
    raise BadGateway("the storage refused the gateway's request")


async def _send(pool: UpstreamPool, method: str, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
    try:
        return await pool.session().request(method, url, headers=headers, allow_redirects=False)
    except TimeoutError as exc:
        raise GatewayTimeout("the storage did not answer in time") from exc
    except aiohttp.ClientError as exc:
        # Refused, reset, unresolvable: the message names the host, so it stays out of the detail.
        raise Unavailable("the storage cannot be reached", retry_after=5) from exc


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body in chunks of at most CHUNK bytes; failures mid-body become gateway errors."""
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except GatewayError:
        raise
    except TimeoutError as exc:
        raise GatewayTimeout("the storage stopped sending") from exc
    except aiohttp.ClientError as exc:
        raise Unavailable("the storage connection broke") from exc
