"""Concurrent load through a real gateway while a test breaks its Redis, and the accounting after.

Each request touches Redis: vendor HMAC requests record a nonce (each signature is new), and
requests to the ``busy`` dataset pass the Redis rate limiter. Every answer is kept with its time,
so a test can say how many requests failed, for how long the gateway was degraded, and, for every
vendor request that was accepted, whether its nonce survived (counted in Redis afterwards and, for
a sample, by replaying the request: it must be refused).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.redis.procs import VENDOR, VENDOR_KEY_ID, VENDOR_SECRET_ENV, vendor_headers


def load_policy(root: Path) -> Path:
    data = root / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "images" / "a.png").write_bytes(b"png")
    path = root / "policy.yaml"
    path.write_text(f"""\
version: 1
auth:
  vendors:
    - name: {VENDOR}
      keys: [{{id: {VENDOR_KEY_ID}, secret_env: {VENDOR_SECRET_ENV}}}]
datasets:
  open:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: vendor, vendors: [{VENDOR}]}}]
  busy:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: anon, anonymous: true, networks: [127.0.0.0/8]}}]
    rate_limit: {{requests: 100000000, per: 1m}}
""")
    return path


@dataclass
class Answer:
    at: float
    kind: str  # "vendor" | "busy"
    status: int
    seconds: float
    headers: dict[str, str] | None = None
    path: str = ""


def nonce_key(headers: dict[str, str], prefix: str = "gw:") -> str:
    """The key the gateway writes for a vendor request (gateway.auth.vendor)."""
    signature = headers["X-Gateway-Signature"].lower()
    return f"{prefix}nonce:vendor-hmac:" + hashlib.sha256(signature.encode("ascii")).hexdigest()


@dataclass
class Load:
    """``threads`` clients in a loop, until stopped or ``limit`` seconds have passed."""

    url: str
    threads: int = 3
    limit: float = 60.0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def _run(self, n: int) -> None:
        started = time.monotonic()
        i = 0
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() - started < self.limit:
                i += 1
                vendor = i % 2 == 0
                path = f"/v1/datasets/open/objects/images/a.png?t={n}-{i}" if vendor else \
                    "/v1/datasets/busy/objects/images/a.png"
                headers = vendor_headers(path) if vendor else None
                at = time.monotonic()
                try:
                    status = client.get(path, headers=headers).status_code
                except httpx.HTTPError:
                    status = -1
                self.answers.append(Answer(at, "vendor" if vendor else "busy", status,
                                           time.monotonic() - at, headers, path))

    def recent(self, seconds: float) -> list[Answer]:
        now = time.monotonic()
        return [a for a in list(self.answers) if a.at >= now - seconds]

    def wait_recovered(self, since: float, *, quiet: float = 1.0, timeout: float = 30.0,
                       ok: Callable[[Answer], bool] = lambda a: a.status == 302) -> float:
        """Seconds from ``since`` until every answer of the last ``quiet`` seconds is good."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            window = self.recent(quiet)
            if time.monotonic() - since > quiet and len(window) >= 5 and all(ok(a) for a in window):
                return time.monotonic() - since
        bad = [a.status for a in self.recent(quiet) if not ok(a)]
        raise AssertionError(f"the gateway did not recover within {timeout}s: {bad[:10]}")


@dataclass
class Outcome:
    """What one event cost, as docs/redis.md reports it."""

    name: str
    requests: int
    failed: int  # answers other than 302 (503s while replay protection cannot confirm)
    degraded_seconds: float  # first to last failed answer
    accepted_nonces: int
    lost_nonces: int  # accepted with the nonce written to Redis, and gone from Redis afterwards
    fallback_nonces: int  # accepted through the in-process fallback: never in Redis, this replica only
    statuses: dict[int, int]

    def line(self) -> str:
        return (f"{self.name}: {self.requests} requests, {self.failed} failed over {self.degraded_seconds:.1f} s, "
                f"{self.accepted_nonces} nonces accepted: {self.fallback_nonces} by the in-process fallback, "
                f"{self.lost_nonces} written to Redis and lost; statuses {self.statuses}")


def outcome(name: str, answers: list[Answer], present: Callable[[list[str]], int], *, fell_back: int = 0) -> Outcome:
    failed = [a for a in answers if a.status != 302]
    accepted = [a for a in answers if a.kind == "vendor" and a.status == 302]
    keys = [nonce_key(a.headers) for a in accepted if a.headers]
    statuses: dict[int, int] = {}
    for a in answers:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    span = (failed[-1].at - failed[0].at) if failed else 0.0
    missing = len(keys) - present(keys)
    return Outcome(name, len(answers), len(failed), span, len(keys), max(0, missing - fell_back), fell_back, statuses)
