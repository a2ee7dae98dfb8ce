"""From an ASGI scope to the service layer's RequestContext: client IP, request id, principal."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from gateway.auth import AuthRequest
from gateway.auth.client_ip import ForwardedHeader, client_address
from gateway.errors import ClientClosedRequest, NotFound, PayloadTooLarge
from gateway.logs import request_id_var
from gateway.models import RequestContext
from gateway.service import GatewayService
from gateway.settings import Network

_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
OBJECTS = b"/v1/datasets/"
LOCAL = b"/v1/local/"


def header_map(scope: Scope) -> dict[str, str]:
    """Lower-case names; repeated headers are joined with ', ' as RFC 9110 allows."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.split(b"?", 1)[0]
    return str(scope["path"]).encode("utf-8", "surrogateescape")


def auth_request(scope: Scope, trusted: Sequence[Network], forwarded_header: ForwardedHeader,
                 headers: dict[str, str] | None = None, session_route: bool = False) -> AuthRequest:
    """What authentication reads from this request, the client's address resolved once."""
    headers = header_map(scope) if headers is None else headers
    client = scope.get("client")
    ip, text = client_address(client[0] if client else None, headers, trusted, header=forwarded_header)
    return AuthRequest(scope["method"], raw_path(scope).decode("latin-1"),
                       scope.get("query_string", b"").decode("latin-1"), headers, ip, session_route,
                       client_text=text)


async def request_context(
    scope: Scope, service: GatewayService, trusted: Sequence[Network], *, authenticate: bool = True,
    headers: dict[str, str] | None = None, forwarded_header: ForwardedHeader = "x-forwarded-for",
    session_route: bool = False,
) -> RequestContext:
    request = auth_request(scope, trusted, forwarded_header, headers, session_route)
    base = RequestContext(request_id_var.get() or "-", request.client_ip, request.headers.get("user-agent", ""),
                          client_text=request.client_text)
    if not authenticate:
        return base
    ctx = await service.authenticate(request, base)
    if request.renewal is not None:
        ctx.session_cookie = request.renewal
    return ctx


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


def split_path(path: bytes, prefix: bytes, middle: bytes) -> tuple[str, bytes]:
    """(dataset, the rest still percent-encoded) of a raw path under ``prefix``; NotFound otherwise."""
    rest = path[len(prefix):]
    dataset_raw, _, tail = rest.partition(b"/")
    dataset = _dataset_name(dataset_raw)
    if dataset is None:
        raise NotFound("there is no such dataset")
    if middle:
        if not tail.startswith(middle):
            raise NotFound(f"expected {prefix.decode()}{{dataset}}/{middle.decode()}{{key}}")
        tail = tail[len(middle):]
    return dataset, tail


@functools.lru_cache(maxsize=256)
def _dataset_name(raw: bytes) -> str | None:
    """A dataset name from the path, or None; cached, as a gateway serves a handful of datasets."""
    dataset = unquote(raw.decode("latin-1"))
    return dataset if _DATASET.match(dataset) else None
