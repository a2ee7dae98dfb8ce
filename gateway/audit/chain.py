"""Tamper evidence: each record carries the previous record's hash and its own.

Chains are per sink and per process (``chain`` names the process), so several workers may
append to one file and every chain still verifies on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

GENESIS = "0" * 64


def _digest(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


def encode(record: Any) -> bytes:
    """One record as compact JSON (orjson encodes dataclasses natively; sets become sorted lists)."""
    return orjson.dumps(record, default=_sets)


def _sets(value: object) -> list[str]:
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__} in an audit record")


class Chain:
    """Links records of one sink in one process.

    The record's JSON is extended in place with ``chain``, ``seq`` and ``prev_hash``; the SHA-256
    of the previous hash and those bytes is appended as ``hash``. A verifier parses the line, drops
    ``hash`` and re-encodes it (orjson keeps key order), which gives back exactly the hashed bytes.
    """

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        self._chain_json = orjson.dumps(chain_id)
        self.seq = 0
        self.prev_hash = GENESIS

    def seal(self, record: object) -> bytes:
        """Seal one record (a mapping, a dataclass, or bytes already from :func:`encode`)."""
        encoded = record if isinstance(record, bytes) else encode(record)
        self.seq += 1
        body = (encoded[:-1] + b',"chain":' + self._chain_json + b',"seq":' + str(self.seq).encode()
                + b',"prev_hash":"' + self.prev_hash.encode("ascii") + b'"}')
        digest = _digest(self.prev_hash, body)
        self.prev_hash = digest
        return body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n'


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int
    chains: int
    line: int | None = None
    problem: str | None = None


def verify_lines(lines: Iterable[bytes]) -> VerifyResult:
    """Check every chain in an audit file; name the first line that breaks one."""
    state: dict[str, tuple[int, str]] = {}
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        try:
            record = orjson.loads(line)
            claimed = record.pop("hash")
            chain_id, seq, prev = record["chain"], record["seq"], record["prev_hash"]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return VerifyResult(False, count, len(state), number, "not a sealed audit record")
        last_seq, last_hash = state.get(chain_id, (0, GENESIS))
        if seq != last_seq + 1 or prev != last_hash:
            problem = f"chain {chain_id}: expected seq {last_seq + 1}, got {seq} (a record is missing or moved)"
            if seq == last_seq + 1:
                problem = f"chain {chain_id}: prev_hash does not match the previous record"
            return VerifyResult(False, count, len(state), number, problem)
        if _digest(prev, orjson.dumps(record)) != claimed:
            return VerifyResult(False, count, len(state), number, f"chain {chain_id}: the record was changed")
        state[chain_id] = (seq, claimed)
    return VerifyResult(True, count, len(state))
