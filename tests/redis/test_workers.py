"""``gateway serve --workers N``: several processes append to one audit file without tearing a line,
every chain verifies, and /metrics adds up every worker's counts (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis.procs import (
    REPO,
    GatewayProcess,
    gateway_env,
    metric,
    metric_samples,
    spawn_gateway,
    status_on_new_connection,
    stop_gateway,
    wait_serving,
    wait_until,
)


@dataclass
class Served:
    gateway: GatewayProcess
    audit: Path


def _policy(root: Path, audit: Path) -> Path:
    data = root / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.png").write_bytes(b"png")
    path = root / "policy.yaml"
    path.write_text(f"""\
version: 1
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
datasets:
  open:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: anon, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    return path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Served]]:
    """A 3-worker and a 2-worker gateway, started together (worker start-up is the slow part)."""
    started: dict[int, Served] = {}
    try:
        for workers in (3, 2):
            root = tmp_path_factory.mktemp(f"workers{workers}")
            audit = root / "audit" / "audit.jsonl"
            # TMPDIR: the CLI's own PROMETHEUS_MULTIPROC_DIR (mkdtemp) lands in this test's folder.
            env = gateway_env(TMPDIR=str(root))
            gateway = spawn_gateway(_policy(root, audit), root / "logs", env, workers=workers, name=f"w{workers}")
            started[workers] = Served(gateway, audit)
        for served in started.values():
            wait_serving(served.gateway, timeout=60)
        yield started
    finally:
        for served in started.values():
            stop_gateway(served.gateway)


def drive(url: str, paths: list[str]) -> list[int]:
    """Each request on a new connection, from 8 threads, so that every worker gets its share."""
    port = int(url.rsplit(":", 1)[1])
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda path: status_on_new_connection(port, path), paths))


def audit_records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", str(path)],  # noqa: S603
                          cwd=REPO, env=gateway_env(), capture_output=True, text=True, timeout=30, check=False)


def test_metrics_add_up_every_workers_counts(servers: dict[int, Served]) -> None:
    served = servers[2]
    sent = 0
    for _ in range(5):  # until both workers have served some (the kernel picks who accepts)
        statuses = drive(served.gateway.url, [f"/v1/datasets/open/objects/images/{sent + i}.png" for i in range(40)])
        assert statuses == [302] * 40
        sent += 40
        wait_until(lambda n=sent: served.audit.exists() and len(audit_records(served.audit)) >= n, 5,
                   "records written")
        chains = {record["chain"] for record in audit_records(served.audit)}
        if len(chains) == 2:
            break
    assert len(chains) == 2, "both workers should have served requests, or this test proves nothing"
    # Each worker adds its hot-path counts to the shared files once a second (and before a scrape
    # it answers itself), so after at most a second every scrape, on either worker, sees them all.
    time.sleep(1.5)
    for _ in range(8):  # each scrape may land on either worker
        samples = metric_samples(served.gateway.url, Connection="close")
        assert metric(samples, "gateway_requests_total", route="objects") == sent
        assert metric(samples, "gateway_cache_requests_total", level="memory", result="miss") == sent


def test_workers_share_one_audit_file_and_every_chain_verifies(servers: dict[int, Served]) -> None:
    served = servers[3]
    sent = 600
    statuses = drive(served.gateway.url, [f"/v1/datasets/open/objects/images/{i % 50}.png?n={i}"
                                          for i in range(sent)])
    assert statuses == [302] * sent
    stop_gateway(served.gateway)  # SIGTERM: every worker drains its audit queue before it exits
    assert served.gateway.process.returncode is not None

    raw = served.audit.read_bytes()
    assert raw.endswith(b"\n")
    records = audit_records(served.audit)  # every line is JSON: no torn or interleaved lines
    assert len(records) == sent
    assert len({record["chain"] for record in records}) >= 2
    assert len({record["request_id"] for record in records}) == sent  # each request exactly once

    ok = verify(served.audit)
    assert ok.returncode == 0, ok.stderr
    assert f"OK, {sent} records" in ok.stdout

    lines = raw.splitlines(keepends=True)
    middle = len(lines) // 2
    assert b'"status":302' in lines[middle]
    lines[middle] = lines[middle].replace(b'"status":302', b'"status":303', 1)  # one character
    served.audit.write_bytes(b"".join(lines))
    tampered = verify(served.audit)
    assert tampered.returncode == 1
    assert f"{served.audit}:{middle + 1}:" in tampered.stderr, tampered.stderr
