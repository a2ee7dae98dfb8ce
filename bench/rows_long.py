"""Rows of the full run only, each on a fresh server: the soak (memory over minutes of load) and the
concurrency limit (what it sheds, and what it costs when nothing waits)."""

from __future__ import annotations

import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import PYTHON, ROOT, Row, Run
from bench.load import run_wrk
from bench.procs import running, status_kb
from bench.rows_gateway import hmac


def soak(run: Run, policy: Path, redis_url: str, hot: Path, audit: Path) -> None:
    row = Row("soak", f"gateway hot load for {run.o.soak_seconds:.0f}s", "gateway")
    with running(run.gateway_server("gateway-soak", policy, redis_url)) as server:
        run_wrk(run.wrk, f"http://127.0.0.1:{server.port}", hot, threads=run.o.threads,
                connections=run.o.connections, seconds=run.o.soak_warmup)
        workers = server.worker_pids()
        before = [status_kb(pid, "VmRSS") or 0 for pid in workers]
        run.measure(row, server, hot, seconds=run.o.soak_seconds, warmup=0,
                    sampler=lambda: [status_kb(pid, "VmRSS") for pid in workers], audit=audit)
        after = [status_kb(pid, "VmRSS") or 0 for pid in workers]
        row.extra.update(rss_after_warmup_kb=before, rss_end_kb=after,
                         rss_growth_pct=rss_growth(row.extra.get("rss_samples_kb", []), len(workers)))
        run.audit_check(row, audit)
    run.log(f"soak: RSS growth per worker {row.extra['rss_growth_pct']} %")
    run.rows.append(row)


def concurrency(run: Run, policy: Path, redis_url: str, hot: Path, audit: Path) -> None:
    supported, how = gateway_supports_concurrency_limit()
    if not supported:
        run.rows.append(Row("hot-shed", "gateway, tight concurrency limit", "concurrency", status="skipped",
                            reason="the gateway has no GATEWAY_MAX_CONCURRENCY setting"))
        return
    run.notes.append(f"concurrency limit detected through {how}")
    for name, limit, label in (
        ("hot-shed", run.o.shed_limit, f"gateway hot, GATEWAY_MAX_CONCURRENCY={run.o.shed_limit}"),
        ("hot-nolimit", 0, "gateway hot, GATEWAY_MAX_CONCURRENCY=0 (no limit)"),
    ):
        row = Row(name, label, "concurrency", expect_errors=limit > 0)
        with running(run.gateway_server(f"gateway-{name}", policy, redis_url,
                                        GATEWAY_MAX_CONCURRENCY=str(limit))) as server:
            result = run.measure(row, server, hot, audit=audit)
            row.extra["max_concurrency"] = limit
            row.extra["shed_share"] = round(result.non_2xx_3xx / max(1, result.requests), 4)
            run.audit_check(row, audit)
        run.rows.append(row)
    # The hot path never waits, so it never has requests in flight to shed. Vendor HMAC waits on
    # Redis (the replay check) for every request: there the limit does shed.
    limit = run.o.shed_limit
    row = Row("hmac-shed", f"gateway vendor HMAC, GATEWAY_MAX_CONCURRENCY={limit}", "concurrency",
              expect_errors=True)
    with running(run.gateway_server("gateway-hmac-shed", policy, redis_url,
                                    GATEWAY_MAX_CONCURRENCY=str(limit))) as server:
        result = hmac(run, server, audit, row)
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
