"""Prometheus metrics. Labels take values from small fixed sets: never principals or keys."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """All of the gateway's metrics, registered on an injected registry (one per app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
            "gateway_cache_requests", "Signed-URL cache lookups.", ["level", "result"], registry=registry
        )
        self.sign_seconds = Histogram(
            "gateway_sign_seconds",
            "Time to sign one request's URLs, by backend kind.",
            ["backend"],
            buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=registry,
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
        self.policy_reloads = Counter(
            "gateway_policy_reloads", "Policy reload attempts.", ["result"], registry=registry
        )
        self.rate_limited = Counter("gateway_rate_limited", "Requests refused by a rate limit.", registry=registry)
        self.policy_info = Gauge(
            "gateway_policy_loaded_timestamp_seconds", "When the policy in force was loaded.", registry=registry,
            multiprocess_mode="max",
        )
