"""Rate limits per principal and per client IP, as each dataset configures (GCRA, shared through
Redis when it is configured). Spent before any signing, for every key of a batch."""

from __future__ import annotations

import hashlib
import math

from gateway.errors import GatewayError, PayloadTooLarge, RateLimited
from gateway.metrics import Metrics
from gateway.models import IPAddress, Principal
from gateway.policy import CompiledDataset
from gateway.ratelimit import RateLimiter


class RateLimits:
    def __init__(self, limiter: RateLimiter | None, metrics: Metrics) -> None:
        self.limiter = limiter
        self.metrics = metrics

    async def spend(self, ds: CompiledDataset, client_ip: IPAddress, principal: Principal,
                    cost: int) -> GatewayError | None:
        """Spend ``cost`` for the caller; the refusal to raise (after auditing it) when over a limit.
        A batch that could never fit is refused at once with 413 (there is no Retry-After to obey)."""
        limit = ds.config.rate_limit
        if limit is None or self.limiter is None:
            return None
        if cost > limit.requests:
            return PayloadTooLarge(f"this batch has {cost} keys, more than the dataset's rate limit allows in "
                                  f"{limit.per:g}s ({limit.requests}); split it")
        subjects = [f"{ds.name}:ip:{client_ip}"]
        if not principal.anonymous:
            who = f"{principal.method}|{principal.issuer}|{principal.subject}"
            # Hashed: Redis keys should not carry emails or subjects.
            subjects.append(f"{ds.name}:p:{hashlib.sha256(who.encode()).hexdigest()[:20]}")
        for subject in subjects:
            verdict = await self.limiter.hit(subject, cost=cost, limit=limit.requests, period=limit.per)
            if not verdict.allowed:
                self.metrics.rate_limited.inc()
                return RateLimited(f"over the limit of {limit.requests} requests per {limit.per:g}s; retry later",
                                   retry_after=max(1, math.ceil(verdict.retry_after)))
        return None
