"""Run the gateway benchmark: ``.venv/bin/python -m bench.run`` (full) or ``--quick`` (regression guard).

It starts every server itself (127.0.0.1, free ports), drives load with wrk, stops everything by PID,
and writes ``bench/results/latest.json`` and ``latest.md`` (``quick.json``/``quick.md`` with --quick).
See bench/README.md for the scenarios and the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fixtures as fx
from bench import report
from bench.load import Sampler, WrkResult, fixed_paths_script, presigned_file_script, run_wrk, unique_paths_script
from bench.procs import (
    STARTED,
    BenchError,
    Server,
    alive,
    cmdline,
    cpu_seconds,
    ensure_tool,
    free_port,
    reset_peak_rss,
    running,
    status_kb,
)

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)
RESULTS = ROOT / "bench" / "results"


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
    def __init__(self, options: Options, tmp: Path, wrk: str) -> None:
        self.o = options
        self.tmp = tmp
        self.wrk = wrk
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.started = time.time()

    # -- helpers -------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        print(f"[{time.time() - self.started:6.1f}s] {message}", flush=True)

    def script(self, name: str, text: str) -> Path:
        path = self.tmp / f"{name}.lua"
        path.write_text(text)
        return path

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
            _truncate(audit)  # count only the measured run's audit records (see _audit_check)
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
                 f"CPU split {row.cpu_split}, peak RSS {[kb // 1024 for kb in row.peak_rss_kb]} MB")
        return result

    def uvicorn_server(self, name: str, app: str, env: dict[str, str] | None = None) -> Server:
        port = free_port()
        argv = [str(PYTHON), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(self.o.workers), "--no-access-log", "--no-server-header",
                "--log-level", "warning", "--loop", "auto", "--http", "auto"]
        return Server(name, argv, port, self.tmp / f"{name}.log", env=env, cwd=ROOT, workers=self.o.workers,
                      is_worker=_uvicorn_worker)

    # -- scenarios -----------------------------------------------------------------------------
    def starlette(self, hot: Path, name: str = "starlette") -> None:
        label = "bare Starlette 302" + (" (again, at the end)" if name != "starlette" else "")
        row = Row(name, label, "baseline")
        with running(self.uvicorn_server("starlette", "bench.baselines.starlette_302:app")) as server:
            _expect_redirect(server.port, "/v1/datasets/x/objects/y", {}, "s3.us-west-2.amazonaws.com")
            self.measure(row, server, hot)
        self.rows.append(row)

    def naive(self, hot: Path, issuer: str, token: str) -> None:
        row = Row("naive", "naive FastAPI + PyJWT + boto3", "baseline")
        env = {**fx.env_without("AWS_"), **_aws_env(self.tmp),
               "NAIVE_ISSUER": issuer, "NAIVE_AUDIENCE": fx.AUDIENCE, "NAIVE_GROUP": fx.GROUP,
               "NAIVE_JWKS_URI": issuer + "/v1/keys", "NAIVE_BUCKET": fx.S3_BUCKET, "NAIVE_PREFIX": fx.S3_PREFIX,
               "NAIVE_ENDPOINT": fx.S3_ENDPOINT}
        with running(self.uvicorn_server("naive", "bench.baselines.naive_gateway:app", env)) as server:
            path = fx.objects_path(fx.S3_DATASET, fx.HOT_KEYS[0])
            _expect_redirect(server.port, path, {"Authorization": f"Bearer {token}"},
                             f"{fx.S3_ENDPOINT}{fx.S3_BUCKET}/{fx.S3_PREFIX}{fx.HOT_KEYS[0]}?")
            _expect_status(server.port, path, {}, 401)
            self.measure(row, server, hot)
        self.rows.append(row)

    def nginx(self, hot: Path) -> None:
        row = Row("nginx", "nginx return 302", "baseline")
        binary = ensure_tool("nginx", "nginx-light", install=self.o.install)
        if binary is None:
            row.status, row.reason = "skipped", "nginx is not installed (apt-get install nginx-light)"
            self.rows.append(row)
            return
        from bench.baselines.starlette_302 import LOCATION

        prefix = self.tmp / "nginx"
        for sub in ("logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        port = free_port()
        user = "user nobody nogroup;" if os.geteuid() == 0 and _group_exists("nogroup") else ""
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
{user}
daemon off;
master_process on;
worker_processes {self.o.workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        add_header Cache-Control "private, max-age=150" always;
        add_header Referrer-Policy no-referrer always;
        location / {{ return 302 "{LOCATION}"; }}
    }}
}}
""")
        server = Server("nginx", [binary, "-p", str(prefix), "-c", str(conf)], port, self.tmp / "nginx.log",
                        workers=self.o.workers, is_worker=lambda pid: "worker process" in cmdline(pid))
        try:
            with running(server) as srv:
                _expect_redirect(srv.port, "/v1/datasets/x/objects/y", {}, "s3.us-west-2.amazonaws.com")
                self.measure(row, srv, hot)
        except BenchError as exc:
            row.status, row.reason = "skipped", f"nginx did not start: {str(exc).splitlines()[0]}"
        self.rows.append(row)

    def gateway_server(self, name: str, policy: Path, redis_url: str, **settings: str) -> Server:
        port = free_port()
        prom = self.tmp / f"prometheus-{name}"
        prom.mkdir(exist_ok=True)
        env = {**fx.env_without("GATEWAY_", "AWS_", "PROMETHEUS_", "GOOGLE_"), **_aws_env(self.tmp),
               "GATEWAY_REDIS_URL": redis_url, "GATEWAY_SIGNING_KEY": "b" * 40, "GATEWAY_LOG_LEVEL": "warning",
               "PROMETHEUS_MULTIPROC_DIR": str(prom), "BENCH_VENDOR_SECRET": fx.VENDOR_SECRET,
               "GOOGLE_CLOUD_PROJECT": "acme-bench", **settings}
        argv = [str(PYTHON.parent / "gateway"), "serve", "--config", str(policy), "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(self.o.workers)]
        return Server(name, argv, port, self.tmp / f"{name}.log", env=env, cwd=ROOT, workers=self.o.workers,
                      is_worker=_uvicorn_worker)

    def cold_scripts(self, name: str, dataset: str, prefix: str, suffix: str, token: str) -> tuple[Path, Path]:
        """wrk scripts for a new key per request (this run's keys only), and for their warm-up."""
        auth = {"Authorization": f"Bearer {token}"}
        run_id = uuid.uuid4().hex[:6]

        def script(tag: str) -> Path:
            paths = unique_paths_script(fx.objects_path(dataset, f"{prefix}{run_id}{tag}/"), suffix, auth)
            return self.script(f"{name}{tag}", paths)

        return script(""), script("-warmup")

    def gateway(self, policy: Path, audit: Path, redis_url: str, token: str, hot: Path) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        cold, cold_warm = self.cold_scripts("cold", fx.S3_DATASET, "images/cold/", ".jpg", token)
        with running(self.gateway_server("gateway", policy, redis_url)) as server:
            first = fx.HOT_KEYS[0]
            _expect_redirect(server.port, fx.objects_path(fx.S3_DATASET, first), auth,
                             f"{fx.S3_ENDPOINT}{fx.S3_BUCKET}/{fx.S3_PREFIX}{first}?X-Amz-Algorithm=")
            _expect_status(server.port, fx.objects_path(fx.S3_DATASET, first), {"Authorization": "Bearer x.y.z"}, 401)
            _expect_status(server.port, fx.objects_path(fx.S3_DATASET, "secrets/x.jpg"), auth, 403)

            for name, script, warm in (("hot", hot, None), ("cold", cold, cold_warm)):
                row = Row(name, "gateway (S3, Okta JWT, Redis, file audit)", "gateway")
                self.measure(row, server, script, warmup_script=warm, audit=audit)
                self._audit_check(row, audit)
                self.rows.append(row)

            if not self.o.quick:
                self.hmac(server, audit)
            self.batch(server, token, audit)

    def _audit_check(self, row: Row, audit: Path) -> None:
        """Audit is on: count the records the measured run wrote, then empty the file."""
        time.sleep(0.5)  # the writer thread drains its queue
        lines = _count_lines(audit)
        _truncate(audit)
        row.extra["audit_records"] = lines
        if row.wrk:
            row.extra["audit_records_per_request"] = round(lines / max(1, row.wrk["requests"]), 3)

    def hmac(self, server: Server, audit: Path, row: Row | None = None) -> WrkResult:
        row = row or Row("hmac", "gateway (vendor HMAC, Redis replay check)", "gateway")
        hot_rps = next((r.wrk["rps"] for r in self.rows if r.name == "hot" and r.wrk), 20_000.0)
        # Each signature is accepted once: enough single-use requests for the run at 1.5x the hot rate.
        count = int(max(20_000, hot_rps * 1.5 * self.o.seconds + 5_000))
        self.log(f"{row.name}: signing {count:,} single-use requests")
        data = fx.hmac_requests(self.tmp / f"{row.name}-requests.tsv", count, dataset=fx.S3_DATASET,
                                keys=fx.HOT_KEYS)
        from gateway.client import sign_request

        path = fx.objects_path(fx.S3_DATASET, fx.HOT_KEYS[1]) + "?n=preflight"
        headers = sign_request("GET", path, key_id=fx.VENDOR_KEY_ID, secret=fx.VENDOR_SECRET)
        _expect_redirect(server.port, path, headers, f"{fx.S3_ENDPOINT}{fx.S3_BUCKET}/")
        _expect_status(server.port, path, headers, 401)  # the same signature again: a replay
        script = self.script(row.name, presigned_file_script(data, self.o.threads, "/healthz"))
        result = self.measure(row, server, script, warmup=0, audit=audit)
        row.extra["single_use_requests"] = count
        self._audit_check(row, audit)
        self.rows.append(row)
        return result

    def batch(self, server: Server, token: str, audit: Path) -> None:
        """POST /v1/sign with 1000 keys, sequentially on one keep-alive connection: median time."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        run_id = uuid.uuid4().hex[:6]

        def body(keys: list[str]) -> bytes:
            return json.dumps({"dataset": fx.S3_DATASET, "keys": keys}).encode()

        warm_keys = [f"images/batch/{run_id}/warm/{i:04d}.jpg" for i in range(1000)]
        for label, make in (
            ("batch-cold", lambda n: [f"images/batch/{run_id}/{n}/{i:04d}.jpg" for i in range(1000)]),
            ("batch-warm", lambda n: warm_keys),
        ):
            row = Row(label, "gateway POST /v1/sign, 1000 S3 keys", "batch")
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            times: list[float] = []
            failures = 0
            try:
                for n in range(-3, self.o.batch_requests):  # three unmeasured warm-up requests
                    payload = body(make(n))
                    t0 = time.perf_counter()
                    conn.request("POST", "/v1/sign", body=payload, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    elapsed = time.perf_counter() - t0
                    results = json.loads(data).get("results", []) if response.status == 200 else []
                    if response.status != 200 or len(results) != 1000 or not all("url" in r for r in results):
                        failures += 1
                        row.extra.setdefault("first_failure", f"HTTP {response.status}: {data[:300]!r}")
                    if n >= 0:
                        times.append(elapsed * 1000)
            finally:
                conn.close()
            row.extra.update(
                requests=len(times), keys_per_request=1000, failures=failures,
                median_ms=round(statistics.median(times), 2), p90_ms=round(_percentile(times, 90), 2),
                min_ms=round(min(times), 2), max_ms=round(max(times), 2),
                response_bytes=len(data),
            )
            row.peak_rss_kb = [status_kb(pid, "VmHWM") or 0 for pid in server.worker_pids()]
            row.peak_rss_cumulative = True
            self.log(f"{label}: median {row.extra['median_ms']} ms, p90 {row.extra['p90_ms']} ms "
                     f"({len(times)} requests, {failures} failures)")
            self.rows.append(row)
        _truncate(audit)

    def gcs_cold(self, issuer: str, redis_url: str, token: str) -> None:
        row = Row("gcs-cold", "gateway (GCS RSA key, Redis URL cache)", "gateway")
        try:
            import gateway.backends.gcs  # noqa: F401 - is the backend importable at all?
        except Exception as exc:  # the GCS backend may still be in progress
            row.status, row.reason = "skipped", f"the GCS backend does not import: {type(exc).__name__}: {exc}"
            self.rows.append(row)
            return
        audit = self.tmp / "audit-gcs.jsonl"
        credentials = fx.gcs_service_account(self.tmp / "gcs-service-account.json")
        policy = self.tmp / "policy-gcs.yaml"
        policy.write_text(fx.policy_yaml(issuer=issuer, audit_path=audit, gcs_credentials=credentials))
        auth = {"Authorization": f"Bearer {token}"}
        script, warm = self.cold_scripts("gcs-cold", fx.GCS_DATASET, "cold/", ".dcm", token)
        try:
            with running(self.gateway_server("gateway-gcs", policy, redis_url)) as server:
                _expect_redirect(server.port, fx.objects_path(fx.GCS_DATASET, "cold/preflight.dcm"), auth,
                                 "https://storage.googleapis.com/acme-scans/ct/cold/preflight.dcm?")
                self.measure(row, server, script, warmup_script=warm, audit=audit)
                self._audit_check(row, audit)
        except (BenchError, AssertionError) as exc:
            row.status, row.reason = "skipped", f"GCS backend not ready: {str(exc).splitlines()[0][:300]}"
        self.rows.append(row)

    def soak(self, policy: Path, redis_url: str, hot: Path, audit: Path) -> None:
        row = Row("soak", f"gateway hot load for {self.o.soak_seconds:.0f}s", "gateway")
        with running(self.gateway_server("gateway-soak", policy, redis_url)) as server:
            run_wrk(self.wrk, f"http://127.0.0.1:{server.port}", hot, threads=self.o.threads,
                    connections=self.o.connections, seconds=self.o.soak_warmup)
            workers = server.worker_pids()
            before = [status_kb(pid, "VmRSS") or 0 for pid in workers]
            self.measure(row, server, hot, seconds=self.o.soak_seconds, warmup=0,
                         sampler=lambda: [status_kb(pid, "VmRSS") for pid in workers], audit=audit)
            after = [status_kb(pid, "VmRSS") or 0 for pid in workers]
            row.extra.update(rss_after_warmup_kb=before, rss_end_kb=after,
                             rss_growth_pct=rss_growth(row.extra.get("rss_samples_kb", []), len(workers)))
            self._audit_check(row, audit)
        self.log(f"soak: RSS growth per worker {row.extra['rss_growth_pct']} %")
        self.rows.append(row)

    def concurrency(self, policy: Path, redis_url: str, hot: Path, audit: Path) -> None:
        supported, how = gateway_supports_concurrency_limit()
        if not supported:
            # TODO(concurrency): when the gateway has a concurrency limit, run "hot, shed" here with a
            # tight limit (see gateway_supports_concurrency_limit for how support is detected).
            self.rows.append(Row("hot-shed", "gateway, tight concurrency limit", "concurrency", status="skipped",
                                 reason="the gateway has no GATEWAY_MAX_CONCURRENCY setting yet (TODO hook)"))
            return
        self.notes.append(f"concurrency limit detected through {how}")
        for name, limit, label in (
            ("hot-shed", self.o.shed_limit, f"gateway hot, GATEWAY_MAX_CONCURRENCY={self.o.shed_limit}"),
            ("hot-nolimit", 0, "gateway hot, GATEWAY_MAX_CONCURRENCY=0 (no limit)"),
        ):
            row = Row(name, label, "concurrency", expect_errors=limit > 0)
            with running(self.gateway_server(f"gateway-{name}", policy, redis_url,
                                             GATEWAY_MAX_CONCURRENCY=str(limit))) as server:
                result = self.measure(row, server, hot, audit=audit)
                row.extra["max_concurrency"] = limit
                row.extra["shed_share"] = round(result.non_2xx_3xx / max(1, result.requests), 4)
                self._audit_check(row, audit)
            self.rows.append(row)
        # The hot path never waits, so it never has requests in flight to shed. Vendor HMAC waits on
        # Redis (the replay check) for every request: there the limit does shed.
        limit = self.o.shed_limit
        row = Row("hmac-shed", f"gateway vendor HMAC, GATEWAY_MAX_CONCURRENCY={limit}", "concurrency",
                  expect_errors=True)
        with running(self.gateway_server("gateway-hmac-shed", policy, redis_url,
                                         GATEWAY_MAX_CONCURRENCY=str(limit))) as server:
            result = self.hmac(server, audit, row)
            row.extra["max_concurrency"] = limit
            row.extra["shed_share"] = round(result.non_2xx_3xx / max(1, result.requests), 4)


def rss_growth(samples: list[tuple[float, Any]], workers: int, window: int = 3) -> list[float | None]:
    """Per worker: the median RSS of the last ``window`` samples under load against the median of the
    first ``window``, in percent. Both ends are read under the same load, and a median, because RSS
    swings by a few percent between audit flushes: single idle readings before and after the run
    (also in the JSON) compared a trough with a swing, not growth."""
    growth: list[float | None] = []
    for worker in range(workers):
        values = [kb[worker] for _, kb in samples
                  if isinstance(kb, list) and len(kb) > worker and kb[worker]]
        if len(values) < 2 * window:
            growth.append(None)
            continue
        first, last = statistics.median(values[:window]), statistics.median(values[-window:])
        growth.append(round(100 * (last - first) / first, 2))
    return growth


def gateway_supports_concurrency_limit() -> tuple[bool, str]:
    """Does ``gateway serve`` know a concurrency limit? Looks at ``--help``, then at the settings."""
    proc = subprocess.run([str(PYTHON.parent / "gateway"), "serve", "--help"], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    if re.search(r"max.concurrency", proc.stdout, re.IGNORECASE):
        return True, "gateway serve --help"
    code = "from gateway.settings import Settings; print('max_concurrency' in Settings.model_fields)"
    proc = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.stdout.strip() == "True":
        return True, "the GATEWAY_MAX_CONCURRENCY setting (not in serve --help)"
    return False, ""


# -- small helpers ---------------------------------------------------------------------------------
def _uvicorn_worker(pid: int) -> bool:
    line = cmdline(pid)
    return "spawn_main" in line and "resource_tracker" not in line


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _aws_env(tmp: Path) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": fx.AWS_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": fx.AWS_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": "us-west-2", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-creds")}


def _request(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _expect_status(port: int, path: str, headers: dict[str, str], status: int) -> None:
    got, _, body = _request(port, path, headers)
    assert got == status, f"preflight GET {path.split('?')[0]}: expected HTTP {status}, got {got}: {body[:300]!r}"


def _expect_redirect(port: int, path: str, headers: dict[str, str], location_part: str) -> None:
    """The server answers what the scenario claims to measure: a 302 to the expected URL."""
    status, got, body = _request(port, path, headers)
    assert status == 302, f"preflight GET {path.split('?')[0]}: expected 302, got {status}: {body[:300]!r}"
    assert location_part in got.get("location", ""), (
        f"preflight GET {path.split('?')[0]}: Location does not contain {location_part!r}")


def _truncate(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.truncate(path, 0)  # the audit sink appends with O_APPEND: it carries on at the new end


def _count_lines(path: Path) -> int:
    count = 0
    with contextlib.suppress(OSError), path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so that every finally block stops its servers."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="regression guard: short runs of starlette, hot, cold and batch only; exit 1 on a "
                        "gross regression relative to bare Starlette in the same run")
    parser.add_argument("--seconds", type=float, help="length of each measured run (default 30, quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up before each run (default 5, quick 1)")
    parser.add_argument("--soak-seconds", type=float, default=120.0, help="soak length (full mode; default 120)")
    parser.add_argument("--soak-warmup", type=float, default=15.0, help="load before the soak's first RSS reading")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server")
    parser.add_argument("--batch-requests", type=int, help="measured POST /v1/sign requests (default 50, quick 20)")
    parser.add_argument("--shed-limit", type=int, default=8, help="GATEWAY_MAX_CONCURRENCY of the hot-shed run")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk, nginx or redis")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp folder (logs, configs, scripts)")
    parser.add_argument("--fail-on-targets", action="store_true", help="full mode: exit 2 when a target fails")
    args = parser.parse_args(argv)
    quick = args.quick
    return Options(
        quick=quick, seconds=args.seconds or (3.0 if quick else 30.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 5.0),
        soak_seconds=args.soak_seconds, soak_warmup=args.soak_warmup, threads=args.threads,
        connections=args.connections, workers=args.workers,
        batch_requests=args.batch_requests or (20 if quick else 50), out=args.out or RESULTS,
        install=not args.no_install, keep_tmp=args.keep_tmp, fail_on_targets=args.fail_on_targets,
        shed_limit=args.shed_limit,
    )


def execute(o: Options) -> int:
    wrk = ensure_tool("wrk", "wrk", install=o.install)
    if wrk is None:
        print("bench: wrk is not installed, and it can only be installed automatically as root with apt-get.\n"
              "       Install it (Debian/Ubuntu: sudo apt-get install wrk) and run again.", file=sys.stderr)
        return 1
    redis_binary = fx.require(ensure_tool("redis-server", "redis-server", install=o.install), "redis-server")
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    run = Run(o, tmp, wrk)
    mode = "quick" if o.quick else "full"
    run.log(f"{mode} run: {o.workers} workers per server, wrk -t{o.threads} -c{o.connections}, "
            f"{o.seconds:g}s runs after {o.warmup:g}s warm-up; temp folder {tmp}")
    failed: BaseException | None = None
    try:
        with _terminate_as_exit(), contextlib.ExitStack() as stack:
            identity = fx.Identity.create()
            issuer = stack.enter_context(fx.identity_provider(identity))
            token = identity.token(issuer, groups=["everyone", fx.GROUP])
            hot = run.script("hot", fixed_paths_script(
                [fx.objects_path(fx.S3_DATASET, k) for k in fx.HOT_KEYS], {"Authorization": f"Bearer {token}"}))
            audit = tmp / "audit.jsonl"
            policy = tmp / "policy.yaml"
            policy.write_text(fx.policy_yaml(issuer=issuer, audit_path=audit, gcs_credentials=None))
            redis = stack.enter_context(running(fx.redis_server(redis_binary, tmp / "redis.log")))
            redis_url = f"redis://127.0.0.1:{redis.port}/0"

            run.starlette(hot)
            if not o.quick:
                run.naive(hot, issuer, token)
                run.nginx(hot)
            run.gateway(policy, audit, redis_url, token, hot)
            if not o.quick:
                run.gcs_cold(issuer, redis_url, token)
                run.soak(policy, redis_url, hot, audit)
                run.concurrency(policy, redis_url, hot, audit)
                run.starlette(hot, "starlette-end")
    except (Exception, KeyboardInterrupt) as exc:
        failed = exc
    finally:
        if o.keep_tmp or failed is not None:
            print(f"bench: logs, configs and wrk output kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed is not None:
        if isinstance(failed, KeyboardInterrupt):
            print("bench: interrupted; every server was stopped", file=sys.stderr)
            return 130
        print(f"bench: the run failed: {type(failed).__name__}: {failed}", file=sys.stderr)
        return 1

    meta = {
        "mode": mode, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started)),
        "duration_s": round(time.time() - run.started, 1), "git": fx.git_revision(ROOT),
        "host": platform.node(), "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(),
        "python": platform.python_version(), "workers": o.workers, "wrk_threads": o.threads,
        "connections": o.connections, "seconds": o.seconds, "warmup": o.warmup,
        "soak_seconds": None if o.quick else o.soak_seconds, "batch_requests": o.batch_requests,
        "wrk": subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0],
        "notes": run.notes, "started_pids": STARTED,
        "still_running": [pid for pid in STARTED if alive(pid)],
    }
    rows = [r.as_dict() for r in run.rows]
    targets = report.targets(rows)
    guard = report.quick_guard(rows)
    result = {"meta": meta, "scenarios": report.with_ratios(rows), "targets": targets, "quick_guard": guard}
    o.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if o.quick else "latest"
    (o.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = report.markdown(result)
    (o.out / f"{stem}.md").write_text(markdown)
    print()
    print(markdown)
    print(f"bench: wrote {o.out / (stem + '.json')} and {o.out / (stem + '.md')}")
    if o.quick:
        return 0 if all(g["pass"] for g in guard) else GUARD_FAILED
    if o.fail_on_targets and not all(t["pass"] for t in targets if t["pass"] is not None):
        return 2
    return 0


GUARD_FAILED = 3


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        code = execute(options)
        if code == GUARD_FAILED:
            # Short runs on a shared machine can be unlucky: a real regression fails twice in a row.
            print("bench: the quick guard failed; measuring once more to rule out noise", file=sys.stderr)
            code = execute(options)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 1 if code == GUARD_FAILED else code


if __name__ == "__main__":
    sys.exit(main())
