"""Audit: hash chains that name the changed line, the queue, the file sink, fail-closed, and no secrets
(checkpoints: test_audit_anchor.py; rotation: test_audit_rotation.py; reports: test_audit_report.py)."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from gateway.app.runtime import Runtime
from gateway.audit.chain import Chain, verify_lines
from gateway.audit.checkpoint import default_path
from gateway.audit.log import AuditLog
from gateway.audit.sinks import FileSink
from gateway.cli import main
from gateway.errors import Forbidden, Unauthenticated, Unavailable
from gateway.models import AuditRecord
from gateway.service import UrlSignature
from tests.calls import Caller
from tests.core.audit_worker import write_records
from tests.core.conftest import Clock, local_policy


def record(i: int, **fields: object) -> AuditRecord:
    base: dict[str, object] = dict(time=1_700_000_000.0 + i, request_id=f"req-{i}", action="redirect",
                                   dataset="d", key=f"images/{i}.png", decision="allow", rule="r", reason=None,
                                   status=302, client_ip="127.0.0.1")
    base.update(fields)
    return AuditRecord(**base)  # type: ignore[arg-type]


def sealed(n: int, chain_id: str = "host:1:abcd:file") -> list[bytes]:
    chain = Chain(chain_id)
    return [chain.seal({"request_id": f"req-{i}", "key": f"k/{i}", "status": 302, "rule": "r", "n": i})
            for i in range(n)]


# -- the chain ----------------------------------------------------------------------------------------

def test_a_clean_file_verifies() -> None:
    result = verify_lines(sealed(10))
    assert (result.ok, result.records, result.chains, result.line) == (True, 10, 1, None)


def test_an_empty_file_verifies() -> None:
    assert verify_lines([]).ok


def _edit(line: bytes, field: str) -> bytes:
    data = orjson.loads(line)
    value = data[field]
    if isinstance(value, bool) or value is None:
        data[field] = "changed"
    elif isinstance(value, int):
        data[field] = value + 1
    else:
        data[field] = value[:-1] + ("0" if value[-1:] != "0" else "1")
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS) + b"\n"


@pytest.mark.parametrize("index", [0, 3, 7])
def test_changing_any_field_of_any_line_names_that_line(index: int) -> None:
    lines = sealed(8)
    for field in orjson.loads(lines[index]):
        tampered = list(lines)
        tampered[index] = _edit(lines[index], field)
        result = verify_lines(tampered)
        assert not result.ok, field
        assert result.line == index + 1, (field, result)


def test_adding_a_field_is_a_change() -> None:
    lines = sealed(4)
    data = orjson.loads(lines[2])
    data["extra"] = "x"
    lines[2] = orjson.dumps(data) + b"\n"
    assert verify_lines(lines).line == 3


@pytest.mark.parametrize("index", [0, 1, 5, 8])
def test_deleting_a_line_names_where_it_was(index: int) -> None:
    lines = sealed(10)
    del lines[index]
    result = verify_lines(lines)
    assert not result.ok
    assert result.line == index + 1
    assert result.problem and "missing" in result.problem


def test_a_chain_that_starts_mid_way_needs_a_reopen_mark_unless_partial() -> None:
    lines = sealed(10)[4:]  # the first four removed: no reopen checkpoint says the file may start here
    result = verify_lines(lines)
    assert (result.ok, result.line) == (False, 1)
    assert result.problem and "expected seq 1 or a reopen checkpoint, got seq 5" in result.problem
    partial = verify_lines(lines, partial=True)  # an excerpt, or a stream MAXLEN trimmed
    assert partial.ok and any("continues chain host:1:abcd:file from seq 5" in n for n in partial.notes)


@pytest.mark.parametrize(("a", "b"), [(0, 1), (2, 6), (3, 9)])
def test_swapping_two_lines_names_the_first(a: int, b: int) -> None:
    lines = sealed(10)
    lines[a], lines[b] = lines[b], lines[a]
    result = verify_lines(lines)
    assert not result.ok
    assert result.line == a + 1


@pytest.mark.parametrize("where", [0, 4, 10])
def test_inserting_a_line_names_it(where: int) -> None:
    lines = sealed(10)
    forged = Chain("host:1:abcd:file")  # same chain id, restarted: the attacker has no earlier state
    lines.insert(where, forged.seal({"request_id": "forged"}) if where else lines[3])
    result = verify_lines(lines)
    assert not result.ok
    assert result.line == where + 1


def test_garbage_lines_are_named_and_blank_lines_skipped() -> None:
    lines = sealed(3)
    assert verify_lines([lines[0], b"\n", lines[1], b"   \n", lines[2]]).ok
    result = verify_lines([lines[0], b"{not json\n", lines[1]])
    assert (result.ok, result.line) == (False, 2)
    result = verify_lines([lines[0], b'{"hash": "x"}\n'])
    assert (result.ok, result.line) == (False, 2)


def test_interleaved_chains_verify_and_each_is_checked() -> None:
    chains = {name: sealed(20, f"host:{name}:file") for name in ("a", "b", "c")}
    rng = random.Random(7)
    order = [name for name in chains for _ in range(20)]
    rng.shuffle(order)
    cursors = dict.fromkeys(chains, 0)
    merged: list[bytes] = []
    for name in order:
        merged.append(chains[name][cursors[name]])
        cursors[name] += 1
    result = verify_lines(merged)
    assert (result.ok, result.records, result.chains) == (True, 60, 3)
    # Deleting from one chain is still found, at the line where that chain breaks.
    victim = merged.index(chains["b"][5])
    following = merged.index(chains["b"][6])
    del merged[victim]
    assert verify_lines(merged).line == following  # 1-based number of b[6] after the deletion


# -- the queue and the file sink ----------------------------------------------------------------------------

def test_records_land_as_sealed_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    log = AuditLog([FileSink(path)])
    try:
        for i in range(50):
            log.emit(record(i))
        asyncio.run(log.emit_confirmed(record(50)))  # one writer, FIFO: everything before it is written
        lines = path.read_bytes().splitlines(keepends=True)
    finally:
        log.close()
    assert len(lines) == 51
    parsed = [orjson.loads(line) for line in lines]
    assert [p["request_id"] for p in parsed] == [f"req-{i}" for i in range(51)]
    assert {"time", "request_id", "action", "dataset", "key", "decision", "rule", "reason", "status",
            "client_ip", "user_agent", "principal", "cache", "latency_ms", "hash", "prev_hash"} <= set(parsed[0])
    assert verify_lines(lines).ok


def test_several_workers_append_to_one_file_without_tearing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=write_records, args=(str(path), w, 300)) for w in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    lines = path.read_bytes().splitlines()
    assert len(lines) == 900
    ids = {orjson.loads(line)["request_id"] for line in lines}  # every line parses: none was torn
    assert ids == {f"w{w}-{i}" for w in range(3) for i in range(300)}
    assert main(["audit", "verify", str(path)]) == 0
    assert "900 records in 3 chains" in capsys.readouterr().out
    # Each worker checkpointed its chain's head at shutdown, beside the file: every end is anchored.
    assert main(["audit", "verify", "--checkpoints", str(default_path(path)), str(path)]) == 0
    assert "900 records in 3 chains; 3 checkpoints matched" in capsys.readouterr().out


def test_audit_verify_names_the_changed_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    lines = sealed(5)
    lines[3] = lines[3].replace(b'"k/3"', b'"k/9"')
    path.write_bytes(b"".join(lines))
    assert main(["audit", "verify", str(path)]) == 1
    assert f"{path}:4:" in capsys.readouterr().err
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 1


class BlockingSink:
    """A destination that hangs until released, so that the queue behind it fills up."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lines: list[bytes] = []

    def write(self, lines: list[bytes]) -> None:
        self.entered.set()
        self.release.wait(10)
        self.lines.extend(lines)

    def reopen(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_full_queue_drops_and_counts() -> None:
    sink = BlockingSink()
    drops: list[int] = []
    log = AuditLog([sink], max_queue=2, on_drop=lambda: drops.append(1))
    try:
        log.emit(record(0))
        assert sink.entered.wait(5)  # the writer holds record 0 and is stuck in the sink
        for i in range(1, 6):
            log.emit(record(i))  # 1 and 2 fit in the queue; 3, 4 and 5 are dropped
        assert len(drops) == 3
    finally:
        sink.release.set()
        log.close()
    assert [orjson.loads(line)["request_id"] for line in sink.lines] == ["req-0", "req-1", "req-2"]


def test_fail_closed_refuses_when_the_sink_cannot_write() -> None:
    drops: list[int] = []
    log = AuditLog([FileSink(Path("/dev/full"))], fail_closed=True, on_drop=lambda: drops.append(1))
    try:
        with pytest.raises(Unavailable) as info:
            asyncio.run(log.emit_confirmed(record(0)))
        assert info.value.status == 503 and info.value.retry_after
        with pytest.raises(Unavailable):
            asyncio.run(log.record(record(1)))  # record() is emit_confirmed in fail-closed mode
    finally:
        log.close()
    assert len(drops) >= 2


def test_fail_closed_confirms_when_the_sink_writes(tmp_path: Path) -> None:
    log = AuditLog([FileSink(tmp_path / "a.jsonl")], fail_closed=True)
    try:
        asyncio.run(log.record(record(0)))
        assert len((tmp_path / "a.jsonl").read_bytes().splitlines()) == 1
    finally:
        log.close()


def test_fail_open_never_raises() -> None:
    log = AuditLog([FileSink(Path("/dev/full"))])
    try:
        asyncio.run(log.record(record(0)))
    finally:
        log.close()


# -- invariant 6: no secret in a record ------------------------------------------------------------------------

def test_records_never_hold_tokens_signatures_or_signed_urls(
    make_runtime: Callable[..., Runtime], write_policy: Callable[..., Path], tmp_path: Path, clock: Clock
) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.png").write_bytes(b"png")
    audit_file = tmp_path / "audit.jsonl"
    runtime = make_runtime(write_policy(local_policy(data, audit_file)), clock=clock)
    use = runtime.use
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2VjcmV0LXNpZ25hdHVyZS1ieXRlcw"
    caller = Caller(runtime, headers={"user-agent": "Mozilla/5.0 pytest"}, request_id="req-secret")
    bearer = Caller(runtime, headers={"authorization": f"Bearer {token}"})
    secrets: list[str] = [token]

    async def drive() -> None:
        url, _ = await caller.aredirect("images/a.png")
        [item] = await caller.call("sign_batch", lambda ctx: use.redirects.batch(ctx, "local", ["images/a.png"]), 200)
        assert item.url is not None
        secrets.extend([url.url, item.url.url])
        query = parse_qs(urlsplit(url.url).query)
        sig, exp = query["sig"][0], query["exp"][0]
        secrets.append(sig)
        await caller.call("fetch", lambda ctx: use.local.read(ctx, "local", b"images/a.png",
                                                              UrlSignature("local", exp, sig)), 200)
        forged = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
        secrets.append(forged)
        with pytest.raises(Forbidden):
            await caller.call("fetch", lambda ctx: use.local.read(ctx, "local", b"images/a.png",
                                                                  UrlSignature("local", exp, forged)), 200)
        with pytest.raises(Unauthenticated):
            await bearer.aredirect("images/a.png")
        await runtime.audit.emit_confirmed(AuditRecord(0, "flush", "flush", None, None, "allow", None, None, 0, ""))

    asyncio.run(drive())
    text = audit_file.read_text(encoding="utf-8")
    records = [orjson.loads(line) for line in text.splitlines()]
    assert [r["action"] for r in records] == ["redirect", "sign_batch", "fetch", "fetch", "redirect", "flush"]
    assert [r["decision"] for r in records[:5]] == ["allow", "allow", "allow", "deny", "deny"]
    assert records[3]["reason"] == "bad_signature"
    for secret in secrets:
        assert secret not in text, secret
    assert "sig=" not in text
    assert "exp=" not in text
    assert "Bearer" not in text
