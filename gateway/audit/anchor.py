"""Anchors: the checkpoints kept in a second destination, held against the chains they name.

A hash chain alone shows a change, a removal or a move anywhere but at its end: the last records can
be cut off and what is left still verifies, and, since nothing in a seal is secret, someone who can
write the file can re-seal everything from any point on. A checkpoint copies a chain's head (its seq
and hash) to a place the file's writer cannot rewrite. Held against those copies, a chain that ends
before a later checkpoint has lost its last records, one whose record at a checkpointed seq has
another hash was rewritten, and a file that starts in the middle of a chain must start right after a
``reopen`` checkpoint (logrotate moved the previous file away there).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from gateway.audit.seal import CHECKPOINT, REOPEN


@dataclass(frozen=True, slots=True)
class Mark:
    hash: str
    reason: str
    time: float


def when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Anchors:
    """The checkpoints read from the checkpoint destination, by the chain they name (its records
    must have been verified as a chain of their own first: see ``gateway.audit.verify``)."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[int, Mark]] = {}
        self.count = 0
        self.conflicts: list[str] = []
        self.matched = 0  # checkpointed records found with the checkpointed hash

    def add(self, record: dict[str, Any]) -> None:
        if record.get("type") != CHECKPOINT:
            return
        of_chain, of_seq, of_hash = record.get("of_chain"), record.get("of_seq"), record.get("of_hash")
        if of_chain == record.get("chain"):
            return  # a destination's own reopen marker: it anchors nothing else
        if not (isinstance(of_chain, str) and isinstance(of_seq, int) and isinstance(of_hash, str)):
            return
        reason, time = str(record.get("reason")), record.get("time")
        mark = Mark(of_hash, reason, float(time) if isinstance(time, int | float) else 0.0)
        marks = self.marks.setdefault(of_chain, {})
        self.count += 1
        known = marks.get(of_seq)
        if known is None:
            marks[of_seq] = mark
        elif known.hash != of_hash:
            self.conflicts.append(f"chain {of_chain}: two checkpoints name seq {of_seq} with different hashes")
        elif reason == REOPEN:
            marks[of_seq] = mark  # the same head, reopened there: a file may start after it

    def knows(self, chain: str) -> bool:
        return chain in self.marks

    def at_record(self, chain: str, seq: int, hash_: str) -> str | None:
        """A problem when the record at a checkpointed seq is not the record checkpointed."""
        mark = self.marks.get(chain, {}).get(seq)
        if mark is None:
            return None
        if mark.hash != hash_:
            return (f"chain {chain}: seq {seq} is not the record checkpointed at {when(mark.time)} "
                    f"(hash {mark.hash[:12]}…): the chain was rewritten")
        self.matched += 1
        return None

    def at_start(self, chain: str, seq: int, prev_hash: str) -> str | None:
        """A file may start in the middle of a chain only right after a reopen checkpoint."""
        marks = self.marks.get(chain)
        if not marks or seq <= 1:
            return None
        mark = marks.get(seq - 1)
        if mark is None or mark.reason != REOPEN:
            return (f"chain {chain} starts here at seq {seq}, but no reopen checkpoint names seq {seq - 1}: "
                    f"the records before it are missing")
        if mark.hash != prev_hash:
            return (f"chain {chain}: the record before seq {seq} is not the one checkpointed at "
                    f"{when(mark.time)}: the chain was rewritten")
        self.matched += 1
        return None

    def at_end(self, chain: str, last: int) -> tuple[str | None, str | None]:
        """(problem, note) for the chain's last record here: records cut off the end show as a
        checkpoint beyond it with no reopen in between."""
        marks = self.marks.get(chain)
        if not marks:
            return None, None
        here = marks.get(last)
        if here is not None and here.reason == REOPEN:
            return None, None  # the file was rotated right after this record: the chain goes on elsewhere
        later = [seq for seq in marks if seq > last]
        if later:
            seq = min(later)
            mark = marks[seq]
            return (f"chain {chain} ends here at seq {last}, but a checkpoint at {when(mark.time)} names seq {seq}: "
                    f"the records after seq {last} were removed"), None
        if here is not None:
            return None, None
        anchored = max(marks)
        return None, (f"chain {chain}: seq {anchored + 1}..{last} came after its last checkpoint "
                      f"and are not anchored yet")

    def absent(self, seen: set[str]) -> int:
        """How many checkpointed chains have no record here (other sinks, other files, other processes)."""
        return sum(1 for chain in self.marks if chain not in seen)
