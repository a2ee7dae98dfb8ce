"""Signed-URL caches. Every entry has an explicit lifetime: the URL's own remaining life."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.models import SignedUrl


class UrlCache(Protocol):
    def get(self, key: str, *, now: float, min_remaining: float) -> SignedUrl | None:
        """A cached URL with at least ``min_remaining`` seconds of life left, else None."""
        ...

    def put(self, key: str, url: SignedUrl) -> None: ...


class SharedUrlCache(Protocol):
    """The second level, shared by replicas (Redis). Raises ``RedisDown`` when it cannot answer."""

    async def get_many(self, keys: Sequence[str], *, now: float, min_remaining: float) -> list[SignedUrl | None]: ...

    async def put_many(self, items: Sequence[tuple[str, SignedUrl]], *, now: float, min_remaining: float) -> None: ...
