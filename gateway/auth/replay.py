"""An in-process ReplayStore: bounded, with a TTL per nonce.

It protects one replica only. With several replicas, use the Redis-backed store, so that a
signature seen by one replica is refused by all of them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class MemoryReplayStore:
    """Remembers each nonce until its TTL ends, holding at most ``max_entries`` of them.

    When full, the oldest nonce is forgotten first (it is the one closest to the end of its
    window) and ``evictions`` counts it, so that a flood that weakens replay protection is
    visible. ``first_seen`` never awaits, so it is atomic within one event loop.
    """

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.evictions = 0
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        self._purge(self._clock())
        return len(self._expiry)

    async def first_seen(self, nonce: str, ttl: float) -> bool:
        now = self._clock()
        self._purge(now)
        expires = self._expiry.get(nonce)
        if expires is not None and expires > now:
            return False
        self._expiry.pop(nonce, None)
        self._expiry[nonce] = now + max(ttl, 0.0)
        while len(self._expiry) > self.max_entries:
            self._expiry.popitem(last=False)
            self.evictions += 1
        return True

    def _purge(self, now: float) -> None:
        # Insertion order is close to expiry order; stop at the first live entry (amortized O(1)).
        while self._expiry:
            nonce, expires = next(iter(self._expiry.items()))
            if expires > now:
                break
            del self._expiry[nonce]
