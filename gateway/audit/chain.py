"""Tamper evidence: each record carries the previous record's hash and its own.

Chains are per sink and per process (``chain`` names the process), so several workers may
append to one file and every chain still verifies on its own. This module encodes records; the
seal is in :mod:`gateway.audit.seal` and the verifier in :mod:`gateway.audit.verify` (both are
re-exported here, where callers have always found them).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.audit import seal
from gateway.audit.seal import GENESIS
from gateway.audit.verify import VerifyResult, verify_lines
from gateway.models import AuditRecord, Principal

__all__ = ["GENESIS", "Chain", "VerifyResult", "encode", "encode_fields", "encode_record", "principal_json",
           "verify_lines"]


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


class Chain(seal.Chain):
    """A :class:`gateway.audit.seal.Chain` that also seals a mapping or a dataclass (encoded first)."""

    def seal(self, record: object) -> bytes:
        return super().seal(record if isinstance(record, bytes) else encode(record))
