"""Tiny HTTPS sites on loopback for browser tests: a vendor page, a storage, anything with a few routes.

Each site is its own origin (``https://localhost:P``, ``https://127.0.0.2:P``, ...) served with a leaf of
the test CA, records every request it gets (so a test can see which cookies and headers a browser
really sent) and answers from a table of routes that a test may change after the port is known.
The TLS handshake runs in the request's thread, so a browser's idle pre-connection never blocks the
accept loop.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.browsers.tls import TestCA

CORS_ANY = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Range, Content-Length"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Route = Callable[[Request], Response]


@dataclass
class Site:
    """A running site: its origin, its routes (path -> handler) and the requests it has seen."""

    origin: str
    host: str
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.origin + path

    def seen(self, path: str) -> list[Request]:
        return [r for r in list(self.requests) if r.path == path]


def page(html: str | Callable[[], str]) -> Route:
    """An HTML page (``html`` may be a callable, read on every request)."""
    def route(_: Request) -> Response:
        text = html() if callable(html) else html
        return Response(200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}, text.encode())
    return route


def static(body: bytes, content_type: str, *, cors: dict[str, str] | None = None) -> Route:
    """A file with single-range ``Range`` support (206) and the given CORS headers (``CORS_ANY`` for ``*``)."""
    def route(request: Request) -> Response:
        headers = {"Content-Type": content_type, "Accept-Ranges": "bytes", "Cache-Control": "no-store", **(cors or {})}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if match is None:
            return Response(200, headers, body)
        start = int(match[1])
        end = min(int(match[2]) if match[2] else len(body) - 1, len(body) - 1)
        if start > end:
            return Response(416, {**headers, "Content-Range": f"bytes */{len(body)}"})
        return Response(206, {**headers, "Content-Range": f"bytes {start}-{end}/{len(body)}"}, body[start:end + 1])
    return route


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site
    tls: Any

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # Handshake later, in the request's own thread (see the module docstring).
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # TLS and socket errors are a browser's business
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as browsers expect; every answer has a Content-Length
    timeout = 10
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        try:
            self.request.do_handshake()
        except OSError:  # a pre-connection closed unused, or a client that distrusts the CA
            self.request.close()
            raise
        super().setup()

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            super().handle()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        parts = urlsplit(self.path)
        request = Request(self.command, parts.path, parts.query,
                          {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length) if length else b"")
        site = self.server.site
        site.requests.append(request)
        route = site.routes.get(parts.path)
        if request.method == "OPTIONS":
            response = Response(204, {"Access-Control-Allow-Origin": request.headers.get("origin", "*"),
                                      "Access-Control-Allow-Headers": request.headers.get(
                                          "access-control-request-headers", ""),
                                      "Access-Control-Allow-Methods": "GET, HEAD, POST"})
        elif route is None:
            response = Response(404, {"Content-Type": "text/plain"}, b"not found")
        else:
            response = route(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if request.method != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_HEAD = do_OPTIONS = _answer  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@contextlib.contextmanager
def https_site(ca: TestCA, host: str = "localhost", routes: dict[str, Route] | None = None,
               *, bind: str | None = None) -> Iterator[Site]:
    """Serve ``routes`` over HTTPS as ``https://<host>:<free port>``; binds 127.0.0.x only.

    ``host`` is what the browser types (``localhost`` binds 127.0.0.1); the leaf names exactly it.
    """
    address = bind or ("127.0.0.1" if host == "localhost" else host)
    if not address.startswith("127."):
        raise ValueError(f"test sites bind to loopback only, not {address}")
    server = _Server((address, 0), _Handler)
    server.tls = ca.issue(host).server_context()
    port = server.server_address[1]
    server.site = Site(f"https://{host}:{port}", host, port, dict(routes or {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True, name=f"site-{host}:{port}")
    thread.start()
    try:
        yield server.site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
