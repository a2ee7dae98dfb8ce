"""The circuit breaker in front of Redis: a dead Redis costs one timeout now and then, not one per request."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    """Closed → open after ``threshold`` consecutive failures → after ``backoff`` one probe
    (half-open) → closed on success, open again on failure."""

    def __init__(self, threshold: int = 3, backoff: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.backoff = backoff
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0
        self._probing = False

    @property
    def closed(self) -> bool:
        return self.failures < self.threshold

    def allow(self) -> bool:
        if self.closed:
            return True
        if self.clock() < self.open_until or self._probing:
            return False
        self._probing = True  # half-open: exactly one request probes
        return True

    def success(self) -> None:
        self.failures = 0
        self._probing = False

    def abandon(self) -> None:
        """The call was cancelled before Redis answered: it proves nothing either way."""
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        self._probing = False
        if self.failures >= self.threshold:
            self.open_until = self.clock() + self.backoff

    def probe_now(self) -> None:
        """The failures are known to be over (Sentinel announced a new master): let the next call probe
        instead of waiting out the backoff."""
        if not self.closed:
            self.open_until = min(self.open_until, self.clock())
