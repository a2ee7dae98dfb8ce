"""Signing with its cache levels: the in-process LRU, then Redis where signing costs more than a
round trip, then the backend. URLs are bucketed in time, so equal inputs give equal URLs on every
replica, and a cached URL is never handed out with less than its minimum remaining life."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from gateway.backends import Backend
from gateway.cache import SharedUrlCache, UrlCache
from gateway.metrics import Metrics
from gateway.models import SignedUrl
from gateway.policy import CompiledDataset
from gateway.redis.client import RedisDown
from gateway.service.state import State


class UrlSigner:
    """The signed URL for a key: its lifetime lives here, and nowhere else.

    A URL is signed at the start of the current time bucket (``url_ttl x (1 - min_remaining)``
    wide) and expires ``url_ttl`` later; cache keys include the policy version and the bucket, so a
    reload or a new bucket never serves an old URL.
    """

    def __init__(self, *, cache: UrlCache, shared_cache: SharedUrlCache | None, metrics: Metrics,
                 clock: Callable[[], float]) -> None:
        self.cache = cache
        self.shared_cache = shared_cache
        self.metrics = metrics
        self.clock = clock
        # Bound once: a labels() lookup per request costs more than the cache hit it counts.
        self._tally = metrics.tally
        self._memory_hit = metrics.cache_requests.labels("memory", "hit")
        self._memory_miss = metrics.cache_requests.labels("memory", "miss")
        self._sign_seconds = functools.lru_cache(maxsize=None)(metrics.sign_seconds.labels)
        self._prefixes: dict[tuple[str, str, int], str] = {}

    def _bucket(self, state: State, ds: CompiledDataset) -> tuple[float, int, int, float, str]:
        """(now, ttl, signed_at, minimum life, cache-key prefix) for the current time bucket."""
        now = self.clock()
        width = ds.bucket
        signed_at = int(now // width * width)
        key = (state.version, ds.name, signed_at)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) > 256:
                self._prefixes.clear()  # old buckets and versions: a few per dataset
            prefix = self._prefixes[key] = f"{state.version}\x00{ds.name}\x00{signed_at}\x00{ds.ttl}\x00"
        return now, ds.ttl, signed_at, ds.min_life, prefix

    def cached(self, state: State, ds: CompiledDataset, key: str) -> SignedUrl | None:
        """The in-process level alone, without a coroutine: the request path's common case."""
        now, _, _, min_life, prefix = self._bucket(state, ds)
        url = self.cache.get(prefix + key, now=now, min_remaining=min_life)
        if url is not None:
            self._tally.inc(self._memory_hit)
        return url

    async def one(self, state: State, ds: CompiledDataset, key: str) -> SignedUrl:
        """One key that :meth:`cached` did not have: Redis where it pays, then the backend."""
        backend = state.backends[ds.name]
        if backend.shared_cache:
            (url,), _ = await self.many(state, ds, [key], memory_checked=True)
            return url
        _, ttl, signed_at, _, prefix = self._bucket(state, ds)
        self._tally.inc(self._memory_miss)
        (url,) = await self._backend_sign(backend, [key], signed_at, ttl)
        self.cache.put(prefix + key, url)
        return url

    async def _backend_sign(self, backend: Backend, keys: list[str], signed_at: int, ttl: int) -> list[SignedUrl]:
        """The backend's signature, timed, and its failures counted per backend kind."""
        t0 = time.perf_counter()
        try:
            urls = await backend.sign(keys, signed_at=signed_at, expires_in=ttl)
        except Exception:
            self.metrics.sign_errors.labels(backend.kind).inc()
            raise
        self._tally.observe(self._sign_seconds(backend.kind), time.perf_counter() - t0)
        return urls

    async def many(self, state: State, ds: CompiledDataset, keys: list[str], *,
                   memory_checked: bool = False) -> tuple[list[SignedUrl], int]:
        """Many keys, in order, and how many came from a cache."""
        backend: Backend = state.backends[ds.name]
        now, ttl, signed_at, min_life, prefix = self._bucket(state, ds)
        urls: list[SignedUrl | None]
        if memory_checked:
            urls = [None] * len(keys)
        else:
            urls = [self.cache.get(prefix + k, now=now, min_remaining=min_life) for k in keys]
        missing = [i for i, url in enumerate(urls) if url is None]
        hits = len(keys) - len(missing)
        self._tally.inc(self._memory_hit, hits)
        if missing:
            self._tally.inc(self._memory_miss, len(missing))
        # Redis only where signing costs more than a round trip (RSA, signBlob); see docs/cache.md.
        shared = self.shared_cache if backend.shared_cache else None
        if missing and shared is not None:
            try:
                found = await shared.get_many([prefix + keys[i] for i in missing], now=now, min_remaining=min_life)
            except RedisDown:
                self.metrics.cache_requests.labels("redis", "error").inc(len(missing))
                self.metrics.redis_fallbacks.labels("cache").inc()
            else:
                still = []
                for i, url in zip(missing, found, strict=True):
                    if url is None:
                        still.append(i)
                    else:
                        urls[i] = url
                        self.cache.put(prefix + keys[i], url)
                self.metrics.cache_requests.labels("redis", "hit").inc(len(missing) - len(still))
                self.metrics.cache_requests.labels("redis", "miss").inc(len(still))
                hits += len(missing) - len(still)
                missing = still
        if missing:
            fresh = await self._backend_sign(backend, [keys[i] for i in missing], signed_at, ttl)
            for i, url in zip(missing, fresh, strict=True):
                urls[i] = url
                self.cache.put(prefix + keys[i], url)
            if shared is not None:
                items = [(prefix + keys[i], url) for i, url in zip(missing, fresh, strict=True)]
                try:
                    await shared.put_many(items, now=now, min_remaining=min_life)
                except RedisDown:
                    self.metrics.redis_fallbacks.labels("cache").inc()
        return [u for u in urls if u is not None], hits

    def max_age(self, ds: CompiledDataset, url: SignedUrl) -> int:
        """Browsers may keep the redirect until the time bucket ends, never past the URL's life."""
        remaining = url.expires_at - self.clock()
        return max(0, int(min(remaining - (url.expires_at - url.signed_at) * ds.min_remaining, remaining - 1)))
