"""The bounded JSON fetcher against a real, misbehaving HTTP server on a local socket: every way an
identity provider's answer can be unusable becomes one IdpError with its reason, in bounded time
and memory."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from gateway.auth.idp_http import TOKEN_ANSWERS, IdpError, IdpFailure, IdpHttp

from .support import serving

pytestmark = pytest.mark.anyio
TIMEOUT = 0.5
HUGE = 200_000_000


class Seen:
    """What the server saw and did, for the assertions."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.bodies: dict[str, bytes] = {}
        self.huge_written = 0
        self.huge_done = threading.Event()


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.hits[self.path] += 1
            seen.headers[self.path] = {k.lower(): v for k, v in self.headers.items()}
            with suppress(ConnectionError):  # the fetcher hung up first, as it should
                getattr(self, "get_" + self.path.strip("/").replace("-", "_"))()

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            seen.hits[self.path] += 1
            seen.headers[self.path] = {k.lower(): v for k, v in self.headers.items()}
            seen.bodies[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
            status = 200 if self.path == "/token-ok" else 400
            self.answer(status, {"id_token": "x"} if status == 200 else {"error": "invalid_grant"})

        def answer(self, status: int, document: Any = None, *, body: bytes | None = None, **headers: str) -> None:
            raw = json.dumps(document).encode() if body is None else body
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(raw)),
                                **headers}.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(raw)

        def get_ok(self) -> None:
            self.answer(200, {"issuer": "x", "keys": []})

        def get_slow_headers(self) -> None:
            time.sleep(3)
            self.get_ok()

        def get_trickle(self) -> None:
            # Each byte comes well within any per-read timeout; only a deadline for the whole answer stops it.
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(TIMEOUT / 5)

        def get_huge(self) -> None:
            # No Content-Length: the body ends when the connection does. Counts what reached the socket.
            self.send_response(200)
            self.end_headers()
            block = b"[" + b"0," * 32_767 + b"0"
            try:
                while seen.huge_written < HUGE:
                    self.wfile.write(block)
                    seen.huge_written += len(block)
            except OSError:
                pass
            finally:
                seen.huge_done.set()

        def get_announced(self) -> None:
            # Announces more than the limit, sends two bytes, and keeps the connection open.
            self.send_response(200)
            self.send_header("Content-Length", "2000000")
            self.end_headers()
            self.wfile.write(b"{}")
            self.wfile.flush()
            time.sleep(3)

        def get_html(self) -> None:
            self.answer(200, body=b"<html>Sign in to the proxy</html>", Content_Type="text/html")

        def get_error(self) -> None:
            self.answer(500, {"error": "server_error"})

        def get_redirect(self) -> None:
            self.answer(302, {}, Location="/ok")

        def get_array(self) -> None:
            self.answer(200, [{"issuer": "x"}])

        def get_deep(self) -> None:
            self.answer(200, body=b"[" * 100_000 + b"]" * 100_000)

        def get_latin1(self) -> None:
            self.answer(200, body=b'{"issuer": "\xe9"}')

        def get_gzip(self) -> None:
            self.answer(200, body=gzip.compress(b'{"issuer": "x"}'), Content_Encoding="gzip")

        def get_cut(self) -> None:
            # The connection drops mid-body: translated like a failure at connect time.
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"issuer": ')
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def base(seen: Seen) -> Iterator[str]:
    with serving(_handler(seen)) as url:
        yield url


async def failure(url: str, **kwargs: Any) -> tuple[IdpError, float]:
    async with httpx.AsyncClient() as http:
        started = time.monotonic()
        with pytest.raises(IdpError) as caught:
            # The test's own guard: a fetcher without its deadline fails here instead of hanging.
            async with _guard():
                await IdpHttp(http, timeout=TIMEOUT).fetch(kwargs.pop("method", "GET"), url, **kwargs)
        return caught.value, time.monotonic() - started


def _guard() -> asyncio.Timeout:
    return asyncio.timeout(10)


async def test_a_json_object_is_returned_and_identity_is_asked_for(base: str, seen: Seen) -> None:
    async with httpx.AsyncClient() as http:
        assert await IdpHttp(http).get(base + "/ok") == {"issuer": "x", "keys": []}
    assert seen.headers["/ok"]["accept"] == "application/json"
    assert seen.headers["/ok"]["accept-encoding"] == "identity"


