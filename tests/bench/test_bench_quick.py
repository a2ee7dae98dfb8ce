"""The benchmark's quick mode as a regression guard in the normal suite.

It runs ``python -m bench.run --quick`` (bare Starlette, then the gateway's hot, cold and batch
scenarios for a few seconds each) and fails only on gross regressions, as ratios to bare Starlette
measured in the same run, or on any error answer. See bench/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import need

ROOT = Path(__file__).resolve().parents[2]


def _available(binary: str) -> bool:
    # The harness installs missing tools itself when it runs as root with apt-get.
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    return shutil.which(binary) is not None or can_install


@pytest.mark.bench
@pytest.mark.timeout(150)
def test_quick_bench_has_no_gross_regression(tmp_path: Path) -> None:
    need(_available("wrk"), "wrk is not installed (apt-get install wrk)")
    need(_available("redis-server"), "redis-server is not installed (apt-get install redis-server)")
    started = time.monotonic()
    proc = subprocess.run(
        # Shorter rows than `make bench-quick` (2 s after 0.5 s of warm-up): the guard is a gross
        # ratio to Starlette measured in the same run, which two seconds already show.
        [sys.executable, "-m", "bench.run", "--quick", "--seconds", "2", "--warmup", "0.5",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=140, check=False,
    )
    elapsed = time.monotonic() - started
    output = f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"bench --quick failed (exit {proc.returncode}) after {elapsed:.0f}s\n{output}"

    result = json.loads((tmp_path / "quick.json").read_text())
    rows = {row["name"]: row for row in result["scenarios"]}
    assert {"starlette", "hot", "cold", "batch-cold"} <= set(rows), output
    assert all(row["status"] == "ok" for row in rows.values()), output
    assert all(item["pass"] for item in result["quick_guard"]), output
    assert (tmp_path / "quick.md").read_text().startswith("# Gateway benchmark (quick")
    # Every server and worker the run started was stopped by the time it wrote its report.
    assert result["meta"]["started_pids"], output
    assert result["meta"]["still_running"] == [], output
