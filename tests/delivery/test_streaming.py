"""Streaming from storage: pooled connections, a client that leaves mid-body releases the storage
connection at once, and a slow reader of a large object keeps the worker's memory bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.delivery.conftest import BUCKET, PREFIX, ProxySetup, proxy_policy
from tests.s3rver.harness import s3_client
from tests.support import free_port, wait_for_port

LARGE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def large(s3_store: str) -> str:
    s3_client(s3_store).put_object(Bucket=BUCKET, Key=PREFIX + "images/large.bin", Body=os.urandom(1 << 20) * 50)
    return "images/large.bin"


def established_to(port: int) -> int:
    """This machine's established TCP connections to ``port`` on 127.0.0.1, seen from the client side."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def _start_download(gateway_port: int, path: str) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # a slow, small-windowed reader
    sock.connect(("127.0.0.1", gateway_port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    got = 0
    while got < 256 * 1024:
        got += len(sock.recv(65536))
    return sock


def test_storage_connections_are_pooled(proxy: ProxySetup) -> None:
    opened = proxy.gateway.app.runtime.metrics.upstream_connections
    before = opened._value.get()
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            assert client.get(f"{proxy.gateway.url}/v1/datasets/vision/objects/tiny.png").status_code == 200
    assert opened._value.get() - before <= 1  # twenty reads, at most one new connection


def test_a_client_that_leaves_releases_the_storage_connection_at_once(proxy: ProxySetup, large: str) -> None:
    storage_port = int(proxy.port)
    sock = _start_download(proxy.gateway.port, f"/v1/datasets/vision/objects/{large}")
    during = established_to(storage_port)
    assert during >= 1
    sock.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and established_to(storage_port) >= during:
        time.sleep(0.05)
    # Closed, not read to the end and pooled: the storage stops sending the 50 MB at once.
    assert established_to(storage_port) == during - 1


@pytest.fixture(scope="module")
def worker(s3_store: str, s3_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """``gateway serve`` in its own process (one worker), so that its RSS is its own."""
    root = tmp_path_factory.mktemp("rss")
    policy = proxy_policy(root / "policy.yaml", s3_store, origin="http://app.example.test")
    port = free_port()
    env = {**os.environ, "GATEWAY_CONFIG": str(policy), "GATEWAY_PORT": str(port), "GATEWAY_SIGNING_KEY": "r" * 32,
           "GATEWAY_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(10)


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_slow_readers_of_a_large_object_keep_memory_bounded(worker: tuple[int, int], large: str) -> None:
    pid, port = worker
    with httpx.Client(timeout=10) as client:  # warm up: imports, the pool, the first signatures
        client.get(f"http://127.0.0.1:{port}/v1/datasets/vision/objects/big.bin")
    baseline = _rss_kb(pid)
    readers = [_start_download(port, f"/v1/datasets/vision/objects/{large}") for _ in range(16)]
    try:
        peak = baseline
        for _ in range(20):  # two seconds of trickling: every reader takes 16 KiB per tick
            for sock in readers:
                sock.recv(16 * 1024)
            peak = max(peak, _rss_kb(pid))
            time.sleep(0.1)
        # 16 readers of a 50 MB object: without backpressure the worker would buffer hundreds of MB.
        assert peak - baseline < 40 * 1024, (baseline, peak)
    finally:
        for sock in readers:
            sock.close()
