"""Checkpoints: the heads of the audit chains copied to a second destination (a file, a real Redis
stream), when they are written, and what ``audit verify --checkpoints`` finds with them that the chain
alone cannot: records cut off the end, and a chain re-sealed from some point on."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from gateway.audit.anchor import Anchors
from gateway.audit.chain import Chain
from gateway.audit.checkpoint import CheckpointPolicy, default_path
from gateway.audit.log import AuditLog
from gateway.audit.redis_stream import RedisStreamSink
from gateway.audit.seal import checkpoint_record
from gateway.audit.sinks import FileSink
from gateway.audit.sources import load_anchors
from gateway.audit.verify import verify_lines
from gateway.cli import main
from gateway.config import AuditConfig
from gateway.models import AuditRecord
from gateway.redis.client import SharedRedis
from gateway.redis.options import RedisOptions
from tests.support import RedisServer, start_redis, stop_redis


def record(i: int) -> AuditRecord:
    return AuditRecord(time=1_700_000_000.0 + i, request_id=f"req-{i}", action="redirect", dataset="d",
                       key=f"images/{i}.png", decision="allow", rule="r", reason=None, status=302,
                       client_ip="127.0.0.1")


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def parsed(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in lines(path)]


def write(log: AuditLog, start: int, count: int) -> None:
    for i in range(start, start + count - 1):
        log.emit(record(i))
    asyncio.run(log.emit_confirmed(record(start + count - 1)))  # FIFO: everything before it is written too


def anchors_of(path: Path) -> Anchors:
    anchors, own = load_anchors(("cp", n, line) for n, line in enumerate(lines(path), start=1))
    assert own.ok, own.problems
    return anchors


# -- when they are written ----------------------------------------------------------------------------

def test_every_n_records_and_at_shutdown_each_naming_the_head(tmp_path: Path) -> None:
    audit, cps = tmp_path / "audit.jsonl", tmp_path / "cp.jsonl"
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(every=10, interval=3600, sinks=[FileSink(cps)]))
    write(log, 0, 10)  # checked after each batch the writer takes: at least 10 records apart, at a batch's end
    write(log, 10, 10)
    write(log, 20, 5)
    log.close()
    written = parsed(cps)
    assert [(c["reason"], c["of_seq"]) for c in written] == [("count", 10), ("count", 20), ("shutdown", 25)]
    hashes = {r["seq"]: r["hash"] for r in parsed(audit)}
    assert all(c["of_hash"] == hashes[c["of_seq"]] and c["type"] == "checkpoint" for c in written)
    assert verify_lines(lines(cps)).ok  # the checkpoints are a chain of their own
    assert not default_path(audit).exists()  # a configured destination replaces the default one


def test_after_interval_seconds_when_there_are_new_records(tmp_path: Path) -> None:
    audit, cps = tmp_path / "audit.jsonl", tmp_path / "cp.jsonl"
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(every=10**9, interval=0.2, sinks=[FileSink(cps)]))
    try:
        write(log, 0, 3)
        deadline = time.monotonic() + 5
        while not (cps.exists() and cps.read_bytes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(c["reason"], c["of_seq"]) for c in parsed(cps)] == [("interval", 3)]
        time.sleep(0.5)  # no new record: no new checkpoint
        assert len(parsed(cps)) == 1
    finally:
        log.close()


def test_by_default_each_regular_audit_file_gets_one_beside_it(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    log = AuditLog([FileSink(audit)])
    write(log, 0, 4)
    log.close()
    assert default_path(audit) == tmp_path / "audit.checkpoints.jsonl"
    [shutdown] = parsed(default_path(audit))
    assert (shutdown["reason"], shutdown["of_seq"], shutdown["sink"]) == ("shutdown", 4, f"file:{audit}")
    assert default_path(Path("/var/log/audit")) == Path("/var/log/audit.checkpoints")


def test_no_default_beside_a_device_and_an_empty_list_writes_none(tmp_path: Path) -> None:
    log = AuditLog([FileSink(Path("/dev/null"))])
    write(log, 0, 2)
    log.close()
    assert not Path("/dev/null.checkpoints").exists()
    audit = tmp_path / "audit.jsonl"
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(sinks=[]))
    write(log, 0, 2)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl"]


def test_a_destination_that_fails_loses_no_record(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audit = tmp_path / "audit.jsonl"
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(every=2, sinks=[FileSink(Path("/dev/full"))]))
    with caplog.at_level(logging.ERROR, "gateway.audit"):
        write(log, 0, 6)
        log.close()
    assert [r["request_id"] for r in parsed(audit)] == [f"req-{i}" for i in range(6)]
    assert verify_lines(lines(audit)).ok
    assert "audit checkpoints to file failed" in caplog.text


def test_reopen_checkpoints_the_old_head_and_marks_the_new_file(tmp_path: Path) -> None:
    audit, cps = tmp_path / "audit.jsonl", tmp_path / "cp.jsonl"
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(sinks=[FileSink(cps)]))
    log.reopen()  # before any record: nothing to anchor, nothing to mark
    write(log, 0, 3)
    audit.rename(tmp_path / "audit.jsonl.1")
    cps.rename(tmp_path / "cp.jsonl.1")
    log.reopen()
    write(log, 3, 2)
    log.close()
    first = parsed(tmp_path / "audit.jsonl.1")
    assert [r.get("type") for r in first] == [None, None, None]
    marker, *rest = parsed(audit)
    assert (marker["reason"], marker["seq"], marker["of_seq"], marker["prev_hash"]) == ("reopen", 4, 3,
                                                                                         first[-1]["hash"])
    assert [r["seq"] for r in rest] == [5, 6]
    assert [(c["reason"], c["of_seq"]) for c in parsed(cps)] == [("reopen", 3), ("shutdown", 6)]
    assert not (tmp_path / "cp.jsonl.1").read_bytes()  # the reopen checkpoint went to the new file


# -- what they show ------------------------------------------------------------------------------------

def _logged(tmp_path: Path, count: int = 12) -> tuple[Path, Path]:
    audit, cps = tmp_path / "audit.jsonl", tmp_path / "cp.jsonl"
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(every=5, sinks=[FileSink(cps)]))
    for start in range(0, count, 5):  # checkpoints at 5, 10, then the shutdown's at 12
        write(log, start, min(5, count - start))
    log.close()
    return audit, cps


@pytest.mark.parametrize("cut", [1, 2, 7])
def test_cutting_the_end_is_seen_only_with_checkpoints(tmp_path: Path, cut: int,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    audit, cps = _logged(tmp_path)
    audit.write_bytes(b"".join(lines(audit)[:-cut]))
    assert main(["audit", "verify", str(audit)]) == 0  # the chain alone cannot tell
    capsys.readouterr()
    assert main(["audit", "verify", "--checkpoints", str(cps), str(audit)]) == 1
    err = capsys.readouterr().err
    assert f"{audit}:{12 - cut}: " in err and f"the records after seq {12 - cut} were removed" in err


def test_an_intact_log_matches_every_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit, cps = _logged(tmp_path)
    assert main(["audit", "verify", "--checkpoints", str(cps), str(audit)]) == 0
    assert "OK, 12 records in 1 chains; 3 checkpoints matched" in capsys.readouterr().out  # 5, 10, 12


def test_a_chain_resealed_from_the_middle_is_seen_only_with_checkpoints(tmp_path: Path) -> None:
    audit, cps = _logged(tmp_path)
    records = parsed(audit)
    forger = Chain(str(records[0]["chain"]))  # no secret in a seal: anyone can recompute the hashes
    forged: list[bytes] = []
    for r in records:
        body = {k: v for k, v in r.items() if k not in ("chain", "seq", "prev_hash", "hash")}
        if r["seq"] == 7:
            body["status"] = 200
        forged.append(forger.seal(body))
    assert verify_lines(forged).ok
    result = verify_lines(forged, anchors=anchors_of(cps))
    assert not result.ok and result.line == 10  # the first checkpointed seq after the change
    assert result.problem is not None and "rewritten" in result.problem


def test_a_changed_checkpoint_file_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit, cps = _logged(tmp_path)
    changed = lines(cps)
    changed[1] = changed[1].replace(b'"of_seq":10', b'"of_seq":11')
    cps.write_bytes(b"".join(changed))
    assert main(["audit", "verify", "--checkpoints", str(cps), str(audit)]) == 1
    assert f"checkpoints: {cps}:2: " in capsys.readouterr().err


def test_two_checkpoints_that_disagree_are_a_problem(tmp_path: Path) -> None:
    audit, cps = _logged(tmp_path)
    chain = str(parsed(audit)[0]["chain"])
    other = Chain("elsewhere:checkpoints")
    extra = [other.seal(checkpoint_record("count", chain, 5, "f" * 64, 0.0, "file"))]
    anchors, _ = load_anchors(("cp", n, line) for n, line in enumerate(lines(cps) + extra, start=1))
    result = verify_lines(lines(audit), anchors=anchors)
    assert not result.ok and any("different hashes" in str(p) for p in result.problems)


def test_config_keeps_checkpoints_apart_from_the_records() -> None:
    defaults = AuditConfig().checkpoints
    assert (defaults.every, defaults.interval, defaults.sinks) == (10_000, 60.0, None)
    parsed_config = AuditConfig.model_validate({"sinks": [{"kind": "file", "path": "/l/a.jsonl"}], "checkpoints": {
        "interval": "5m", "sinks": [{"kind": "redis_stream", "stream": "gateway:audit:checkpoints"}]}})
    assert parsed_config.checkpoints.interval == 300.0
    with pytest.raises(ValueError, match="must not be an audit sink too: file /l/a.jsonl"):
        AuditConfig.model_validate({"sinks": [{"kind": "file", "path": "/l/a.jsonl"}],
                                    "checkpoints": {"sinks": [{"kind": "file", "path": "/l/a.jsonl"}]}})
    with pytest.raises(ValueError, match="stdout"):
        AuditConfig.model_validate({"checkpoints": {"sinks": [{"kind": "stdout"}]}})


# -- a real Redis stream as the second destination ------------------------------------------------------

# The writer's first command also connects: on a loaded machine that can outlast the 250 ms a request
# may wait, and the checkpoint would then (rightly) be skipped, not retried.
PATIENT = RedisOptions(timeout=5.0, connect_timeout=5.0)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    stop_redis(server)


def test_checkpoints_in_a_redis_stream(redis_server: RedisServer, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    audit = tmp_path / "audit.jsonl"
    sink = RedisStreamSink(SharedRedis(redis_server.url, options=PATIENT), "audit-cp", maxlen=1000)
    log = AuditLog([FileSink(audit)], checkpoints=CheckpointPolicy(every=4, sinks=[sink]))
    write(log, 0, 4)
    write(log, 4, 4)
    write(log, 8, 1)
    log.close()
    client = redis.Redis.from_url(redis_server.url)
    entries = client.xrange("audit-cp") or []
    client.close()
    assert [orjson.loads(fields[b"record"])["of_seq"] for _, fields in entries if fields] == [4, 8, 9]
    args = ["audit", "verify", "--redis-url", redis_server.url, "--checkpoint-stream", "audit-cp"]
    assert main([*args, str(audit)]) == 0
    assert "3 checkpoints matched" in capsys.readouterr().out
    audit.write_bytes(b"".join(lines(audit)[:-1]))
    assert main([*args, str(audit)]) == 1
    assert "the records after seq 8 were removed" in capsys.readouterr().err
