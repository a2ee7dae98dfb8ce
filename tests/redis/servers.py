"""Real Redis topologies on loopback for the tests: one server, Sentinel (1 master, 1 replica, 3 sentinels)
and Cluster (3 primaries, 3 replicas), with Debian's redis-server or Valkey.

Every process binds 127.0.0.1 on free ports (a Cluster node's bus port, port + 10000, is checked
too), lives in a temp folder of its own, runs in the foreground as our child and is stopped by
its PID (``kill -CONT`` first, in case a test stopped it). Masters use ``repl-diskless-sync-delay 0``
(the default 5 s would leave a replica empty when a test promotes it) and replicas ping every
second, so a replica is in sync, and listed in CLUSTER SLOTS, within about a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support import need

FLAVORS = {"redis": ("redis-server", "redis-cli", "redis-sentinel"),
           "valkey": ("valkey-server", "valkey-cli", "valkey-sentinel")}


def binaries(flavor: str) -> tuple[str, str, str]:
    """(server, cli, sentinel) paths; skips with the reason (fails under CI=true) when missing."""
    names = FLAVORS[flavor]
    found = [shutil.which(name) for name in names]
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    package = "redis-server redis-sentinel redis-tools" if flavor == "redis" else \
        "valkey-server valkey-sentinel valkey-tools (bookworm-backports)"
    need(not missing, f"{', '.join(missing)} not installed (apt-get install {package}; scripts/test does it)")
    return found[0] or "", found[1] or "", found[2] or ""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """``count`` free ports; with ``bus``, port + 10000 is free too (a Cluster node needs both)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port in ports or (bus and (port + 10000 > 65535 or not _port_free(port + 10000))):
            continue
        ports.append(port)
    return ports


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout}s: {what}")
        time.sleep(interval)
    return time.monotonic() - started


@dataclass
class Node:
    """One redis-server (or sentinel) process."""

    port: int
    directory: Path
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOP'ed by a test

    def start(self, *extra: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen([*self.argv, *extra], cwd=self.directory,  # noqa: S603
                                        stdout=log, stderr=log)
        log.close()

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2.0, socket_connect_timeout=2.0,
                           **kwargs)  # type: ignore[arg-type]

    def answers(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.stopped = sig == signal.SIGSTOP

    def kill(self) -> None:
        if self.process is not None:
            if self.stopped:
                self.signal(signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(10)
            self.process = None
            self.stopped = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def server_argv(binary: str, port: int, *extra: str) -> list[str]:
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1",
            "--logfile", "", "--dir", ".", *extra]


@dataclass
class Topology:
    """A set of nodes started and stopped together."""

    flavor: str
    root: Path
    nodes: list[Node] = field(default_factory=list)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@dataclass
class Standalone(Topology):
    @property
    def server(self) -> Node:
        return self.nodes[0]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server.port}/0"


def start_standalone(flavor: str, root: Path, *extra: str) -> Standalone:
    server, _, _ = binaries(flavor)
    (port,) = free_ports(1)
    topo = Standalone(flavor, root, [Node(port, root / str(port), server_argv(server, port, *extra))])
    topo.server.start()
    wait_until(topo.server.answers, 10, f"{flavor} on {port}")
    return topo


@contextlib.contextmanager
def running(topology: Callable[[], Topology]) -> Iterator[Topology]:
    started = topology()
    try:
        yield started
    finally:
        started.stop()
