"""Rate limits per principal and per client IP, as GCRA (a smooth token bucket)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0


class RateLimiter(Protocol):
    async def hit(self, key: str, *, cost: int, limit: int, period: float) -> Verdict:
        """Spend ``cost`` of ``limit`` requests per ``period`` seconds for ``key``; refused spends nothing."""
        ...
