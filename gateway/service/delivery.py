"""Proxy delivery's use case: authorize a read like a redirect, then fetch the object from the
dataset's :class:`~gateway.backends.ObjectSource`, and audit the answer's status and the bytes sent
once the body has gone (or the client has left).

A caller is refused before the storage is asked anything, so a caller the policy refuses never
learns whether an object exists. Suffix ranges (``bytes=-N``) are resolved here, after a ``HEAD``
tells the size, and forwarded as absolute ranges; ``If-Range`` is resolved here too, by comparing
the ranged answer's validator (S3 does not implement ``If-Range``). One behaviour for every store,
including S3-compatible servers that answer suffix ranges wrongly (``@20minutes/s3rver`` 4.0.4 does).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.backends import ObjectSource
from gateway.errors import Forbidden, GatewayError, InvalidKey, RangeNotSatisfiable
from gateway.keys import canonical_key
from gateway.models import Decision, DenyReason, Fetched, FetchRequest, RequestContext
from gateway.service.core import GatewayService
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.refusals import ip_text

_RANGE = re.compile(r"bytes=([0-9]{0,15})-([0-9]{0,15})")
_SIGNED_URL = Decision(True, rule="signed_url")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """What the client asked, as sent (the HTTP layer copies these headers and nothing else)."""

    head: bool = False
    range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_range: str | None = None
    exp: str | None = None  # a gateway URL's own signature, instead of a credential
    sig: str | None = None


@dataclass(slots=True)
class Delivery:
    """An object to stream: the storage's answer, how long a browser may keep it, the dataset's
    overrides, and ``finish(bytes_sent)``, which writes the audit record (await it exactly once)."""

    fetched: Fetched
    max_age: int
    content_type: str | None
    content_disposition: str | None
    finish: Callable[[int], Awaitable[None]]


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
    """``read`` for proxy datasets; the steps before the fetch are :class:`GatewayService`'s own."""

    def __init__(self, service: GatewayService, urls: GatewayUrls) -> None:
        self.service = service
        self.urls = urls

    async def read(self, ctx: RequestContext, dataset: str, raw_key: str | bytes, request: ReadRequest) -> Delivery:
        service = self.service
        started = time.perf_counter()
        state = service.holder.current
        ds = await service._dataset(ctx, state, dataset, "proxy", started)
        if ds.config.rate_limit is not None:
            await service._rate_limit(ctx, ds, 1, "proxy", started)
        try:
            key = canonical_key(raw_key, ds.max_key_bytes)
        except InvalidKey as exc:
            await service._deny(ctx, "proxy", dataset, None, DenyReason.INVALID_KEY, exc, started)
        now = service.clock()
        max_age = ds.bucket
        if request.sig is not None or request.exp is not None:
            try:
                exp = self.urls.verify(ds.name, key, _client(ctx), exp=request.exp or "", sig=request.sig or "",
                                       now=now)
            except Forbidden as exc:
                await service._deny(ctx, "proxy", dataset, key, DenyReason(exc.reason), exc, started)
            decision = _SIGNED_URL
            max_age = max(0, min(max_age, exp - int(now) - 1))
        else:
            decision = ds.decide(ctx.principal, ctx.client_ip, key)
            if not decision.allowed:
                await service.refused(ctx, "proxy", ds, key, decision, started)
        service._tally.inc(service._allowed)
        source = state.sources[ds.name]
        try:
            upstream = await self._upstream_request(source, key, request)
            fetched = await source.fetch(key, upstream)
            if upstream.range is not None and request.if_range and not _validates(request.if_range, fetched):
                # RFC 9110 If-Range: the object changed since the client's copy, so all of it.
                fetched.release()
                fetched = await source.fetch(key, FetchRequest(request.head, None, request.if_none_match,
                                                               request.if_modified_since))
        except GatewayError as exc:
            await service._audit(ctx, "proxy", dataset, key, decision, exc.status, started=started)
            raise

        async def finish(sent: int) -> None:
            record = service._record(ctx, "proxy", dataset, key, decision, fetched.status, started)
            record.bytes = sent
            await service.audit.record(record)

        backend = ds.config.backend
        return Delivery(fetched, max_age, getattr(backend, "response_content_type", None),
                        getattr(backend, "response_content_disposition", None), finish)

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


def _client(ctx: RequestContext) -> str:
    return ctx.client_text or ip_text(ctx.client_ip)
