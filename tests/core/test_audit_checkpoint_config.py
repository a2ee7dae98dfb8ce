"""The policy's ``audit.checkpoints`` reach the running audit log: ``every`` and ``sinks`` as written,
and the default (a file next to each audit file) when the section is left out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import RunningGateway

POLICY = """version: 1
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
{checkpoints}datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
"""


def _records(path: Path, *, at_least: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 5
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= at_least or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def _serve(gateway_server: Callable[..., RunningGateway], tmp_path: Path, checkpoints: str) -> RunningGateway:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audit=tmp_path / "audit.jsonl", data=data, checkpoints=checkpoints))
    return gateway_server(config=policy)


def test_every_and_sinks_are_the_policys(gateway_server: Callable[..., RunningGateway], tmp_path: Path) -> None:
    marks = tmp_path / "elsewhere.jsonl"
    gw = _serve(gateway_server, tmp_path, f'  checkpoints: {{every: 3, sinks: [{{kind: file, path: "{marks}"}}]}}\n')
    for _ in range(3):
        assert httpx.get(f"{gw.url}/v1/datasets/local/objects/a.txt").status_code == 302
    (checkpoint, *_) = _records(marks, at_least=1)
    assert checkpoint["type"] == "checkpoint" and checkpoint["reason"] == "count"
    assert checkpoint["of_seq"] == 3
    assert not (tmp_path / "audit.checkpoints.jsonl").exists()  # named sinks replace the default


def test_without_the_section_each_file_gets_its_own(gateway_server: Callable[..., RunningGateway],
                                                   tmp_path: Path) -> None:
    gw = _serve(gateway_server, tmp_path, "")
    assert httpx.get(f"{gw.url}/v1/datasets/local/objects/a.txt").status_code == 302
    assert _records(tmp_path / "audit.jsonl", at_least=1)
    gw.server.should_exit = True  # shutdown writes a checkpoint of the head
    deadline = time.monotonic() + 10
    while not (tmp_path / "audit.checkpoints.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (checkpoint, *_) = _records(tmp_path / "audit.checkpoints.jsonl", at_least=1)
    assert checkpoint["reason"] == "shutdown" and checkpoint["of_seq"] == 1
