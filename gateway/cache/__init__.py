"""Signed-URL caches. Every entry has an explicit lifetime: the URL's own remaining life."""

from __future__ import annotations

from typing import Protocol

from gateway.models import SignedUrl


class UrlCache(Protocol):
    def get(self, key: str, *, now: float, min_remaining: float) -> SignedUrl | None:
        """A cached URL with at least ``min_remaining`` seconds of life left, else None."""
        ...

    def put(self, key: str, url: SignedUrl) -> None: ...
