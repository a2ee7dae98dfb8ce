"""In-process GCRA limiter: one number (the theoretical arrival time) per key."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.ratelimit import Verdict


class MemoryRateLimiter:
    """GCRA: each request moves a key's theoretical arrival time (TAT) on by ``period/limit``; a
    request is refused when that would put the TAT more than ``period`` ahead of now. Bounded:
    the least recently used keys are forgotten first (a forgotten key starts with a full bucket)."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()

    async def hit(self, key: str, *, cost: int, limit: int, period: float) -> Verdict:
        now = self.clock()
        interval = period / limit
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + cost * interval
        if new_tat - now > period + 1e-9:
            return Verdict(False, retry_after=new_tat - period - now)
        self._tat[key] = new_tat
        self._tat.move_to_end(key)
        while len(self._tat) > self.max_keys:
            self._tat.popitem(last=False)
        return Verdict(True)
