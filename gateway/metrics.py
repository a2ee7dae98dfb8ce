"""Prometheus metrics. Labels take values from small fixed sets: never principals or keys."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """All of the gateway's metrics, registered on an injected registry (one per app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.tally = Tally()
        self.requests = Counter(
            "gateway_requests", "HTTP requests by route and status.", ["route", "status"], registry=registry
        )
        self.request_seconds = Histogram(
            "gateway_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.decisions = Counter(
            "gateway_decisions", "Policy decisions.", ["decision", "reason"], registry=registry
        )
        self.auth_failures = Counter(
            "gateway_auth_failures", "Rejected credentials.", ["method", "reason"], registry=registry
        )
        self.cache_requests = Counter(
            "gateway_cache_requests",
            "Cache lookups: signed URLs (memory, redis), whole answers (grant), authentications (session).",
            ["level", "result"], registry=registry
        )
        self.sign_seconds = Histogram(
            "gateway_sign_seconds",
            "Time to sign one request's URLs, by backend kind.",
            ["backend"],
            buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry,
        )
        self.sign_errors = Counter(
            "gateway_sign_errors", "Signing calls that failed, by backend kind.", ["backend"], registry=registry
        )
        self.jwks_fetches = Counter(
            "gateway_jwks_fetches", "JWKS and discovery fetches.", ["issuer", "result"], registry=registry
        )
        self.redis_errors = Counter("gateway_redis_errors", "Redis errors and skips.", registry=registry)
        self.redis_fallbacks = Counter(
            "gateway_redis_fallbacks", "Times a Redis-backed store fell back to in-process.", ["use"], registry=registry
        )
        self.audit_dropped = Counter(
            "gateway_audit_dropped", "Audit records that could not be queued or written.", registry=registry
        )
        self.sign_ins = Counter(
            "gateway_sign_ins", "Browser sign-in callbacks, by result: ok, or a fixed reason.", ["result"],
            registry=registry
        )
        self.policy_reloads = Counter(
            "gateway_policy_reloads", "Policy reload attempts.", ["result"], registry=registry
        )
        self.upstream_connections = Counter(
            "gateway_upstream_connections", "Connections opened to storage by proxy delivery (pooled: few).",
            registry=registry,
        )
        self.rate_limited = Counter("gateway_rate_limited", "Requests refused by a rate limit.", registry=registry)
        self.policy_info = Gauge(
            "gateway_policy_loaded_timestamp_seconds", "When the policy in force was loaded.", registry=registry,
            multiprocess_mode="max",
        )
        self.policy_reload_failing = Gauge(
            "gateway_policy_reload_failing", "1 while the last policy file seen was refused (see /readyz).",
            registry=registry, multiprocess_mode="max",
        )


class Tally:
    """Hot-path counts kept as plain integers, added to the Prometheus metrics by :meth:`flush`.

    With several workers (multiprocess mode) every Prometheus ``inc`` takes a lock and writes an
    mmap'ed file: about 2 µs each, and a cached redirect made five of them (15% of its cost). Here
    an event costs a dict update; the app flushes once a second and before every scrape, so a
    scrape sees counts at most one second old. Event-loop thread only (not thread-safe).
    """

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}
        self._histograms: dict[Any, _PendingHistogram] = {}

    def inc(self, child: Any, amount: int = 1) -> None:
        """Count on a labelled Counter child (``counter.labels(...)``)."""
        counts = self.counts
        counts[child] = counts.get(child, 0) + amount

    def observe(self, child: Any, value: float) -> None:
        """Observe on a labelled Histogram child."""
        self.histogram(child).add(value)

    def histogram(self, child: Any) -> _PendingHistogram:
        """The pending observations of one Histogram child, for a caller that keeps it at hand."""
        pending = self._histograms.get(child)
        if pending is None:
            pending = self._histograms[child] = _PendingHistogram(child)
        return pending

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        for child, amount in counts.items():
            child.inc(amount)
        for pending in self._histograms.values():
            pending.flush()


class _PendingHistogram:
    """Bucket counts and a sum not yet added to one Histogram child.

    prometheus_client has no public "observe many": the flush adds to the child's bucket and sum
    values directly (attributes stable since 0.4, checked here and by the tests). Should they ever
    change, the values are replayed through ``observe`` instead, which is exact, only slower.
    """

    def __init__(self, child: Any) -> None:
        self.child = child
        bounds = getattr(child, "_upper_bounds", None)
        buckets = getattr(child, "_buckets", None)
        self.direct = (isinstance(bounds, list) and isinstance(buckets, list) and len(bounds) == len(buckets)
                       and hasattr(child, "_sum"))
        self.bounds: list[float] = list(bounds) if self.direct and bounds is not None else []
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.values: list[float] = []

    def add(self, value: float) -> None:
        if self.direct:
            index = bisect_left(self.bounds, value)  # observe() counts value <= bound
            if index < len(self.counts):
                self.counts[index] += 1
            self.total += value
        else:
            self.values.append(value)

    def flush(self) -> None:
        if not self.direct:
            values, self.values = self.values, []
            for value in values:
                self.child.observe(value)
            return
        counts, self.counts = self.counts, [0] * len(self.bounds)
        total, self.total = self.total, 0.0
        if not any(counts):
            return
        self.child._sum.inc(total)
        for bucket, count in zip(self.child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
