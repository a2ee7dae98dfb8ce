"""The HTTP/1.1 connection, hardened against slow and hostile clients (part of the composition root).

uvicorn's httptools protocol parses fast but sets no limit on how long a client may take to send
its request head, nor on how large the head may grow (one 64 MiB header was answered; four sockets
streaming unfinished headers took a worker from 206 to 429 MB), and it answers requests it cannot
parse in plain text. This subclass adds, per connection:

- a **head deadline**: a connection's first request head, counted from the moment it opens, and
  every later one from its first byte, must arrive within ``head_timeout`` seconds, else ``408``
  and the connection is closed (an idle keep-alive connection is closed by uvicorn's own ``timeout_keep_alive``);
- **head limits**: at most ``max_head_bytes`` of request line and headers and ``max_headers``
  header lines, else ``431``; the bytes buffered for an unfinished head never exceed the limit by
  more than one read;
- requests the parser refuses get the gateway's JSON ``400`` (with ``X-Request-ID``).

The body deadline, which must free the request's concurrency slot, is enforced by the edge
(gateway.api.edge), where the request is. Deadlines are checked by one timer per process, once a
second, so the request path pays no timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings

log = logging.getLogger("gateway.http")
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class Limits:
    head_timeout: float = 5.0
    max_head_bytes: int = 65_536
    max_headers: int = 100

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(head_timeout=settings.header_timeout, max_head_bytes=settings.max_header_bytes,
                   max_headers=settings.max_headers)


LIMITS = Limits()


def configure(limits: Limits) -> None:
    """Set the limits of every connection this process accepts (each worker process calls it)."""
    global LIMITS
    LIMITS = limits


class _Watchdog:
    """One timer per event loop: closes connections whose request head is overdue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: weakref.WeakSet[GatewayHttpProtocol] = weakref.WeakSet()
        self._handle = loop.call_later(1.0, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            deadline = connection.head_deadline
            if deadline is not None and now > deadline:
                connection.refuse(408, "request_timeout",
                                  f"the request head did not arrive within {LIMITS.head_timeout:g}s")
        self._handle = self.loop.call_later(1.0, self._tick)


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits in the module docstring."""

    head_deadline: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # bytes read while a request head is unfinished
        self._in_head = True
        self.head_deadline = self.loop.time() + LIMITS.head_timeout
        watchdog = _WATCHDOGS.get(self.loop)
        if watchdog is None:
            watchdog = _WATCHDOGS[self.loop] = _Watchdog(self.loop)
        watchdog.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_bytes > LIMITS.max_head_bytes:
                self.refuse(431, "headers_too_large", f"the request head is larger than {LIMITS.max_head_bytes} bytes")
                return
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > LIMITS.max_head_bytes and not self.transport.is_closing():
            self.refuse(431, "headers_too_large", f"the request head is larger than {LIMITS.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a later request on this connection: its head has a deadline too
            self._in_head = True
            self._head_bytes = 0
            self.head_deadline = self.loop.time() + LIMITS.head_timeout

    def on_headers_complete(self) -> None:
        # The head is counted here, once, rather than per header line: uvicorn's own on_url and
        # on_header have collected it (a Python call per header line less on every request).
        self._in_head = False
        self.head_deadline = None
        if len(self.headers) > LIMITS.max_headers:
            self.refuse(431, "headers_too_many", f"the request has more than {LIMITS.max_headers} header lines")
            return
        # Bytes received while the head was unfinished bound the head's size: only when they pass
        # the limit is the head itself measured (the read may also hold the body or a next request).
        if self._head_bytes > LIMITS.max_head_bytes and self._head_size() > LIMITS.max_head_bytes:
            self.refuse(431, "headers_too_large", f"the request head is larger than {LIMITS.max_head_bytes} bytes")
            return
        super().on_headers_complete()

    def _head_size(self) -> int:
        """The request line's target and the header lines, as parsed."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def send_400_response(self, msg: str) -> None:
        # The parser refused the request (a malformed line, a lowercase method, Content-Length
        # with chunked encoding, ...): the gateway's JSON, not uvicorn's plain text.
        self.refuse(400, "bad_request", "the request is not valid HTTP/1.1")

    def refuse(self, status: int, code: str, detail: str) -> None:
        """Answer ``status`` with the gateway's JSON error and close the connection."""
        self.head_deadline = None
        self._in_head = False
        if self.transport.is_closing():
            return
        request_id = secrets.token_hex(8)
        body = orjson.dumps({"error": code, "detail": detail, "request_id": request_id})
        head: list[Any] = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
                           b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                           b"x-request-id: ", request_id.encode(), b"\r\n",
                           b"x-content-type-options: nosniff\r\n", b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        log.info("refused a request on the connection: %s", code, extra={"request_id": request_id})
