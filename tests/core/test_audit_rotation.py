"""The documented logrotate flow against a real ``gateway serve`` process: ``mv audit.jsonl audit.jsonl.1``,
``kill -HUP``, more requests, SIGTERM. Then each file verifies on its own, the rotated files verify as
one sequence (in order, and in a glob's order), and the checkpoints show records cut off the end,
which the chain alone cannot (finding 17). The local-file answers in the log carry the statuses that
were sent: 200, 206, 304 and 416 (finding 18)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DOCS_BLOCK = "audit-verify"  # the block of docs/audit.md whose commands this file runs on a real gateway's files
BODY = bytes(range(256)) * 8  # 2048 bytes
POLICY = """version: 1
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
"""


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return clean | {"GATEWAY_SIGNING_KEY": "rotation-test-signing-key-0123456789", "PYTHONPATH": str(ROOT)}


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env(), check=False)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@dataclass
class Rotated:
    dir: Path
    statuses: dict[str, int]  # request id -> the status the client got


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotated]:
    root = tmp_path_factory.mktemp("rotation")
    (root / "data").mkdir()
    (root / "data" / "a.bin").write_bytes(BODY)
    audit = root / "audit.jsonl"
    (root / "policy.yaml").write_text(POLICY.format(audit=audit, data=root / "data"))
    port = free_port()
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(root / "policy.yaml"),
                             "--port", str(port)], cwd=root, env=env(), stdout=log, stderr=subprocess.STDOUT)
    statuses: dict[str, int] = {}
    stack = contextlib.ExitStack()
    try:
        wait_for_port(port, timeout=20)
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10))

        def get(rid: str, path: str, **headers: str) -> httpx.Response:
            response = client.get(path, headers={"X-Request-ID": rid, **headers})
            statuses[rid] = response.status_code
            return response

        location = get("before-1", "/v1/datasets/local/objects/a.bin").headers["location"]
        path = location.removeprefix(f"http://127.0.0.1:{port}")
        etag = get("before-2", path).headers["etag"]
        get("before-3", path, Range="bytes=0-9")
        get("before-4", path, **{"If-None-Match": etag})
        get("before-5", path, Range="bytes=9000-")
        wait_until(lambda: audit.exists() and len(records(audit)) == 5, "five records before the rotation")
        # The documented flow: move the files away, then SIGHUP (logrotate's postrotate).
        os.rename(audit, root / "audit.jsonl.1")
        os.rename(root / "audit.checkpoints.jsonl", root / "audit.checkpoints.jsonl.1")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: audit.exists() and (root / "audit.checkpoints.jsonl").exists(), "the reopened files")
        for i in range(1, 4):
            get(f"after-{i}", "/v1/datasets/local/objects/a.bin")
        get("after-4", "/v1/datasets/nope/objects/a.bin")
    finally:
        stack.close()
        proc.send_signal(signal.SIGTERM)  # graceful: the queue is drained, then the shutdown checkpoint
        proc.wait(30)
        log.close()
    # uvicorn re-raises SIGTERM once it has shut down cleanly
    assert proc.returncode in (0, -signal.SIGTERM), (root / "serve.log").read_text()
    yield Rotated(root, statuses)


def test_local_file_answers_are_audited_with_the_status_sent(rotated: Rotated) -> None:
    assert [rotated.statuses[f"before-{i}"] for i in range(1, 6)] == [302, 200, 206, 304, 416]
    logged = {r["request_id"]: r for r in records(rotated.dir / "audit.jsonl.1")}
    for rid in ("before-2", "before-3", "before-4", "before-5"):
        assert logged[rid]["status"] == rotated.statuses[rid], logged[rid]
    assert (logged["before-2"]["bytes"], logged["before-3"]["bytes"]) == (len(BODY), 10)


def test_the_new_file_starts_with_a_reopen_checkpoint_that_continues_the_chain(rotated: Rotated) -> None:
    old, new = records(rotated.dir / "audit.jsonl.1"), records(rotated.dir / "audit.jsonl")
    marker = new[0]
    assert (marker["type"], marker["reason"], marker["seq"]) == ("checkpoint", "reopen", 6)
    assert (marker["of_seq"], marker["of_hash"], marker["prev_hash"]) == (5, old[-1]["hash"], old[-1]["hash"])
    assert [r["request_id"] for r in new[1:]] == ["after-1", "after-2", "after-3", "after-4"]
    assert "type" not in old[-1]  # the old file ends with its last decision: nothing was appended to it


def test_the_rotated_file_verifies_on_its_own(rotated: Rotated) -> None:
    done = cli("audit", "verify", "audit.jsonl", cwd=rotated.dir)
    assert done.returncode == 0, done.stderr
    assert "audit.jsonl: OK, 5 records in 1 chains" in done.stdout
    assert "continues chain" in done.stdout and "from seq 6 after a reopen" in done.stdout


@pytest.mark.parametrize("order", [["audit.jsonl.1", "audit.jsonl"], ["audit.jsonl", "audit.jsonl.1"]])
def test_the_rotated_files_verify_as_one_sequence(rotated: Rotated, order: list[str]) -> None:
    done = cli("audit", "verify", *order, cwd=rotated.dir)  # the second order is a shell glob's: audit.jsonl*
    assert done.returncode == 0, done.stderr
    assert "audit.jsonl.1 + audit.jsonl: OK, 10 records in 1 chains" in done.stdout
    assert "continues chain" not in done.stdout  # one chain from seq 1 to its end
    as_given = cli("audit", "verify", "--as-given", "audit.jsonl", "audit.jsonl.1", cwd=rotated.dir)
    assert as_given.returncode == 1
    assert "expected seq 11, got 1" in as_given.stderr or "got seq 1" in as_given.stderr, as_given.stderr


def test_the_checkpoints_anchor_both_files_and_the_end(rotated: Rotated) -> None:
    cps = ["--checkpoints", "audit.checkpoints.jsonl.1", "--checkpoints", "audit.checkpoints.jsonl"]
    done = cli("audit", "verify", *cps, "audit.jsonl.1", "audit.jsonl", cwd=rotated.dir)
    assert done.returncode == 0, done.stderr
    assert "checkpoints matched" in done.stdout
    alone = cli("audit", "verify", *cps, "audit.jsonl.1", cwd=rotated.dir)  # it ends at the reopen: complete
    assert alone.returncode == 0, alone.stderr
    shutdown = records(rotated.dir / "audit.checkpoints.jsonl")[-1]
    assert (shutdown["reason"], shutdown["of_seq"]) == ("shutdown", 10)


def test_records_cut_off_the_end_show_only_against_the_checkpoints(rotated: Rotated, tmp_path: Path) -> None:
    lines = (rotated.dir / "audit.jsonl").read_bytes().splitlines(keepends=True)
    cut = tmp_path / "audit.jsonl"
    cut.write_bytes(b"".join(lines[:-2]))
    blind = cli("audit", "verify", str(cut))
    assert blind.returncode == 0  # a hash chain without an anchored head cannot see it
    assert "not anchored" in blind.stdout
    anchored = cli("audit", "verify", "--checkpoints", str(rotated.dir / "audit.checkpoints.jsonl"), str(cut))
    assert anchored.returncode == 1
    assert f"{cut}:3: " in anchored.stderr and "the records after seq 8 were removed" in anchored.stderr


def test_records_cut_off_the_start_of_a_rotated_file_show(rotated: Rotated, tmp_path: Path) -> None:
    lines = (rotated.dir / "audit.jsonl").read_bytes().splitlines(keepends=True)
    cut = tmp_path / "audit.jsonl"
    cut.write_bytes(b"".join(lines[2:]))  # the reopen checkpoint and the first record after it
    done = cli("audit", "verify", str(cut))
    assert done.returncode == 1
    assert f"{cut}:1: " in done.stderr and "the records before it are missing" in done.stderr
