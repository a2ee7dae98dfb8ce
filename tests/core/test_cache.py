"""The signed-URL cache contract, run against every in-process implementation."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

from gateway.cache import UrlCache
from gateway.cache.memory import MemoryUrlCache
from gateway.models import SignedUrl


def url(name: str, *, signed_at: float = 1000.0, lifetime: float = 100.0) -> SignedUrl:
    return SignedUrl(f"https://store.example/{name}?sig=x", signed_at + lifetime, signed_at)


@pytest.fixture(params=["memory"])
def make_cache(request: pytest.FixtureRequest) -> Callable[[int], UrlCache]:
    """Factory: ``make_cache(max_entries)``; one param per implementation of the contract."""

    def make(max_entries: int) -> UrlCache:
        if request.param == "memory":
            return MemoryUrlCache(max_entries)
        raise AssertionError(request.param)  # pragma: no cover

    return make


def test_a_fresh_entry_is_served(make_cache: Callable[[int], UrlCache]) -> None:
    cache = make_cache(10)
    entry = url("a")
    cache.put("a", entry)
    assert cache.get("a", now=1000.0, min_remaining=50) == entry
    assert cache.get("b", now=1000.0, min_remaining=50) is None


def test_never_serves_an_entry_with_less_than_min_remaining(make_cache: Callable[[int], UrlCache]) -> None:
    """Invariant 7, scanned over the whole life of an entry."""
    cache = make_cache(10)
    entry = url("a", signed_at=1000.0, lifetime=100.0)
    for tenth in range(0, 1101, 5):
        now = 1000.0 + tenth / 10
        cache.put("a", entry)
        served = cache.get("a", now=now, min_remaining=50.0)
        if served is not None:
            assert served.expires_at - now >= 50.0, now
        else:
            assert entry.expires_at - now < 50.0, now


def test_a_stale_entry_is_dropped_not_kept(make_cache: Callable[[int], UrlCache]) -> None:
    cache = make_cache(10)
    cache.put("a", url("a", signed_at=1000.0, lifetime=100.0))
    cache.put("b", url("b", signed_at=1000.0, lifetime=100.0))
    assert cache.get("a", now=1060.0, min_remaining=50.0) is None
    # Once found too old it is gone, even for a caller that would accept less life.
    assert cache.get("a", now=1060.0, min_remaining=1.0) is None
    assert cache.get("b", now=1060.0, min_remaining=1.0) is not None
    if isinstance(cache, MemoryUrlCache):
        assert len(cache) == 1


def test_the_boundary_is_inclusive(make_cache: Callable[[int], UrlCache]) -> None:
    cache = make_cache(10)
    cache.put("a", url("a", signed_at=1000.0, lifetime=100.0))
    assert cache.get("a", now=1050.0, min_remaining=50.0) is not None
    assert cache.get("a", now=1050.001, min_remaining=50.0) is None


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(make_cache: Callable[[int], UrlCache]) -> None:
    cache = make_cache(3)
    for name in "abc":
        cache.put(name, url(name))
    assert cache.get("a", now=1000.0, min_remaining=1) is not None  # a is now the most recent
    cache.put("d", url("d"))  # evicts b, the least recently used
    present = {name for name in "abcd" if cache.get(name, now=1000.0, min_remaining=1) is not None}
    assert present == {"a", "c", "d"}
    for i in range(100):
        cache.put(f"k{i}", url(f"k{i}"))
    if isinstance(cache, MemoryUrlCache):
        assert len(cache) == 3
    assert {f"k{i}" for i in range(100) if cache.get(f"k{i}", now=1000.0, min_remaining=1)} == {"k97", "k98", "k99"}


def test_put_replaces_an_entry(make_cache: Callable[[int], UrlCache]) -> None:
    cache = make_cache(2)
    cache.put("a", url("a", lifetime=10))
    newer = url("a", signed_at=1005.0, lifetime=100)
    cache.put("a", newer)
    assert cache.get("a", now=1010.0, min_remaining=50) == newer


def test_a_full_memory_cache_adds_nothing_to_a_garbage_collection() -> None:
    """Entries the cyclic collector does not track: 100,000 cached URLs must not lengthen every
    full collection (they did, by about 100 ms, while entries were SignedUrl objects)."""
    cache = MemoryUrlCache(1000)
    for i in range(1000):
        cache.put(f"k{i}", SignedUrl(f"https://s3.example/k{i}?X-Amz-Signature={i}", 2000.0 + i, 1000.0))
    gc.collect()  # tuples of atoms are untracked at the first collection that sees them
    tracked = [key for key, entry in cache._entries.items() if gc.is_tracked(entry)]
    assert tracked == []
    url = cache.get("k7", now=1500.0, min_remaining=0)
    assert url == SignedUrl("https://s3.example/k7?X-Amz-Signature=7", 2007.0, 1000.0)


def test_servers_collect_young_objects_less_often() -> None:
    from gateway.app import SERVER_GC_THRESHOLDS, freeze_startup_heap

    before = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_threshold() == SERVER_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert SERVER_GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
