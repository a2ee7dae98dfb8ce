"""The hot path's shortcuts, each checked against the slow, obvious way it replaces:
tallied metrics against direct Prometheus calls, the audit record encoder against orjson's
dataclass encoding."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.app import create_app
from gateway.audit.chain import _sets, encode_record
from gateway.metrics import Tally
from gateway.models import AuditRecord, AuthMethod, Principal
from gateway.settings import Settings

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _families(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    counter = Counter("hot_requests", "r", ["route", "status"], registry=registry)
    histogram = Histogram("hot_seconds", "s", ["route"], buckets=BUCKETS, registry=registry)
    return counter, histogram


def test_tallied_metrics_expose_exactly_what_direct_calls_would() -> None:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    d_counter, d_hist = _families(direct)
    t_counter, t_hist = _families(tallied)
    tally = Tally()
    rng = random.Random(7)
    # Values on and around every bucket bound, plus the spread a real server sees.
    values = [b * f for b in BUCKETS for f in (0.5, 1.0, 1.0000001)] + [rng.expovariate(200) for _ in range(500)]
    for i, value in enumerate(values):
        route, status = ("objects", "302") if i % 3 else ("sign", "200")
        d_counter.labels(route, status).inc()
        d_hist.labels(route).observe(value)
        tally.inc(t_counter.labels(route, status))
        tally.observe(t_hist.labels(route), value)
        if i % 97 == 0:
            tally.flush()  # flushing at any point changes nothing
    assert _samples(tallied) != _samples(direct)  # not flushed yet: the tally holds counts
    tally.flush()
    tally.flush()  # an empty flush adds nothing
    got, want = _samples(tallied), _samples(direct)
    assert got.keys() == want.keys()
    for name, value in want.items():
        # Sums are added in another order (per flush, not per request): equal up to rounding.
        assert got[name] == (pytest.approx(value, rel=1e-12) if name[0].endswith("_sum") else value), name


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples if not s.name.endswith("_created")}


def test_a_histogram_without_the_expected_internals_is_replayed_through_observe() -> None:
    class ObserveOnly:  # what a future prometheus_client child could look like
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    child, tally = ObserveOnly(), Tally()
    for value in (0.1, 0.2, 7.0):
        tally.observe(child, value)
    assert child.seen == []
    tally.flush()
    assert child.seen == [0.1, 0.2, 7.0]


# -- the audit record encoder ---------------------------------------------------------------------------

def _reference(record: AuditRecord) -> bytes:
    """The generic encoding (orjson's dataclass support)."""
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    fields["principal"] = {f.name: getattr(record.principal, f.name) for f in dataclasses.fields(record.principal)}
    return orjson.dumps(fields, default=_sets)


text = st.text(max_size=40)
maybe = st.none() | text


@settings(max_examples=200, deadline=None)
@given(
    principal=st.builds(Principal, method=st.sampled_from(list(AuthMethod)), subject=maybe, email=maybe,
                        issuer=maybe, key_id=maybe, groups=st.frozensets(text, max_size=4),
                        scopes=st.frozensets(text, max_size=4)),
    when=st.floats(min_value=0, max_value=4e9), status=st.integers(100, 599), key=maybe, dataset=maybe,
    user_agent=text, cache=maybe, keys=st.none() | st.lists(text, max_size=3), denied=st.none() | st.integers(0, 9),
    latency=st.floats(min_value=0, max_value=1e6), sent=st.none() | st.integers(0, 10**12),
)
def test_the_audit_encoder_matches_the_generic_encoding(principal: Principal, when: float, status: int,
                                                        key: str | None, dataset: str | None, user_agent: str,
                                                        cache: str | None, keys: list[str] | None,
                                                        denied: int | None, latency: float, sent: int | None) -> None:
    record = AuditRecord(time=when, request_id="r-1", action="redirect", dataset=dataset, key=key,
                         decision="allow", rule="r", reason=None, status=status, client_ip="10.0.0.1",
                         user_agent=user_agent, principal=principal, cache=cache, latency_ms=latency,
                         keys=keys, denied=denied, bytes=sent)
    assert encode_record(record) == _reference(record)
    assert encode_record(record) == encode_record(record)  # the cached principal JSON is reused unchanged


# -- header names in an unexpected shape ------------------------------------------------------------

def test_header_names_in_an_unexpected_shape_are_read_the_same(tmp_path: Path) -> None:
    """ASGI servers send lower-case header names; one that did not must still have its
    X-Forwarded-For read, and a request without one must not be confused with it."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.png").write_bytes(b"png")
    config = tmp_path / "policy.yaml"
    config.write_text(f"""
version: 1
audit: {{sinks: [{{kind: file, path: "{tmp_path / 'audit.jsonl'}"}}]}}
datasets:
  d:
    backend: {{kind: local, path: "{root}"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
""")
    app = create_app(Settings(config=config, signing_key="k" * 32, trusted_proxies=["127.0.0.1/32"]),
                     registry=CollectorRegistry())

    async def status(headers: list[tuple[bytes, bytes]]) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        path = "/v1/datasets/d/objects/a.png"
        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                   "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                   "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000),
                   "server": ("127.0.0.1", 8080)}, receive, send)
        return int(sent[0]["status"])

    async def run() -> list[int]:
        try:
            host = (b"host", b"127.0.0.1:8080")
            return [await status([host, (b"X-Forwarded-For", b"10.0.0.1")]) for _ in range(2)] + [await status([host])]
        finally:
            await app.runtime.aclose()

    # From the office (through the trusted proxy): allowed, twice. Straight from the proxy's own
    # address: refused.
    assert asyncio.run(run()) == [302, 302, 401]
