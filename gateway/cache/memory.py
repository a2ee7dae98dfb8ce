"""Bounded in-process LRU of signed URLs."""

from __future__ import annotations

from collections import OrderedDict

from gateway.models import SignedUrl

# An entry is a plain tuple of a str and two floats, not the SignedUrl itself: the collector stops
# tracking such tuples, so a full cache adds nothing to a full collection's pause. With 100,000
# SignedUrl objects every collection walked them all (150 ms pauses on the benchmark's users,
# cold and vendor rows, once the cache had filled); the SignedUrl is rebuilt on a hit instead.
_Entry = tuple[str, float, float]


class MemoryUrlCache:
    """An LRU bounded by entry count. An entry is served only while enough of its life remains,
    and is dropped as soon as it is found to be too old."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, *, now: float, min_remaining: float) -> SignedUrl | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] - now < min_remaining:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return SignedUrl(*entry)

    def put(self, key: str, url: SignedUrl) -> None:
        self._entries[key] = (url.url, url.expires_at, url.signed_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
