"""Proxy delivery's use case: admit a read like a redirect (or by its gateway URL's own signature),
then fetch the object from the dataset's :class:`~gateway.backends.ObjectSource`. The request's audit
record gets the answer's status and the bytes sent when the body has gone (or the client has left).

A caller is refused before the storage is asked anything, so a caller the policy refuses never
learns whether an object exists. Suffix ranges (``bytes=-N``) are resolved here, after a ``HEAD``
tells the size, and forwarded as absolute ranges; ``If-Range`` is resolved here too, by comparing
the ranged answer's validator (S3 does not implement ``If-Range``). One behaviour for every store,
including S3-compatible servers that answer suffix ranges wrongly (``@20minutes/s3rver`` 4.0.4 does).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.backends import ObjectSource
from gateway.errors import RangeNotSatisfiable
from gateway.models import AuthMethod, Fetched, FetchRequest
from gateway.service.admit import Gate
from gateway.service.context import RequestContext
from gateway.service.url_signature import UrlSignature

_RANGE = re.compile(r"bytes=([0-9]{0,15})-([0-9]{0,15})")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """What the client asked, as sent (the HTTP layer copies these headers and nothing else)."""

    head: bool = False
    range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_range: str | None = None
    signature: UrlSignature | None = None  # a gateway URL's own signature, instead of a credential
    capability: str | None = None  # a capability from the path, instead of the request's credential


@dataclass(frozen=True, slots=True)
class Delivery:
    """An object to stream: the storage's answer, how long a browser may keep it, the dataset's
    overrides, and a renewed session cookie the answer must carry."""

    fetched: Fetched
    max_age: int
    content_type: str | None
    content_disposition: str | None
    renewal: str | None = None
    session: bool = False  # read with a browser session: the answer is never stored


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """One ``bytes=`` range as (first, last), (None, suffix length), or None for no usable range.

    Malformed, multi-part and backwards ranges are ignored (RFC 9110 lets a server serve the whole
    object instead), so they are never forwarded either.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    if not match.group(1):
        return None, int(match.group(2))
    first, last = int(match.group(1)), int(match.group(2)) if match.group(2) else None
    return None if last is not None and last < first else (first, last)


class ProxyReads:
    """``read`` for proxy datasets: what the admit step let in, fetched from the storage."""

    def __init__(self, gate: Gate, *, clock: Callable[[], float] = time.time) -> None:
        self.gate = gate
        self.clock = clock

    async def read(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, request: ReadRequest) -> Delivery:
        admitted = await self.gate.admit(ctx, dataset, raw_key, action="proxy", signature=request.signature,
                                         capability=request.capability)
        ds, key = admitted.ds, admitted.key
        assert key is not None  # noqa: S101 - admitted with a key
        max_age = ds.bucket
        if admitted.expires is not None:  # a gateway URL: never cached past its own expiry
            max_age = max(0, min(max_age, admitted.expires - int(self.clock()) - 1))
        source = ctx.state.sources[ds.name]
        upstream = await self._upstream_request(source, key, request)
        fetched = await source.fetch(key, upstream)
        if upstream.range is not None and request.if_range and not _validates(request.if_range, fetched):
            # RFC 9110 If-Range: the object changed since the client's copy, so all of it.
            fetched.release()
            fetched = await source.fetch(key, FetchRequest(request.head, None, request.if_none_match,
                                                           request.if_modified_since))
        ctx.audit.streams = True
        backend = ds.config.backend
        return Delivery(fetched, max_age, getattr(backend, "response_content_type", None),
                        getattr(backend, "response_content_disposition", None), admitted.renewal,
                        admitted.principal.method in (AuthMethod.BROWSER_SESSION, AuthMethod.CAPABILITY))

    @staticmethod
    async def _upstream_request(source: ObjectSource, key: str, request: ReadRequest) -> FetchRequest:
        byte_range = parse_range(request.range)
        forwarded = None
        if byte_range is not None:
            first, last = byte_range
            if first is None and last is not None:
                size = (await source.fetch(key, FetchRequest(head=True))).size or 0
                if last == 0:
                    raise RangeNotSatisfiable("the range is empty", size=size)
                if size:  # a suffix of an empty object is the (empty) object itself
                    forwarded = f"bytes={max(0, size - last)}-{size - 1}"
            else:
                forwarded = f"bytes={first}-{'' if last is None else last}"
        return FetchRequest(request.head, forwarded, request.if_none_match, request.if_modified_since)


def _validates(if_range: str, fetched: Fetched) -> bool:
    """An If-Range validator matches: an ETag strongly (never a weak one), or a date exactly."""
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return not value.startswith("W/") and fetched.headers.get("etag") == value
    return fetched.headers.get("last-modified") == value
