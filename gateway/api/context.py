"""From an ASGI scope to the service layer's RequestContext, built once per request by the edge.

FastAPI routes read it with :func:`context_of` (the object routes are handed it directly): no layer
parses the request again, and none looks for a key it must know about but this one.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from gateway.errors import ClientClosedRequest, NotFound, PayloadTooLarge
from gateway.service import RequestContext

_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SCOPE_KEY = "gateway.context"


def attach(scope: Scope, ctx: RequestContext) -> None:
    """Give the routes below the edge this request's context (the edge's job)."""
    scope[_SCOPE_KEY] = ctx


def context_of(request: Request | Scope) -> RequestContext:
    """The request's context, as the edge built it."""
    scope = request.scope if isinstance(request, Request) else request
    ctx: RequestContext = scope[_SCOPE_KEY]
    return ctx


def raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.split(b"?", 1)[0]
    return str(scope["path"]).encode("utf-8", "surrogateescape")


async def read_body(request: Request, limit: int, what: str = "the body") -> bytes:
    """The whole body, refused as soon as it passes ``limit`` (413); a client that leaves before it
    arrives is 499, not an error of the gateway's."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{what} is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"{what} is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest("the client went away before its request body arrived") from None
    return b"".join(chunks)


def split_path(path: str, prefix: str, middle: str) -> tuple[str, str]:
    """(dataset, the rest still percent-encoded) of a raw path under ``prefix``; NotFound otherwise."""
    rest = path[len(prefix):]
    dataset_raw, _, tail = rest.partition("/")
    dataset = _dataset_name(dataset_raw)
    if dataset is None:
        raise NotFound("there is no such dataset")
    if middle:
        if not tail.startswith(middle):
            raise NotFound(f"expected {prefix}{{dataset}}/{middle}{{key}}")
        tail = tail[len(middle):]
    return dataset, tail


@functools.lru_cache(maxsize=256)
def _dataset_name(raw: str) -> str | None:
    """A dataset name from the path, or None; cached, as a gateway serves a handful of datasets."""
    dataset = unquote(raw)
    return dataset if _DATASET.match(dataset) else None
