"""Verifying audit chains, one record at a time, over one file, a sequence of rotated files, or a stream.

Records are checked as they are read, so a file of any size verifies in constant memory (one head
per chain). After a break the chain is picked up again at the record that broke it, so one edited
line is one problem and the records after it are still checked (the report goes on counting them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.audit.anchor import Anchors
from gateway.audit.seal import GENESIS, digest, is_reopen_marker, sealed_body

MAX_LISTED = 20  # problems and notes listed; the rest are counted


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    chains: int
    problems: tuple[Problem, ...] = ()
    problem_count: int = 0
    notes: tuple[str, ...] = ()
    checkpoints_matched: int | None = None  # None: no checkpoints were given

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None

    @property
    def problem(self) -> str | None:
        return self.problems[0].text if self.problems else None


@dataclass(slots=True)
class _Head:
    seq: int
    hash: str
    where: tuple[str, int]


@dataclass
class ChainVerifier:
    """Checks every chain in the records it is fed.

    A chain's first record must be seq 1 (from the genesis hash) or a ``reopen`` checkpoint: the
    first record of a file that logrotate started in the middle of a chain, anchored by its
    ``prev_hash`` to the last record of the file before. ``partial`` accepts any first record (a
    Redis stream trimmed by ``MAXLEN``, an excerpt): the start of such a chain proves nothing.
    With ``anchors`` (the checkpoints of a second destination), the end of each chain is checked
    too, and a file that starts in the middle of a chain must start right after a reopen checkpoint.
    """

    partial: bool = False
    anchors: Anchors | None = None
    records: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    note_count: int = 0
    heads: dict[str, _Head] = field(default_factory=dict)

    def _problem(self, source: str, line: int, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(Problem(source, line, text))

    def _note(self, text: str) -> None:
        self.note_count += 1
        if len(self.notes) < MAX_LISTED:
            self.notes.append(text)

    def check(self, line: bytes, source: str = "-", number: int = 0) -> dict[str, Any] | None:
        """Check one line; the record it holds (whether or not it breaks its chain), or None for a
        blank line or one that is not a sealed record."""
        line = line.rstrip()
        if not line:
            return None
        self.records += 1
        try:
            record: dict[str, Any] = orjson.loads(line)
            chain_id, seq, prev, claimed = record["chain"], record["seq"], record["prev_hash"], record["hash"]
            if not (isinstance(chain_id, str) and type(seq) is int and isinstance(prev, str)
                    and isinstance(claimed, str)):
                raise TypeError(chain_id)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._problem(source, number, "not a sealed audit record")
            return None
        problem = self._link(record, chain_id, seq, prev)
        if problem is None:
            body = sealed_body(line, claimed)
            if body is None or digest(prev, body) != claimed:
                problem = f"chain {chain_id}: the record was changed"
            elif self.anchors is not None:
                problem = self.anchors.at_record(chain_id, seq, claimed)
        if problem is not None:
            self._problem(source, number, problem)
        head = self.heads.get(chain_id)
        if head is None:
            self.heads[chain_id] = _Head(seq, claimed, (source, number))
        else:
            head.seq, head.hash, head.where = seq, claimed, (source, number)
        return record

    def _link(self, record: dict[str, Any], chain_id: str, seq: int, prev: str) -> str | None:
        head = self.heads.get(chain_id)
        if head is not None:
            if seq != head.seq + 1:
                return f"chain {chain_id}: expected seq {head.seq + 1}, got {seq} (a record is missing or moved)"
            if prev != head.hash:
                return f"chain {chain_id}: prev_hash does not match the previous record"
            return None
        if seq == 1:
            return None if prev == GENESIS else f"chain {chain_id}: seq 1 does not start from the genesis hash"
        if seq < 1:
            return f"chain {chain_id}: seq {seq} is not a sequence number"
        if not self.partial and not is_reopen_marker(record):
            return (f"chain {chain_id}: expected seq 1 or a reopen checkpoint, got seq {seq}: the records before "
                    f"it are missing (removed from the start of the file, or rotated without SIGHUP, as "
                    f"copytruncate does)")
        reopened = " after a reopen" if is_reopen_marker(record) else ""
        self._note(f"continues chain {chain_id} from seq {seq}{reopened} (anchored by prev_hash {prev[:12]}…)")
        if self.anchors is not None and not self.partial:
            return self.anchors.at_start(chain_id, seq, prev)
        return None

    def result(self) -> VerifyResult:
        """The outcome so far; with anchors, the end of every chain is checked here."""
        problems, notes, count = list(self.problems), list(self.notes), self.problem_count
        matched = None
        if self.anchors is not None:
            for text in self.anchors.conflicts:
                count += 1
                problems.append(Problem("checkpoints", 0, text))
            for chain_id, head in self.heads.items():
                problem, note = self.anchors.at_end(chain_id, head.seq)
                if problem is not None:
                    count += 1
                    problems.append(Problem(head.where[0], head.where[1], problem))
                if note is not None:
                    notes.append(note)
            unknown = [c for c in self.heads if not self.anchors.knows(c)]
            if unknown:
                notes.append(f"{len(unknown)} chain(s) have no checkpoint (their ends are not anchored): "
                             + ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else ""))
            absent = self.anchors.absent(set(self.heads))
            if absent:
                notes.append(f"{absent} checkpointed chain(s) have no record here (other sinks or files)")
            matched = self.anchors.matched
        elif self.heads:
            notes.append("the ends of the chains are not anchored: records removed from the end cannot be seen "
                         "(give --checkpoints)")
        if self.note_count > len(self.notes):
            notes.append(f"… and {self.note_count - len(self.notes)} more")
        return VerifyResult(count == 0, self.records, len(self.heads), tuple(problems[:MAX_LISTED * 2]), count,
                            tuple(notes), matched)


def verify_lines(lines: Iterable[bytes], *, source: str = "-", partial: bool = False,
                 anchors: Anchors | None = None) -> VerifyResult:
    """Check every chain in an audit file; name the first line that breaks one."""
    verifier = ChainVerifier(partial=partial, anchors=anchors)
    for number, line in enumerate(lines, start=1):
        verifier.check(line, source, number)
    return verifier.result()
