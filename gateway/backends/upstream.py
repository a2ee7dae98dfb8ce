"""One proxied storage read over the pool: the storage's status becomes 200/206/304 or a typed error.

Shared by the S3 and GCS sources; they differ only in the URL and the authentication headers. The
storage's error bodies are read by no one and its headers are filtered: nothing of the storage but
the object and its validators reaches the client (invariant 10).

Every failure of the storage becomes a gateway error in one place, as httpx's
``map_httpcore_exceptions`` does: :func:`storage_errors` wraps both the request and the body stream
with the one table of foreign exceptions, so a failure mid-body is translated like one at connect
time, and :func:`status_error` holds the one table of the storage's statuses.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

import aiohttp

from gateway.backends import OBJECT_HEADERS
from gateway.backends.http_pool import UpstreamPool
from gateway.errors import BadGateway, GatewayError, GatewayTimeout, NotFound, RangeNotSatisfiable, Unavailable
from gateway.models import Fetched, FetchRequest

CHUNK = 64 * 1024  # bytes per ASGI send: big enough to keep per-send overhead small, small enough to stream
_TOTAL = re.compile(r"/([0-9]+)\s*$")
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit: it takes "²", which int() refuses
# What HTTP forbids in a field value (HTAB is allowed): forwarded, a CR or LF could split the answer,
# and uvicorn refuses the others with a 500 (its HEADER_VALUE_RE is this same set).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Sign = Callable[[str], Awaitable[dict[str, str]]]
"""Given the method (GET or HEAD), the headers that authenticate it (fresh for every request)."""


def _timeout() -> GatewayError:
    return GatewayTimeout("the storage did not answer in time")


def _malformed() -> GatewayError:
    return BadGateway("the storage's answer is not valid HTTP")


def _unreachable() -> GatewayError:
    # Refused, reset, unresolvable, broken off mid-body. The foreign message names the host, so no
    # detail of it is copied: the error is built from a fixed text.
    return Unavailable("the storage cannot be reached or broke off", retry_after=5)


def _busy() -> GatewayError:
    return Unavailable("the storage is unavailable; retry shortly", retry_after=5)


# Foreign exceptions, in order: the first that matches wins. TimeoutError comes first because
# aiohttp's socket timeouts are ClientErrors too, and TimeoutError is an OSError.
_FOREIGN: tuple[tuple[type[Exception], Callable[[], GatewayError]], ...] = (
    (TimeoutError, _timeout),  # a silent storage: before the status line, or between body chunks
    (aiohttp.ClientResponseError, _malformed),  # not HTTP, or a header no client may accept (NUL, bare CR)
    (aiohttp.ClientError, _unreachable),
    (OSError, _unreachable),
)

# The storage's statuses that are not an answer to pass on. Not listed, and a BadGateway: 400, 401,
# 403 (a bad or expired signature, a denied role), a redirect, and anything unexpected: the storage
# refused the gateway's own request, which no client can fix. Nor is 416: fetch answers it for a GET
# with the object's size; a HEAD carries no range, so a 416 to one is the storage misbehaving.
_STATUSES: dict[int, Callable[[], GatewayError]] = {
    404: lambda: NotFound("no such object"),
    412: lambda: Unavailable("the object changed while it was read; retry", retry_after=1),
    429: _busy, 500: _busy, 502: _busy, 503: _busy, 504: _busy,
}


@contextmanager
def storage_errors() -> Iterator[None]:
    """Translates foreign failures of the storage, in the request or in the body, with ``_FOREIGN``.

    Gateway errors and anything not in the table pass unchanged (an unexpected error stays a 500
    with its traceback, never disguised as the storage's fault)."""
    try:
        yield
    except Exception as exc:
        for kind, error in _FOREIGN:
            if isinstance(exc, kind):
                raise error() from exc
        raise


def status_error(status: int) -> GatewayError:
    """The gateway's error for a storage status that is not 200, 206 or 304 (416 aside, see fetch)."""
    error = _STATUSES.get(status)
    return error() if error is not None else BadGateway("the storage refused the gateway's request")


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


def object_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The object's headers (``OBJECT_HEADERS``) exactly as the storage sent them.

    Values are decoded as Latin-1, which maps each byte to one character, so ``value.encode("latin-1")``
    gives back the storage's bytes: a UTF-8 file name reaches the client as UTF-8, and bytes that are
    no UTF-8 at all cannot fail the answer. A value holding a control character is dropped, never
    repaired. A repeated header is decided by its first occurrence, as aiohttp's ``headers[name]`` is."""
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for raw_name, raw_value in raw:
        name = raw_name.lower().decode("latin-1")  # bytes.lower folds ASCII only
        if name not in OBJECT_HEADERS or name in seen:
            continue
        seen.add(name)
        value = raw_value.decode("latin-1")
        if not _CONTROL.search(value):
            headers[name] = value
    return headers


def _size(status: int, headers: dict[str, str]) -> int | None:
    if status == 206:
        match = _TOTAL.search(headers.get("content-range", ""))
        return int(match.group(1)) if match else None
    length = headers.get("content-length", "")
    return int(length) if status == 200 and _DIGITS.fullmatch(length) else None


async def fetch(pool: UpstreamPool, url: str, sign: Sign, request: FetchRequest,
                *, trust: ssl.SSLContext | bool = True) -> Fetched:
    """``trust``: the storage's TLS verification (a backend's ``ca_bundle``), the system's by default."""
    method = "HEAD" if request.head else "GET"
    headers = {**await sign(method), **forwarded(request)}
    with storage_errors():
        response = await pool.session().request(method, url, headers=headers, allow_redirects=False, ssl=trust)
    status = response.status
    if status in (200, 206, 304):
        passed = object_headers(response.raw_headers)
        if method == "HEAD" or status == 304:
            response.release()
            return Fetched(status, passed, _size(status, passed))
        return Fetched(status, passed, _size(status, passed), _body(response), response.release)
    response.release()  # closes the connection when an error body is left unread: it is never read
    if status == 416 and method == "GET":
        # One HEAD for the size, never more: fetch re-asks only a GET, and a 416 to a HEAD is a refusal.
        head = await fetch(pool, url, sign, FetchRequest(head=True), trust=trust)
        raise RangeNotSatisfiable("the range is outside the object", size=head.size or 0)
    raise status_error(status)


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body in chunks of at most CHUNK bytes; failures mid-body go through the same table."""
    with storage_errors():
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
