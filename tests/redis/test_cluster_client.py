"""SharedRedis on a real Cluster: where commands go, and the hash-tagged keys of scripts."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from gateway.auth.replay_redis import RedisReplayStore
from gateway.cache.redis import RedisUrlCache
from gateway.models import SignedUrl
from gateway.ratelimit.redis import RedisRateLimiter
from gateway.redis.client import RedisOptions, SharedRedis
from tests.redis.cluster_setup import ClusterSetup
from tests.redis.test_contracts import MustNotFallBack


def stats(setup: ClusterSetup) -> dict[int, tuple[str, dict[str, object]]]:
    """Per node: its role and INFO commandstats + errorstats."""
    found = {}
    for node in setup.nodes:
        with node.client() as r:
            info = r.info("all")
            found[node.port] = (str(info["role"]), info)
    return found


def replica_reads(setup: ClusterSetup) -> int:
    replicas = [info for role, info in stats(setup).values() if role == "slave"]
    return sum(int(i.get("cmdstat_get", {}).get("calls", 0)) for i in replicas)  # type: ignore[union-attr]


@pytest.mark.parametrize("read_from_replicas", [True, False])
def test_only_cached_urls_are_read_from_replicas(cluster_setup: ClusterSetup, read_from_replicas: bool) -> None:
    for node in cluster_setup.nodes:
        with node.client() as r:
            r.config_resetstat()

    async def body() -> None:
        shared = SharedRedis(cluster_setup.url, prefix=f"route-{secrets.token_hex(3)}:",
                             options=RedisOptions(read_from_replicas=read_from_replicas))
        await shared.start()
        try:
            readiness = await shared.readiness()  # INFO from every primary, combined
            assert readiness["server"].startswith("redis 7") and readiness["replicas"] == 1
            assert readiness["maxmemory_policy"] == "noeviction" and readiness["evicts_gateway_keys"] is False
            cache = RedisUrlCache(shared)
            now = time.time()
            urls = [(f"k{i}", SignedUrl(f"https://s.example/k{i}", now + 600, now)) for i in range(30)]
            await cache.put_many(urls, now=now, min_remaining=60)
            await asyncio.sleep(0.2)  # replication
            # Reads go round the primary and its replica; on a loaded machine a replica that is still
            # catching up is skipped for a while, so keep reading (up to 5 s) until one was read from.
            deadline = time.monotonic() + (5.0 if read_from_replicas else 0.0)
            for _ in range(10):
                await cache.get_many([k for k, _ in urls], now=now, min_remaining=60)
            while time.monotonic() < deadline and not replica_reads(cluster_setup):
                await cache.get_many([k for k, _ in urls], now=now, min_remaining=60)
                await asyncio.sleep(0.05)
            replay = RedisReplayStore(shared, MustNotFallBack(), fail_closed=True)
            limiter = RedisRateLimiter(shared, MustNotFallBack())
            for i in range(30):
                assert await replay.first_seen(f"n{i}", 30)
                assert (await limiter.hit(f"p{i}", cost=1, limit=10, period=60)).allowed
        finally:
            await shared.aclose()

    asyncio.run(body())
    after = stats(cluster_setup)
    replicas = [info for role, info in after.values() if role == "slave"]
    primaries = [info for role, info in after.values() if role == "master"]
    assert (replica_reads(cluster_setup) > 0) is read_from_replicas
    for info in replicas:
        # Nonces and rate limits are never sent to a replica: no script runs there, and no write was
        # refused there (a READONLY replica answers a write with MOVED).
        assert "cmdstat_evalsha" not in info and "cmdstat_eval" not in info
        assert "errorstat_MOVED" not in info and "errorstat_READONLY" not in info
    assert sum(int(i.get("cmdstat_evalsha", {}).get("calls", 0)) + int(i.get("cmdstat_eval", {}).get("calls", 0))  # type: ignore[union-attr]
               for i in primaries) >= 30
    assert sum(int(i.get("cmdstat_wait", {}).get("calls", 0)) for i in primaries) >= 30  # type: ignore[union-attr]


def test_script_keys_are_hash_tagged_into_one_slot(cluster_setup: ClusterSetup) -> None:
    """Every key one script touches must share a slot; a tag keeps it so for any principal name,
    braces included, and the limiter works across the whole key space."""
    from redis.crc import key_slot

    async def body() -> None:
        shared = SharedRedis(cluster_setup.url, prefix="tag:")
        await shared.start()
        try:
            limiter = RedisRateLimiter(shared, MustNotFallBack())
            for ident in ["alice@example.com", "a{b}c", "{x}", "}{", "", "vendor:k1", "é/日本"]:
                key = shared.tagged("rl", ident)
                assert key.startswith("tag:rl:{")
                related = [key + ":a", key + ":b"]
                assert len({key_slot(k.encode()) for k in [key, *related]}) == 1, ident
                assert (await limiter.hit(ident, cost=1, limit=2, period=60)).allowed
        finally:
            await shared.aclose()

    asyncio.run(body())


def test_a_configuration_endpoint_stays_the_only_startup_node(cluster_setup: ClusterSetup) -> None:
    """Behind one DNS name (ElastiCache's configuration endpoint, Memorystore's discovery endpoint),
    topology refreshes must go back through that name: redis-py's default replaces the startup nodes
    with the node addresses it discovered, which are gone after a node replacement (redis-py #3310)."""
    endpoint = f"127.0.0.1:{cluster_setup.nodes[0].port}"

    async def body() -> None:
        shared = SharedRedis(f"redis+cluster://{endpoint}/")
        await shared.start()
        try:
            cluster = shared.client
            assert len(cluster.get_nodes()) == 6  # type: ignore[union-attr]
            assert list(cluster.nodes_manager.startup_nodes) == [endpoint]  # type: ignore[union-attr]
            await cluster.nodes_manager.initialize()  # type: ignore[union-attr]  # a refresh
            assert list(cluster.nodes_manager.startup_nodes) == [endpoint]  # type: ignore[union-attr]
        finally:
            await shared.aclose()

    asyncio.run(body())
