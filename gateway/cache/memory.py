"""Bounded in-process LRU of signed URLs."""

from __future__ import annotations

from collections import OrderedDict

from gateway.models import SignedUrl


class MemoryUrlCache:
    """An LRU bounded by entry count. An entry is served only while enough of its life remains,
    and is dropped as soon as it is found to be too old."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, SignedUrl] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, *, now: float, min_remaining: float) -> SignedUrl | None:
        url = self._entries.get(key)
        if url is None:
            return None
        if url.expires_at - now < min_remaining:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return url

    def put(self, key: str, url: SignedUrl) -> None:
        self._entries[key] = url
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
