"""Shared test helpers: free ports, a gateway on a real socket, a private redis-server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gateway.app import GatewayApp, create_app
from gateway.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip locally with a reason; under CI=true a missing tool is a failure, never a skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def node_package(name: str) -> Path:
    """The folder of an npm package the tests run, as ``package-lock.json`` pins it.

    ``scripts/test`` runs ``scripts/npm-ci`` up front; this runs it too when pytest is started on its
    own. Skips (fails under CI=true) when Node.js is missing or the install fails.
    """
    locked = json.loads((REPO / "package-lock.json").read_text())["packages"].get(f"node_modules/{name}")
    if locked is None:
        raise AssertionError(f"{name} is not in package-lock.json: add it to package.json and refresh "
                             "package-lock.json (docs/dependencies.md)")
    folder = REPO / "node_modules" / name
    manifest = folder / "package.json"

    def installed() -> bool:
        return manifest.is_file() and json.loads(manifest.read_text()).get("version") == locked["version"]

    if not installed():
        need(shutil.which("npm") is not None and shutil.which("node") is not None,
             f"node and npm are needed to run {name}")
        result = subprocess.run([str(REPO / "scripts" / "npm-ci")], capture_output=True, text=True,  # noqa: S603
                                timeout=600, check=False)
        need(result.returncode == 0 and installed(),
             f"scripts/npm-ci failed to install {name}: {result.stderr.strip()[-500:]}")
    return folder


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_line(proc: subprocess.Popen[str], ready: re.Pattern[str], timeout: float, what: str) -> str:
    """Group 1 of the first line of ``proc``'s stdout that ``ready`` finds: how the test servers written
    in Node (s3rver, Azurite, oidc-provider) say where they listen. RuntimeError, naming ``what``, when
    no such line comes within ``timeout`` or the process exits first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            line = proc.stdout.readline()
            if not line:  # the process exited
                break
            if match := ready.search(line):
                return match.group(1).strip()
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s (exit code {proc.poll()})")


def stop_process(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, SIGKILL when it is still there after 5 s; then its stdout pipe is closed."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


def audit_records(audit: Path, *request_ids: str, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The audit file's records by request id, once each of ``request_ids`` is in it. A record is
    written when its answer is over: the client may hold the answer a moment before the gateway has
    queued the record, and the writer drains its queue every 25 ms."""
    deadline = time.monotonic() + timeout
    while True:
        text = audit.read_text() if audit.exists() else ""
        records = {r["request_id"]: r for r in map(json.loads, text.splitlines())}
        if all(rid in records for rid in request_ids) or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


@dataclass
class RunningGateway:
    url: str
    port: int
    app: GatewayApp
    server: uvicorn.Server


@contextlib.contextmanager
def serve_app(app: GatewayApp, port: int) -> Iterator[RunningGateway]:
    """Run the app under uvicorn, on a real socket, in a background thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, proxy_headers=False,
                            log_config=None, lifespan="on", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield RunningGateway(f"http://127.0.0.1:{port}", port, app, server)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def gateway_server() -> Iterator[Callable[..., RunningGateway]]:
    """Factory: ``gateway_server(config=path, **settings)`` starts a gateway on a free port."""
    stack = contextlib.ExitStack()

    def start(clock: Callable[[], float] = time.time, environ: dict[str, str] | None = None,
              **settings: Any) -> RunningGateway:
        port = settings.pop("port", None) or free_port()
        settings.setdefault("signing_key", "k" * 32)
        app = create_app(Settings(port=port, **settings), clock=clock, environ=environ)
        return stack.enter_context(serve_app(app, port))

    with stack:
        yield start


CHROMIUM = "/usr/bin/chromium"  # Debian's chromium; tests never download a browser of their own
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def page_server(html: Callable[[], str]) -> Iterator[str]:
    """Serve ``html()`` (read on every request, so it may change once the port is known) as a web
    origin on 127.0.0.1; yields the origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = html().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    with serving(Handler) as origin:
        yield origin


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", *,
            name: str | None = None) -> Iterator[str]:
    """Serve ``handler`` on ``host`` (a free port) from threads, for the block's duration; yields
    ``http://<name or host>:<port>`` (``name``: ``localhost`` for 127.0.0.1 is another site to a browser)."""
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://{name or host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]


def start_redis(port: int | None = None) -> RedisServer:
    """A private redis-server on a free port (never the machine's shared one)."""
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server is not installed (apt-get install redis-server)")
    assert binary is not None
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return RedisServer(f"redis://127.0.0.1:{port}/0", port, process)


def stop_redis(server: RedisServer) -> None:
    server.process.kill()
    server.process.wait(5)
