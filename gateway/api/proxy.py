"""Proxy delivery over HTTP: the object itself, streamed, for ``delivery: proxy`` datasets.

``GET``/``HEAD /v1/datasets/{dataset}/objects/{key}`` is admitted like a redirect; with ``?exp=&sig=``
the gateway URL's own signature stands in for the credential (the URLs that ``?format=json`` and
``POST /v1/sign`` hand out for such a dataset). Only ``Range``,
``If-None-Match``, ``If-Modified-Since`` and ``If-Range`` are passed on; never the client's
``Authorization``, ``Cookie`` or any other header.

The body is streamed in chunks with end-to-end backpressure: uvicorn's ``send`` returns only once
its write buffer has drained below its low-water mark, and until then nothing more is read from the
storage, whose reader pauses the socket once its own small buffer is full. So memory per
connection stays bounded whatever the object's size and the client's speed. A disconnect cancels
the stream at once, and the storage connection is released in ``finally`` (closed, when its body
was not read to the end, so it is never handed to the next request half-read).
"""

from __future__ import annotations

import logging

import anyio
from starlette.types import Message, Receive, Scope, Send

from gateway.backends import OBJECT_HEADERS
from gateway.errors import GatewayError
from gateway.service import Delivery, ProxyReads, ReadRequest, RequestContext, UrlSignature

log = logging.getLogger("gateway.http")
_FIXED = [
    (b"accept-ranges", b"bytes"),  # (nosniff comes from the edge, on every answer)
    # An object must never run script on the gateway's origin (it holds the sign-in cookie).
    (b"content-security-policy", b"default-src 'none'; sandbox"),
    (b"referrer-policy", b"no-referrer"),
    (b"vary", b"Accept"),
]
# The object's headers, but the two a dataset may override (response_content_type/_disposition):
# response_headers adds those after the override.
_OVERRIDABLE = ("content-type", "content-disposition")
_PASSED = tuple(name for name in OBJECT_HEADERS if name not in _OVERRIDABLE)


def read_request(ctx: RequestContext, signature: UrlSignature | None, capability: str | None = None) -> ReadRequest:
    headers = ctx.request.headers
    return ReadRequest(
        head=ctx.request.method == "HEAD", range=headers.get("range"), if_none_match=headers.get("if-none-match"),
        if_modified_since=headers.get("if-modified-since"), if_range=headers.get("if-range"), signature=signature,
        capability=capability,
    )


def response_headers(delivery: Delivery) -> list[tuple[bytes, bytes]]:
    """The storage's object headers that clients need, the dataset's overrides, and the gateway's own.

    Read with a browser session, the answer is never stored, so that no cached copy outlives a
    sign-out (as for the session's redirects)."""
    upstream = delivery.fetched.headers
    out = [(name.encode(), upstream[name].encode("latin-1")) for name in _PASSED if name in upstream]
    if delivery.fetched.status != 304:
        kind = delivery.content_type or upstream.get("content-type") or "application/octet-stream"
        out.append((b"content-type", kind.encode("latin-1")))
        disposition = delivery.content_disposition or upstream.get("content-disposition")
        if disposition:
            out.append((b"content-disposition", disposition.encode("latin-1")))
    out.append((b"cache-control", b"private, no-store" if delivery.session
                else b"private, max-age=%d" % delivery.max_age))
    if delivery.renewal is not None:
        out.append((b"set-cookie", delivery.renewal.encode("latin-1")))
    return out + _FIXED


async def serve_object(proxy: ProxyReads, ctx: RequestContext, scope: Scope, receive: Receive, send: Send,
                       dataset: str, raw_key: bytes, signature: UrlSignature | None, *,
                       capability: str | None = None, vary: bool = False) -> None:
    """``vary``: the dataset's delivery is auto, so the answer depends on the fetch mode."""
    request = read_request(ctx, signature, capability)
    delivery = await proxy.read(ctx, dataset, raw_key, request)
    await stream(delivery, receive, send, head=request.head, vary=vary)


async def stream(delivery: Delivery, receive: Receive, send: Send, *, head: bool, vary: bool = False) -> None:
    """The body, with backpressure; the edge counts what went out and writes the audit record."""
    fetched = delivery.fetched
    try:
        headers = response_headers(delivery)
        if vary:
            headers.append((b"vary", b"Sec-Fetch-Mode"))
        await send({"type": "http.response.start", "status": fetched.status, "headers": headers})
        if head or fetched.status == 304:
            await send({"type": "http.response.body", "body": b""})
            return
        sent = 0
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            try:
                async for chunk in fetched.body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    sent += len(chunk)
            except GatewayError as exc:
                # The storage broke off mid-body (raised here, it would leave the task group as an
                # ExceptionGroup): end without the final message, so the server aborts the connection.
                log.warning("proxy: the storage stopped sending mid-body (%s)", exc.code)
                group.cancel_scope.cancel()
                return
            declared = fetched.headers.get("content-length", "")
            if declared.isdigit() and sent < int(declared):
                # The storage stopped early: end without the final message, so that the server
                # aborts the connection and the client sees a truncated body, never a short "success".
                group.cancel_scope.cancel()
                return
            await send({"type": "http.response.body", "body": b""})
            group.cancel_scope.cancel()
    finally:
        fetched.release()


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
