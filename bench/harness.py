"""What every scenario shares: the run's options, a measured row, starting servers, measuring with wrk,
and the preflight checks that a server answers what a row claims to measure."""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fixtures as fx
from bench.load import Sampler, WrkResult, run_wrk
from bench.procs import Server, cmdline, cpu_seconds, free_port, reset_peak_rss, status_kb

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)


@dataclass
class Options:
    quick: bool
    seconds: float
    warmup: float
    soak_seconds: float
    soak_warmup: float
    threads: int
    connections: int
    workers: int
    batch_requests: int
    out: Path
    install: bool
    keep_tmp: bool
    fail_on_targets: bool
    shed_limit: int
    users: int
    user_keys: int
    only: str | None = None


@dataclass
class Row:
    """One measured (or skipped) scenario."""

    name: str
    server: str
    group: str  # baseline | gateway | concurrency | batch
    status: str = "ok"  # ok | skipped | invalid
    reason: str | None = None
    wrk: dict[str, Any] | None = None
    peak_rss_kb: list[int] = field(default_factory=list)
    peak_rss_cumulative: bool = False
    cpu_split: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    expect_errors: bool = False  # the load-shedding scenario answers 503 on purpose

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Run:
    """One benchmark run: its options, temp folder, the rows measured so far, and how to measure."""

    def __init__(self, options: Options, tmp: Path, wrk: str) -> None:
        self.o = options
        self.tmp = tmp
        self.wrk = wrk
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.started = time.time()

    def log(self, message: str) -> None:
        print(f"[{time.time() - self.started:6.1f}s] {message}", flush=True)

    def script(self, name: str, text: str) -> Path:
        path = self.tmp / f"{name}.lua"
        path.write_text(text)
        return path

    def rps_of(self, name: str, default: float) -> float:
        """The req/s of a row measured earlier in this run (to size single-use request sets)."""
        return next((r.wrk["rps"] for r in self.rows if r.name == name and r.wrk), default)

    def measure(self, row: Row, server: Server, script: Path, *, seconds: float | None = None,
                warmup_script: Path | None = None, warmup: float | None = None,
                sampler: Callable[[], object] | None = None, audit: Path | None = None) -> WrkResult:
        """Warm up, reset each worker's peak RSS, run wrk, and record RSS, CPU split and wrk's numbers."""
        warmup = self.o.warmup if warmup is None else warmup
        url = f"http://127.0.0.1:{server.port}"
        if warmup > 0:
            run_wrk(self.wrk, url, warmup_script or script, threads=self.o.threads,
                    connections=self.o.connections, seconds=warmup)
        if audit is not None:
            truncate(audit)  # count only the measured run's audit records (see audit_check)
        workers = server.worker_pids()
        row.peak_rss_cumulative = not all([reset_peak_rss(pid) for pid in workers])
        cpu0 = [cpu_seconds(pid) or 0.0 for pid in workers]
        seconds = self.o.seconds if seconds is None else seconds
        samples = None
        if sampler is not None:
            with Sampler(sampler, interval=max(1.0, seconds / 12)) as samples:
                result = run_wrk(self.wrk, url, script, threads=self.o.threads,
                                 connections=self.o.connections, seconds=seconds)
        else:
            result = run_wrk(self.wrk, url, script, threads=self.o.threads, connections=self.o.connections,
                             seconds=seconds)
        cpu = [max(0.0, (cpu_seconds(pid) or 0.0) - c) for pid, c in zip(workers, cpu0, strict=True)]
        total = sum(cpu) or 1.0
        row.cpu_split = [round(100 * c / total) for c in cpu]
        row.extra["worker_cpu_s"] = [round(c, 2) for c in cpu]
        # CPU per request is steadier than req/s on a shared machine: it does not count time waiting.
        row.extra["cpu_us_per_request"] = round(1e6 * sum(cpu) / max(1, result.requests), 1)
        row.peak_rss_kb = [status_kb(pid, "VmHWM") or 0 for pid in workers]
        row.wrk = result.as_dict()
        row.extra["server_startup_s"] = server.startup_s
        if samples is not None:
            row.extra["rss_samples_kb"] = samples.samples
        if result.exhausted_threads:
            row.status = "invalid"
            row.reason = "the precomputed single-use requests ran out before the end of the run"
        (self.tmp / "wrk").mkdir(exist_ok=True)
        (self.tmp / "wrk" / f"{row.name}.txt").write_text(result.raw)
        self.log(f"{row.name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                 f"non-2xx/3xx {result.non_2xx_3xx}, socket errors {result.socket_errors}, "
                 f"CPU {row.extra['cpu_us_per_request']} us/req split {row.cpu_split}, "
                 f"peak RSS {[kb // 1024 for kb in row.peak_rss_kb]} MB")
        return result

    def audit_check(self, row: Row, audit: Path) -> None:
        """Audit is on: count the records the measured run wrote, then empty the file."""
        time.sleep(0.5)  # the writer thread drains its queue
        lines = count_lines(audit)
        truncate(audit)
        row.extra["audit_records"] = lines
        if row.wrk:
            row.extra["audit_records_per_request"] = round(lines / max(1, row.wrk["requests"]), 3)

    def uvicorn_server(self, name: str, app: str, env: dict[str, str] | None = None) -> Server:
        port = free_port()
        argv = [str(PYTHON), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(self.o.workers), "--no-access-log", "--no-server-header",
                "--log-level", "warning", "--loop", "auto", "--http", "auto"]
        return Server(name, argv, port, self.tmp / f"{name}.log", env=env, cwd=ROOT, workers=self.o.workers,
                      is_worker=uvicorn_worker)

    def gateway_server(self, name: str, policy: Path, redis_url: str, **settings: str) -> Server:
        port = free_port()
        prom = self.tmp / f"prometheus-{name}"
        prom.mkdir(exist_ok=True)
        env = {**fx.env_without("GATEWAY_", "AWS_", "PROMETHEUS_", "GOOGLE_"), **aws_env(self.tmp),
               "GATEWAY_REDIS_URL": redis_url, "GATEWAY_SIGNING_KEY": "b" * 40, "GATEWAY_LOG_LEVEL": "warning",
               "PROMETHEUS_MULTIPROC_DIR": str(prom), "BENCH_VENDOR_SECRET": fx.VENDOR_SECRET,
               "GOOGLE_CLOUD_PROJECT": "acme-bench", **settings}
        argv = [str(PYTHON.parent / "gateway"), "serve", "--config", str(policy), "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(self.o.workers)]
        return Server(name, argv, port, self.tmp / f"{name}.log", env=env, cwd=ROOT, workers=self.o.workers,
                      is_worker=uvicorn_worker)


# -- preflight checks: the server answers what the row claims to measure ----------------------------
def request(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def expect_status(port: int, path: str, headers: dict[str, str], status: int) -> None:
    got, _, body = request(port, path, headers)
    assert got == status, f"preflight GET {path.split('?')[0]}: expected HTTP {status}, got {got}: {body[:300]!r}"


def expect_redirect(port: int, path: str, headers: dict[str, str], location_part: str) -> None:
    status, got, body = request(port, path, headers)
    assert status == 302, f"preflight GET {path.split('?')[0]}: expected 302, got {status}: {body[:300]!r}"
    assert location_part in got.get("location", ""), (
        f"preflight GET {path.split('?')[0]}: Location does not contain {location_part!r}")


# -- small helpers ---------------------------------------------------------------------------------
def uvicorn_worker(pid: int) -> bool:
    line = cmdline(pid)
    return "spawn_main" in line and "resource_tracker" not in line


def aws_env(tmp: Path) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": fx.AWS_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": fx.AWS_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": "us-west-2", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-creds")}


def truncate(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.truncate(path, 0)  # the audit sink appends with O_APPEND: it carries on at the new end


def count_lines(path: Path) -> int:
    count = 0
    with contextlib.suppress(OSError), path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]