@pytest.mark.parametrize(("path", "reason"), [
    ("/error", IdpFailure.STATUS),
    ("/html", IdpFailure.NOT_JSON),
    ("/array", IdpFailure.NOT_OBJECT),
    ("/deep", IdpFailure.NOT_JSON),  # 100,000 levels of nesting: refused, no RecursionError
    ("/latin1", IdpFailure.NOT_JSON),  # JSON is UTF-8
    ("/gzip", IdpFailure.NOT_JSON),  # encoded although identity was asked for: never inflated
    ("/cut", IdpFailure.UNREACHABLE),
])
async def test_unusable_answers_have_their_reason(base: str, path: str, reason: IdpFailure) -> None:
    error, _ = await failure(base + path)
    assert error.reason is reason, str(error)
    assert path in str(error)  # the log says which document
    assert "Sign in to the proxy" not in str(error) and "server_error" not in str(error)  # never the body
    if path == "/gzip":
        assert "gzip-encoded" in str(error)


async def test_a_redirect_is_not_followed(base: str, seen: Seen) -> None:
    error, _ = await failure(base + "/redirect")
    assert error.reason is IdpFailure.STATUS
    assert "302" in str(error) and "redirects are not followed" in str(error)
    assert seen.hits["/ok"] == 0


async def test_a_slow_server_times_out(base: str) -> None:
    error, took = await failure(base + "/slow-headers")
    assert error.reason is IdpFailure.TIMEOUT
    assert took < TIMEOUT + 0.5


async def test_a_trickling_body_cannot_outlast_the_deadline(base: str) -> None:
    # Every byte arrives within a per-read timeout; only the deadline for the whole exchange ends it.
    error, took = await failure(base + "/trickle")
    assert error.reason is IdpFailure.TIMEOUT
    assert took < TIMEOUT + 0.5


async def test_a_huge_body_is_cut_off_without_being_read(base: str, seen: Seen) -> None:
    error, took = await failure(base + "/huge")
    assert error.reason is IdpFailure.TOO_LARGE
    assert "more than 1000000 bytes" in str(error)
    assert seen.huge_done.wait(10)
    # The server could write only what the socket buffers held before the gateway hung up.
    assert seen.huge_written < HUGE / 10, seen.huge_written
    assert took < TIMEOUT


async def test_an_announced_huge_body_is_refused_before_reading(base: str) -> None:
    # Without the Content-Length check this would wait for the 2 MB that never come (a timeout).
    error, took = await failure(base + "/announced")
    assert error.reason is IdpFailure.TOO_LARGE
    assert "announced 2000000 bytes" in str(error)
    assert took < TIMEOUT


async def test_an_unreachable_server(base: str) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error, _ = await failure(f"http://user:pw@127.0.0.1:{port}/keys?token=secret")
    assert error.reason is IdpFailure.UNREACHABLE
    assert f"GET http://127.0.0.1:{port}/keys failed: ConnectError" == str(error)  # no userinfo, no query
    error, _ = await failure("ftp://127.0.0.1/keys")
    assert error.reason is IdpFailure.UNREACHABLE


async def test_the_token_endpoint_form_and_its_refusals(base: str, seen: Seen) -> None:
    form = "grant_type=authorization_code&code=abc"
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic Y2xpZW50OnNlY3JldA=="}
    async with httpx.AsyncClient() as http:
        idp = IdpHttp(http, timeout=TIMEOUT)
        assert await idp.fetch("POST", base + "/token-ok", headers=headers, content=form,
                               accept=TOKEN_ANSWERS) == {"id_token": "x"}
        # A refusal (400 with JSON) is an answer the caller reads, not a failure...
        assert await idp.fetch("POST", base + "/token", headers=headers, content=form,
                               accept=TOKEN_ANSWERS) == {"error": "invalid_grant"}
        # ...unless the caller takes 200 only; and a 5xx never is one.
        with pytest.raises(IdpError) as caught:
            await idp.fetch("POST", base + "/token", headers=headers, content=form)
        assert caught.value.reason is IdpFailure.STATUS
    assert seen.bodies["/token"] == form.encode()
    assert seen.headers["/token"]["authorization"] == headers["Authorization"]
    error, _ = await failure(base + "/error", method="GET", accept=TOKEN_ANSWERS)
    assert error.reason is IdpFailure.STATUS


def test_public_words_are_fixed_per_reason() -> None:
    for reason in IdpFailure:
        error = IdpError(reason, "GET https://idp.example/v1/keys answered 500")
        if reason is IdpFailure.INVALID:
            assert error.public == str(error)  # the callers' own words about the document
        else:
            assert "idp.example" not in error.public and error.public
