"""Run the gateway benchmark: ``.venv/bin/python -m bench.run`` (full) or ``--quick`` (regression guard).

It starts every server itself (127.0.0.1, free ports), drives load with wrk, stops everything by PID,
and writes ``bench/results/latest.json`` and ``latest.md`` (``quick.json``/``quick.md`` with --quick).
See bench/README.md for the scenarios and the targets. The rows live in ``rows_baseline.py``,
``rows_gateway.py`` and ``rows_long.py``; what they share in ``harness.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import fixtures as fx
from bench import report, rows_baseline, rows_gateway, rows_long, rows_proxy
from bench.harness import ROOT, Options, Run
from bench.load import fixed_paths_script
from bench.procs import STARTED, BenchError, alive, ensure_tool, running
from bench.rows_long import rss_growth

__all__ = ["main", "rss_growth"]
RESULTS = ROOT / "bench" / "results"
GUARD_FAILED = 3


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
                        help="regression guard: short runs of starlette, hot, users, cold, fresh-tokens and batch "
                        "only; exit 1 on a gross regression relative to bare Starlette in the same run")
    parser.add_argument("--seconds", type=float, help="length of each measured run (default 30, quick 3)")
    parser.add_argument("--warmup", type=float, help="warm-up before each run (default 5, quick 1)")
    parser.add_argument("--soak-seconds", type=float, default=120.0, help="soak length (full mode; default 120)")
    parser.add_argument("--soak-warmup", type=float, default=15.0, help="load before the soak's first RSS reading")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server")
    parser.add_argument("--users", type=int, default=2000, help="distinct employees' tokens in the users row")
    parser.add_argument("--user-keys", type=int, default=50_000, help="size of the users row's key space")
    parser.add_argument("--batch-requests", type=int, help="measured POST /v1/sign requests (default 50, quick 20)")
    parser.add_argument("--shed-limit", type=int, default=8, help="GATEWAY_MAX_CONCURRENCY of the hot-shed run")
    parser.add_argument("--only", default="", help="comma-separated rows to measure (bare Starlette always runs), "
                        "e.g. users,hmac; for profiling, not for the results")
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
        shed_limit=args.shed_limit, users=args.users, user_keys=args.user_keys,
        only=frozenset(name for name in args.only.split(",") if name),
    )


def _rows(run: Run, tmp: Path, redis_binary: str) -> None:
    """Every row of the run, in order; each starts and stops its own servers."""
    o = run.o
    if o.only == {"proxy"}:  # the proxy rows need nothing of the gateway rows' setup
        rows_proxy.proxy(run)
        return
    with contextlib.ExitStack() as stack:
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

        rows_baseline.starlette(run, hot)
        if not o.quick and run.wants("naive"):
            rows_baseline.naive(run, hot, issuer, token)
        if not o.quick and run.wants("nginx"):
            rows_baseline.nginx(run, hot)
        rows_gateway.gateway(run, policy, audit, redis_url, identity, issuer, token, hot)
        if not o.quick:
            if run.wants("gcs-cold"):
                rows_gateway.gcs_cold(run, issuer, redis_url, token)
            if run.wants("proxy"):
                rows_proxy.proxy(run)
            if run.wants("soak"):
                rows_long.soak(run, policy, redis_url, hot, audit)
            if run.wants("hot-shed"):
                rows_long.concurrency(run, policy, redis_url, hot, audit)
            rows_baseline.starlette(run, hot, "starlette-end")


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
        with _terminate_as_exit():
            _rows(run, tmp, redis_binary)
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
        "users": o.users, "user_keys": o.user_keys,
        "wrk": subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0],
        "notes": run.notes, "started_pids": STARTED,
        "still_running": [pid for pid in STARTED if alive(pid)],
    }
    rows = [r.as_dict() for r in run.rows]
    targets = report.targets(rows)
    guard = report.quick_guard(rows)
    result = {"meta": meta, "scenarios": report.with_ratios(rows), "targets": targets, "quick_guard": guard}
    o.out.mkdir(parents=True, exist_ok=True)
    # A partial run never overwrites the full run's results.
    stem = "quick" if o.quick else f"only-{'-'.join(sorted(o.only))}" if o.only else "latest"
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
