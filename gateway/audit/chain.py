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

from gateway.models import AuditRecord, Principal

GENESIS = "0" * 64


def _digest(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


def encode(record: Any) -> bytes:
    """One record as compact JSON (orjson encodes dataclasses natively; sets become sorted lists)."""
    if isinstance(record, AuditRecord):
        return encode_record(record)
    return orjson.dumps(record, default=_sets)


def encode_record(record: AuditRecord) -> bytes:
    """An audit record as compact JSON, in field order (see :func:`encode_fields`)."""
    return encode_fields(record.time, record.request_id, record.action, record.dataset, record.key, record.decision,
                         record.rule, record.reason, record.status, record.client_ip, record.user_agent,
                         record.principal, record.cache, record.latency_ms, record.keys, record.denied, record.bytes,
                         record.policy)


def encode_fields(time: float, request_id: str, action: str, dataset: str | None, key: str | None, decision: str,
                  rule: str | None, reason: str | None, status: int, client_ip: str, user_agent: str,
                  principal: Principal, cache: str | None, latency_ms: float, keys: list[str] | None,
                  denied: int | None, sent: int | None, policy: str | None) -> bytes:
    """The fields of an :class:`AuditRecord` as compact JSON, without building one (the request
    path's case: every request encodes its record). The principal's JSON is reused: the same
    principal (a cached token's) is in thousands of records, and encoding it is most of the cost."""
    return orjson.dumps({
        "time": time, "request_id": request_id, "action": action, "dataset": dataset, "key": key,
        "decision": decision, "rule": rule, "reason": reason, "status": status, "client_ip": client_ip,
        "user_agent": user_agent, "principal": principal_json(principal), "cache": cache, "latency_ms": latency_ms,
        "keys": keys, "denied": denied, "bytes": sent, "policy": policy,
    })


_PRINCIPALS: dict[int, tuple[Principal, orjson.Fragment]] = {}


def principal_json(principal: Principal) -> orjson.Fragment:
    """The principal's identifiers as JSON (never a credential or its expiry), cached per object."""
    cached = _PRINCIPALS.get(id(principal))
    if cached is not None and cached[0] is principal:
        return cached[1]
    fragment = orjson.Fragment(orjson.dumps({
        "method": principal.method, "subject": principal.subject, "email": principal.email,
        "issuer": principal.issuer, "key_id": principal.key_id, "groups": sorted(principal.groups),
        "scopes": sorted(principal.scopes),
    }))
    if len(_PRINCIPALS) >= 4096:
        _PRINCIPALS.clear()  # bounded; the entry keeps its principal alive, so an id is never reused
    _PRINCIPALS[id(principal)] = (principal, fragment)
    return fragment


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
        prev = self.prev_hash.encode("ascii")
        body = b"".join((encoded[:-1], b',"chain":', self._chain_json, b',"seq":', b"%d" % self.seq,
                         b',"prev_hash":"', prev, b'"}'))
        digest = hashlib.sha256(b"".join((prev, b"\n", body))).hexdigest()
        self.prev_hash = digest
        return b"".join((body[:-1], b',"hash":"', digest.encode("ascii"), b'"}\n'))


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
