"""Proxy delivery over HTTP: the object itself, streamed, for ``delivery: proxy`` datasets.

``GET``/``HEAD /v1/datasets/{dataset}/objects/{key}`` authenticates like a redirect; with
``?exp=&sig=`` the gateway URL's own signature stands in for the credential (the URLs that
``?format=json`` and ``POST /v1/sign`` hand out for such a dataset). Only ``Range``,
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
from urllib.parse import parse_qs

import anyio
from starlette.types import Message, Receive, Scope, Send

from gateway.api.context import request_context
from gateway.auth.client_ip import ForwardedHeader
from gateway.config import Network
from gateway.errors import BadRequest, GatewayError
from gateway.models import AuthMethod
from gateway.service import Delivery, ProxyReads, ReadRequest

log = logging.getLogger("gateway.http")
_FIXED = [
    (b"accept-ranges", b"bytes"),  # (nosniff comes from the edge, on every answer)
    # An object must never run script on the gateway's origin (it holds the sign-in cookie).
    (b"content-security-policy", b"default-src 'none'; sandbox"),
    (b"referrer-policy", b"no-referrer"),
    (b"vary", b"Accept"),
]
_PASSED = ("content-length", "content-range", "etag", "last-modified", "content-encoding", "content-language")


def read_request(scope: Scope, headers: dict[str, str], query: dict[str, list[str]]) -> ReadRequest:
    exp, sig = query.get("exp"), query.get("sig")
    if (exp is not None and len(exp) != 1) or (sig is not None and len(sig) != 1):
        raise BadRequest("give exp and sig at most once")
    return ReadRequest(
        head=scope["method"] == "HEAD", range=headers.get("range"), if_none_match=headers.get("if-none-match"),
        if_modified_since=headers.get("if-modified-since"), if_range=headers.get("if-range"),
        exp=exp[0] if exp else None, sig=sig[0] if sig else None,
    )


def response_headers(delivery: Delivery, *, session: bool = False) -> list[tuple[bytes, bytes]]:
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
    out.append((b"cache-control", b"private, no-store" if session else b"private, max-age=%d" % delivery.max_age))
    return out + _FIXED


async def serve_object(proxy: ProxyReads, trusted: tuple[Network, ...], scope: Scope, receive: Receive, send: Send,
                       dataset: str, raw_key: bytes, headers: dict[str, str],
                       forwarded_header: ForwardedHeader = "x-forwarded-for", *, session_route: bool = False) -> None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    request = read_request(scope, headers, query)
    # A gateway URL's signature is its credential: no other authentication applies to it.
    signed = request.exp is not None or request.sig is not None
    ctx = await request_context(scope, proxy.service, trusted, authenticate=not signed, headers=headers,
                                forwarded_header=forwarded_header, session_route=session_route and not signed)
    delivery = await proxy.read(ctx, dataset, raw_key, request)
    session = ctx.principal.method is AuthMethod.BROWSER_SESSION
    extra = [(b"set-cookie", ctx.session_cookie.encode("latin-1"))] if ctx.session_cookie else []
    await stream(delivery, receive, send, head=request.head, session=session, extra=extra)


async def stream(delivery: Delivery, receive: Receive, send: Send, *, head: bool, session: bool = False,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    fetched = delivery.fetched
    sent = 0
    try:
        headers = response_headers(delivery, session=session) + (extra or [])
        await send({"type": "http.response.start", "status": fetched.status, "headers": headers})
        if head or fetched.status == 304:
            await send({"type": "http.response.body", "body": b""})
            return
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
        await delivery.finish(sent)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
