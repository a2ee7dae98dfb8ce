"""One contract suite per store, run against the in-process store and every Redis topology: the
only place these contracts are tested (what only one implementation does is tested next to it:
tests/auth/test_replay.py, tests/core/test_cache.py, and the Redis-only tests below).

The Redis kinds are real, private servers: one redis-server, Sentinel (one master, one replica,
three sentinels) and Cluster (three primaries with replicas), on Debian's Redis and on Valkey. The
Redis stores are built with fallbacks that fail the test, so a Redis store can never pass by
quietly falling back to memory.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from gateway.auth.replay import MemoryReplayStore
from gateway.auth.replay_redis import RedisReplayStore
from gateway.cache.memory import MemoryUrlCache
from gateway.cache.redis import RedisUrlCache
from gateway.models import SignedUrl
from gateway.ratelimit import RateLimiter, Verdict
from gateway.ratelimit.memory import MemoryRateLimiter
from gateway.ratelimit.redis import RedisRateLimiter
from gateway.redis.client import SharedRedis
from tests.redis.conftest import REDIS_KINDS, topology_for


class ReplayStore(Protocol):
    async def first_seen(self, nonce: str, ttl: float) -> bool: ...


class UrlCachePair(Protocol):
    """The level under test, seen through the shared (batch) interface."""

    async def get_many(self, keys: Sequence[str], *, now: float, min_remaining: float) -> list[SignedUrl | None]: ...

    async def put_many(self, items: Sequence[tuple[str, SignedUrl]], *, now: float, min_remaining: float) -> None: ...


class MemoryLevel:
    """L1 (get/put, one key at a time) behind the batch interface, so one suite tests both levels."""

    def __init__(self) -> None:
        self.l1 = MemoryUrlCache(max_entries=1000)

    async def get_many(self, keys: Sequence[str], *, now: float, min_remaining: float) -> list[SignedUrl | None]:
        return [self.l1.get(key, now=now, min_remaining=min_remaining) for key in keys]

    async def put_many(self, items: Sequence[tuple[str, SignedUrl]], *, now: float, min_remaining: float) -> None:
        for key, url in items:
            self.l1.put(key, url)


class MustNotFallBack:
    """The fallback of a Redis store under test: reaching it means Redis was not what answered."""

    async def first_seen(self, nonce: str, ttl: float) -> bool:
        raise AssertionError("the Redis replay store fell back to memory")

    async def hit(self, key: str, *, cost: int, limit: int, period: float) -> Verdict:
        raise AssertionError("the Redis rate limiter fell back to memory")


@dataclass
class Stores:
    """Builds each store of one kind; Redis stores get a prefix of their own per test."""

    kind: str
    url: str = ""
    prefix: str = field(default_factory=lambda: f"contract-{secrets.token_hex(4)}:")
    errors: int = 0

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[SharedRedis]:
        def count() -> None:
            self.errors += 1

        shared = SharedRedis(self.url, prefix=self.prefix, on_error=count)
        await shared.start()  # as the gateway does: connections ready, Cluster slots known
        try:
            yield shared
        finally:
            await shared.aclose()
        assert self.errors == 0, "Redis calls failed during a contract test"

    @asynccontextmanager
    async def replay(self) -> AsyncIterator[ReplayStore]:
        if self.kind == "memory":
            yield MemoryReplayStore()
            return
        async with self.shared() as shared:
            yield RedisReplayStore(shared, MustNotFallBack())

    @asynccontextmanager
    async def limiter(self) -> AsyncIterator[RateLimiter]:
        if self.kind == "memory":
            yield MemoryRateLimiter()
            return
        async with self.shared() as shared:
            yield RedisRateLimiter(shared, MustNotFallBack())

    @asynccontextmanager
    async def cache(self) -> AsyncIterator[UrlCachePair]:
        if self.kind == "memory":
            yield MemoryLevel()
            return
        async with self.shared() as shared:
            yield RedisUrlCache(shared)


def _redis_stores(request: pytest.FixtureRequest, kind: str) -> Stores:
    setup = topology_for(kind, request.getfixturevalue("redis_topology"),
                         request.getfixturevalue("tmp_path_factory"))
    wait = getattr(setup, "wait_healthy", None)
    if wait is not None:
        wait()  # a failover test may have just swapped roles
    return Stores(kind, setup.url)  # type: ignore[attr-defined]


@pytest.fixture(params=["memory", *REDIS_KINDS])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        return Stores("memory")
    return _redis_stores(request, request.param)


@pytest.fixture(params=REDIS_KINDS)
def redis_stores(request: pytest.FixtureRequest) -> Stores:
    return _redis_stores(request, request.param)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


# -- replay store ---------------------------------------------------------------------------------------

def test_replay_a_nonce_is_first_seen_once(stores: Stores) -> None:
    async def body() -> None:
        async with stores.replay() as store:
            assert await store.first_seen("n-1", 30) is True
            assert await store.first_seen("n-1", 30) is False
            assert await store.first_seen("n-1", 30) is False
            assert await store.first_seen("n-2", 30) is True  # another nonce is independent

    run(body)


def test_replay_concurrent_first_seen_admits_exactly_one(stores: Stores) -> None:
    async def body() -> None:
        async with stores.replay() as store:
            results = await asyncio.gather(*(store.first_seen("racy", 30) for _ in range(25)))
            assert results.count(True) == 1

    run(body)


def test_replay_a_nonce_is_forgotten_after_its_ttl(stores: Stores) -> None:
    async def body() -> None:
        async with stores.replay() as store:
            assert await store.first_seen("short", 0.6) is True
            await asyncio.sleep(0.3)
            assert await store.first_seen("short", 0.6) is False  # half-way: remembered, and the TTL not renewed
            await asyncio.sleep(0.45)
            assert await store.first_seen("short", 0.6) is True
            assert await store.first_seen("short", 0.6) is False

    run(body)


def test_redis_replay_nonce_expires_in_redis_with_its_ttl(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as shared:
            store = RedisReplayStore(shared, MustNotFallBack())
            assert await store.first_seen("ttl", 30) is True
            pttl = await shared.client.pttl(shared.key("nonce", "ttl"))
            assert 29_000 < pttl <= 30_000

    run(body)


def test_redis_replay_is_shared_by_replicas(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as one, redis_stores.shared() as two:
            first = RedisReplayStore(one, MustNotFallBack())
            second = RedisReplayStore(two, MustNotFallBack())
            assert await first.first_seen("seen-by-one", 30) is True
            assert await second.first_seen("seen-by-one", 30) is False

    run(body)


# -- rate limiter ---------------------------------------------------------------------------------------

def test_limiter_the_limit_holds(stores: Stores) -> None:
    async def body() -> None:
        async with stores.limiter() as limiter:
            verdicts = [await limiter.hit("k", cost=1, limit=5, period=60) for _ in range(7)]
            assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 2

    run(body)


def test_limiter_a_refused_request_spends_nothing(stores: Stores) -> None:
    async def body() -> None:
        async with stores.limiter() as limiter:
            assert (await limiter.hit("k", cost=3, limit=4, period=60)).allowed
            assert not (await limiter.hit("k", cost=2, limit=4, period=60)).allowed
            assert not (await limiter.hit("k", cost=2, limit=4, period=60)).allowed
            assert (await limiter.hit("k", cost=1, limit=4, period=60)).allowed  # the refusals spent nothing
            assert not (await limiter.hit("k", cost=1, limit=4, period=60)).allowed

    run(body)


def test_limiter_retry_after_is_the_time_until_one_request_fits(stores: Stores) -> None:
    async def body() -> None:
        async with stores.limiter() as limiter:
            for _ in range(5):
                assert (await limiter.hit("k", cost=1, limit=5, period=60)).allowed
            refused = await limiter.hit("k", cost=1, limit=5, period=60)
            assert not refused.allowed
            assert 11.0 < refused.retry_after <= 12.0  # one slot (60 s / 5) frees in about 12 s
            assert (await limiter.hit("k", cost=1, limit=5, period=60)).allowed is False

    run(body)


def test_limiter_waiting_retry_after_is_enough(stores: Stores) -> None:
    async def body() -> None:
        async with stores.limiter() as limiter:
            for _ in range(4):
                assert (await limiter.hit("k", cost=1, limit=4, period=1.2)).allowed
            refused = await limiter.hit("k", cost=1, limit=4, period=1.2)
            assert not refused.allowed
            assert 0.2 < refused.retry_after <= 0.3  # one slot is 1.2 s / 4
            await asyncio.sleep(refused.retry_after + 0.05)
            assert (await limiter.hit("k", cost=1, limit=4, period=1.2)).allowed
            assert not (await limiter.hit("k", cost=1, limit=4, period=1.2)).allowed  # only one slot freed

    run(body)


def test_limiter_a_batch_costs_every_key(stores: Stores) -> None:
    async def body() -> None:
        async with stores.limiter() as limiter:
            assert (await limiter.hit("batch", cost=4, limit=5, period=60)).allowed
            assert not (await limiter.hit("batch", cost=2, limit=5, period=60)).allowed
            assert (await limiter.hit("batch", cost=1, limit=5, period=60)).allowed
            assert (await limiter.hit("whole", cost=5, limit=5, period=60)).allowed
            assert not (await limiter.hit("whole", cost=1, limit=5, period=60)).allowed
            assert not (await limiter.hit("too-big", cost=6, limit=5, period=60)).allowed

    run(body)


def test_limiter_keys_are_independent(stores: Stores) -> None:
    async def body() -> None:
        async with stores.limiter() as limiter:
            for _ in range(3):
                await limiter.hit("a", cost=1, limit=3, period=60)
            assert not (await limiter.hit("a", cost=1, limit=3, period=60)).allowed
            assert [(await limiter.hit("b", cost=1, limit=3, period=60)).allowed for _ in range(4)] == [
                True, True, True, False]

    run(body)


def test_redis_limiter_keys_expire_when_idle(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as shared:
            limiter = RedisRateLimiter(shared, MustNotFallBack())
            assert (await limiter.hit("idle", cost=1, limit=5, period=60)).allowed
            pttl = await shared.client.pttl(shared.tagged("rl", "idle"))
            assert 11_000 < pttl <= 12_001  # the bucket is full again (and forgotten) after 60 s / 5

    run(body)


def test_redis_limiter_is_shared_by_replicas(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as one, redis_stores.shared() as two:
            limiters = [RedisRateLimiter(one, MustNotFallBack()), RedisRateLimiter(two, MustNotFallBack())]
            verdicts = [await limiters[i % 2].hit("both", cost=1, limit=4, period=60) for i in range(6)]
            assert [v.allowed for v in verdicts] == [True] * 4 + [False] * 2

    run(body)


# -- signed-URL cache -----------------------------------------------------------------------------------

T0 = 1_700_000_000.0


def signed(name: str, *, signed_at: float = T0, life: float = 300.0) -> SignedUrl:
    return SignedUrl(f"https://storage.example.test/{name}?X-Signature={secrets.token_hex(8)}",
                     signed_at + life, signed_at)


def test_cache_returns_what_was_put_in_order(stores: Stores) -> None:
    async def body() -> None:
        async with stores.cache() as cache:
            a, c = signed("a"), signed("c")
            await cache.put_many([("a", a), ("c", c)], now=T0, min_remaining=150)
            assert await cache.get_many(["a", "b", "c"], now=T0 + 1, min_remaining=150) == [a, None, c]

    run(body)


@pytest.mark.parametrize("age", [0.0, 100.0, 149.0, 149.999, 150.0, 150.001, 151.0, 299.0, 301.0])
def test_cache_never_serves_less_than_min_remaining(stores: Stores, age: float) -> None:
    async def body() -> None:
        async with stores.cache() as cache:
            url = signed("edge")  # 300 s of life; 150 s must remain
            await cache.put_many([("edge", url)], now=T0, min_remaining=150)
            (got,) = await cache.get_many(["edge"], now=T0 + age, min_remaining=150)
            if url.expires_at - (T0 + age) >= 150:
                assert got == url
            else:
                assert got is None

    run(body)


def test_cache_a_put_replaces_the_entry(stores: Stores) -> None:
    async def body() -> None:
        async with stores.cache() as cache:
            older, newer = signed("a"), signed("a", signed_at=T0 + 60)
            await cache.put_many([("a", older)], now=T0, min_remaining=150)
            await cache.put_many([("a", newer)], now=T0 + 60, min_remaining=150)
            assert await cache.get_many(["a"], now=T0 + 61, min_remaining=150) == [newer]
            # Past the older URL's minimum life, the newer one is still served.
            assert await cache.get_many(["a"], now=T0 + 200, min_remaining=150) == [newer]

    run(body)


def test_cache_a_url_too_old_when_put_is_never_served(stores: Stores) -> None:
    async def body() -> None:
        async with stores.cache() as cache:
            url = signed("old")
            await cache.put_many([("old", url)], now=T0 + 200, min_remaining=150)
            assert await cache.get_many(["old"], now=T0 + 200, min_remaining=150) == [None]

    run(body)


def test_redis_cache_entry_ttl_is_life_left_minus_min_remaining(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as shared:
            cache = RedisUrlCache(shared)
            now = time.time()
            url = SignedUrl("https://storage.example.test/ttl", now + 240.0, now - 60.0)
            await cache.put_many([("ttl", url)], now=now, min_remaining=150)
            pttl = await shared.client.pttl(shared.key("url", "ttl"))
            assert 89_000 < pttl <= 90_000  # 240 s left - 150 s that must remain

    run(body)


def test_redis_cache_entry_is_gone_when_its_ttl_ends(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as shared:
            cache = RedisUrlCache(shared)
            now = time.time()
            url = SignedUrl("https://storage.example.test/brief", now + 150.6, now - 149.4)
            await cache.put_many([("brief", url)], now=now, min_remaining=150)
            assert await cache.get_many(["brief"], now=now, min_remaining=150) == [url]
            await asyncio.sleep(0.8)
            # Asked with the old `now`, the read-side check alone would still serve it: Redis expired it.
            assert await cache.get_many(["brief"], now=now, min_remaining=150) == [None]

    run(body)


def test_redis_cache_is_shared_by_replicas(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as one, redis_stores.shared() as two:
            url = signed("shared")
            await RedisUrlCache(one).put_many([("shared", url)], now=T0, min_remaining=150)
            assert await RedisUrlCache(two).get_many(["shared"], now=T0 + 10, min_remaining=150) == [url]

    run(body)


def test_redis_cache_a_damaged_entry_is_a_miss(redis_stores: Stores) -> None:
    async def body() -> None:
        async with redis_stores.shared() as shared:
            await shared.client.set(shared.key("url", "junk"), b"not|a-number|x", px=60_000)
            await shared.client.set(shared.key("url", "short"), b"no separators", px=60_000)
            got = await RedisUrlCache(shared).get_many(["junk", "short"], now=T0, min_remaining=150)
            assert got == [None, None]

    run(body)


# -- audit stream ---------------------------------------------------------------------------------------

def test_redis_stream_sink_appends_in_order_and_stays_bounded(redis_stores: Stores) -> None:
    """The audit writer's blocking client, made from the shared Redis's settings, on every kind."""
    from gateway.audit.redis_stream import RedisStreamSink

    async def body() -> None:
        async with redis_stores.shared() as shared:
            stream = shared.key("audit")
            sink = RedisStreamSink(shared, stream, maxlen=50)
            try:
                lines = [f'{{"seq": {i}}}\n'.encode() for i in range(300)]
                await asyncio.to_thread(sink.write, lines[:150])
                await asyncio.to_thread(sink.write, lines[150:])
            finally:
                sink.close()
            entries = await shared.client.xrange(stream)
            assert entries is not None
            records = [fields[b"record"] for _, fields in entries if fields is not None]
            assert 50 <= len(records) < 300  # MAXLEN ~ trims in whole nodes, but bounded
            assert records == [line.rstrip(b"\n") for line in lines[-len(records):]]  # the newest, in order

    run(body)
