"""Checkpoints: copies of each chain's head, written to a second destination.

Written from the audit writer thread when a destination is reopened (SIGHUP, after logrotate), at
shutdown, and every ``every`` records or ``interval`` seconds of a chain, whichever comes first. Each
checkpoint is a record of its own type (``"type": "checkpoint"``) naming a chain's seq and hash,
sealed into the destination's own chain, so the checkpoint file verifies like any audit file.

The copies are the anchor of the chains' heads only if whoever can rewrite the audit file cannot
rewrite them: another volume, an append-only file (``chattr +a``), a Redis stream, a log shipper.
With no setting, each regular audit file gets one next to it (``audit.jsonl`` ->
``audit.checkpoints.jsonl``), which already shows records lost or cut off by accident; docs/audit.md
says what each placement proves.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.audit import AuditSink
from gateway.audit.seal import REOPEN, Chain, checkpoint_record
from gateway.audit.sinks import FileSink

log = logging.getLogger("gateway.audit")


def default_path(audit_file: Path) -> Path:
    """``audit.jsonl`` -> ``audit.checkpoints.jsonl``: not matched by an ``audit.jsonl*`` glob."""
    if audit_file.suffix:
        return audit_file.with_name(f"{audit_file.stem}.checkpoints{audit_file.suffix}")
    return audit_file.with_name(f"{audit_file.name}.checkpoints")


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to checkpoint, and where. ``sinks=None``: each regular audit file's sibling file;
    ``sinks=[]``: nowhere (the checkpoints are still counted, and reopened files still marked)."""

    every: int = 10_000
    interval: float = 60.0
    sinks: Sequence[AuditSink] | None = None


@dataclass
class _Destination:
    sink: AuditSink
    chain: Chain
    covers: frozenset[int] | None  # the audit sinks whose chains it anchors; None: every one


def _describe(sink: AuditSink) -> str:
    path = getattr(sink, "path", None)
    return f"{sink.name}:{path}" if path is not None else sink.name


class Checkpointer:
    """The checkpoint side of one AuditLog: called from its writer thread only."""

    def __init__(self, policy: CheckpointPolicy, sinks: Sequence[AuditSink], chains: Sequence[Chain],
                 prefix: str, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.chains = list(chains)
        self.names = [_describe(sink) for sink in sinks]
        self._clock = clock
        self._monotonic = monotonic
        self._marked = [0] * len(self.chains)  # the last seq checkpointed, per audit chain
        self._since = [monotonic()] * len(self.chains)
        self.destinations: list[_Destination] = []
        if policy.sinks is None:
            for index, sink in enumerate(sinks):
                path = getattr(sink, "path", None)
                if isinstance(path, Path) and _regular(path):
                    try:
                        target = FileSink(default_path(path))
                    except OSError as exc:
                        log.warning("audit checkpoints: cannot open %s: %s", default_path(path), exc)
                        continue
                    self._add(target, f"{prefix}:checkpoints:{sink.name}", frozenset({index}))
        else:
            for number, sink in enumerate(policy.sinks):
                self._add(sink, f"{prefix}:checkpoints" + (f":{number}" if number else ""), None)

    def _add(self, sink: AuditSink, chain_id: str, covers: frozenset[int] | None) -> None:
        self.destinations.append(_Destination(sink, Chain(chain_id), covers))

    def due(self) -> None:
        """After a batch, and on every wake: checkpoint the chains that reached ``every`` new records,
        or have new records older than ``interval``."""
        now = self._monotonic()
        due = [i for i, chain in enumerate(self.chains) if chain.seq > self._marked[i] and (
            chain.seq - self._marked[i] >= self.policy.every or now - self._since[i] >= self.policy.interval)]
        if due:
            counted = any(self.chains[i].seq - self._marked[i] >= self.policy.every for i in due)
            self.write(due, "count" if counted else "interval")

    def write(self, indexes: Sequence[int], reason: str) -> None:
        """Checkpoint these audit chains' heads now, in every destination that anchors them."""
        now, mono = self._clock(), self._monotonic()
        records = {i: checkpoint_record(reason, self.chains[i].chain_id, self.chains[i].seq,
                                        self.chains[i].prev_hash, now, self.names[i])
                   for i in indexes if self.chains[i].seq > 0}
        for i in indexes:
            self._marked[i], self._since[i] = self.chains[i].seq, mono
        for dest in self.destinations:
            wanted = [records[i] for i in records if dest.covers is None or i in dest.covers]
            if wanted:
                self._send(dest, wanted)

    def _send(self, dest: _Destination, records: list[bytes]) -> None:
        saved = dest.chain.state()
        try:
            dest.sink.write([dest.chain.seal(record) for record in records])
        except Exception as exc:  # a checkpoint that cannot be written must not stop the records
            dest.chain.restore(saved)
            log.error("audit checkpoints to %s failed: %s", dest.sink.name, type(exc).__name__)

    def rotate(self) -> None:
        """SIGHUP: reopen each destination and mark where its new file starts, then checkpoint every
        audit chain's head: the last record its old file holds."""
        for dest in self.destinations:
            try:
                dest.sink.reopen()
            except OSError as exc:
                log.error("audit checkpoints: cannot reopen %s: %s", dest.sink.name, exc)
                continue
            if dest.chain.seq:
                own = dest.chain
                self._send(dest, [checkpoint_record(REOPEN, own.chain_id, own.seq, own.prev_hash, self._clock(),
                                                    _describe(dest.sink))])
        self.write(range(len(self.chains)), REOPEN)

    def shutdown(self) -> None:
        """The last heads, then close the destinations (the audit sinks are closed by the log)."""
        self.write([i for i, chain in enumerate(self.chains) if chain.seq], "shutdown")
        for dest in self.destinations:
            try:
                dest.sink.close()
            except OSError:
                log.warning("audit checkpoint destination %s did not close cleanly", dest.sink.name)


def _regular(path: Path) -> bool:
    """Only a regular file gets a sibling: never /dev/stdout, /dev/full or a pipe."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False
