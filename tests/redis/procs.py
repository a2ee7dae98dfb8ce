"""Gateway processes for the Redis tests: ``python -m gateway serve`` on real ports, stopped for sure.

Each process writes stdout (audit records on the default sink) and stderr (JSON logs) to files, so
that a test can read what a process printed, and so that a full pipe can never block it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import RedisServer, free_port, start_redis, stop_redis

REPO = Path(__file__).resolve().parents[2]
SIGNING_KEY = "redis-tests-signing-key-0123456789abcdef"
PUBLIC_URL = "https://gw.example.test"
VENDOR_SECRET_ENV = "GW_REDIS_TEST_VENDOR_SECRET"
VENDOR_SECRET = "vendor-secret-for-the-redis-tests-0123456789"
VENDOR = "vendorco"
VENDOR_KEY_ID = "vendorco-k1"
SA_KEY = REPO / "tests" / "fixtures" / "gcs-v4" / "test_service_account.not-a-test.json"


@dataclass
class GatewayProcess:
    port: int
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def stderr_lines(self) -> list[str]:
        return self.stderr.read_text("utf-8", "replace").splitlines()

    def stdout_lines(self) -> list[str]:
        return self.stdout.read_text("utf-8", "replace").splitlines()


def gateway_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything GATEWAY_* or Prometheus-related that could leak in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GATEWAY_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({
        "GATEWAY_SIGNING_KEY": SIGNING_KEY,
        "GATEWAY_PUBLIC_URL": PUBLIC_URL,
        "GATEWAY_RELOAD_INTERVAL": "0.2",
        "GATEWAY_LOG_FORMAT": "json",
        VENDOR_SECRET_ENV: VENDOR_SECRET,
        "PYTHONPATH": str(REPO),
    })
    env.update(extra)
    return env


def spawn_gateway(config: Path, logs: Path, env: Mapping[str, str], *, workers: int | None = None,
                  name: str = "gw") -> GatewayProcess:
    """Start ``gateway serve`` on a free port without waiting for it (start several, then wait)."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}-{port}.stdout", logs / f"{name}-{port}.stderr"
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    if workers:
        argv += ["--workers", str(workers)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # A session of its own: the uvicorn supervisor and its workers can be stopped as one group.
        process = subprocess.Popen(argv, cwd=REPO, env=dict(env), stdout=stdout, stderr=stderr,  # noqa: S603
                                   start_new_session=True)
    return GatewayProcess(port, process, out, err)


def wait_serving(gateway: GatewayProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {gateway.process.returncode}:\n"
                               + gateway.stderr.read_text("utf-8", "replace")[-3000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(gateway.url + "/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"gateway on port {gateway.port} did not answer /healthz within {timeout}s:\n"
                       + gateway.stderr.read_text("utf-8", "replace")[-3000:])


def stop_gateway(gateway: GatewayProcess, timeout: float = 20.0) -> int | None:
    """SIGTERM (graceful: the audit queue is flushed), then SIGKILL for the whole group if it hangs."""
    process = gateway.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # our own session: stray workers, if any
    if process.poll() is None:
        process.wait(5)
    return process.returncode


@contextlib.contextmanager
def gateways(config: Path, logs: Path, env: Mapping[str, str], count: int = 1, *,
             workers: int | None = None) -> Iterator[list[GatewayProcess]]:
    """Start ``count`` gateways in parallel; every one is stopped on the way out, whatever happens."""
    started: list[GatewayProcess] = []
    try:
        for i in range(count):
            started.append(spawn_gateway(config, logs, env, workers=workers, name=f"gw{i + 1}"))
        for gateway in started:
            wait_serving(gateway)
        yield started
    finally:
        for gateway in started:
            stop_gateway(gateway)


class RedisHolder:
    """A private redis-server that a test may kill by its PID and start again on the same port."""

    def __init__(self) -> None:
        self.server: RedisServer | None = start_redis()
        self.port = self.server.port
        self.url = self.server.url

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.process.pid

    def kill(self) -> None:
        if self.server is not None:
            os.kill(self.server.process.pid, signal.SIGKILL)
            self.server.process.wait(5)
            self.server = None

    def restart(self) -> None:
        assert self.server is None, "kill it first"
        self.server = start_redis(self.port)

    def stop(self) -> None:
        if self.server is not None:
            stop_redis(self.server)
            self.server = None


# -- HTTP helpers ------------------------------------------------------------------------------------

def vendor_headers(path: str) -> dict[str, str]:
    from gateway.vendor_signing import sign_request

    return sign_request("GET", path, key_id=VENDOR_KEY_ID, secret=VENDOR_SECRET)


def readyz(url: str) -> dict[str, Any]:
    response = httpx.get(url + "/readyz", timeout=5.0)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


def metric_samples(url: str, **headers: str) -> list[tuple[str, dict[str, str], float]]:
    response = httpx.get(url + "/metrics", headers=headers, timeout=5.0)
    assert response.status_code == 200, response.text
    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(response.text) for s in family.samples]


def metric(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    return sum(value for n, have, value in samples
               if n == name and all(have.get(k) == v for k, v in labels.items()))


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def status_on_new_connection(port: int, target: str) -> int:
    """GET on a connection of its own (``Connection: close``), so that requests spread over workers.
    A plain socket: building an httpx client per request costs more than the request itself."""
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    status_line = b"".join(chunks).split(b"\r\n", 1)[0]
    return int(status_line.split(b" ")[1])
