"""One shared Redis (one server, Sentinel or Cluster) with explicit timeouts and a circuit breaker.

The redis package's front door: the cache, the replay store, the rate limiter and the audit stream
each use it through their own implementation file, and each falls back to an in-process store
(counted) while the breaker is open. The composition root needs four calls: ``SharedRedis(url,
options=...)`` (built from the settings by ``gateway.app.redis``), ``await shared.start()``,
``await shared.readiness()`` and ``await shared.aclose()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio.cluster

from gateway.redis.batch import SetNxBatcher
from gateway.redis.breaker import Breaker
from gateway.redis.confirmed import ConfirmedWrites, NotReplicated
from gateway.redis.connect import AsyncClient, SyncClient, async_client, sync_client
from gateway.redis.options import TIMEOUT, RedisOptions
from gateway.redis.probe import ServerFacts, describe_error, read_facts
from gateway.redis.scripts import LuaScript
from gateway.redis.sentinel import SwitchMasterListener
from gateway.redis.url import parse_redis_url

__all__ = ["TIMEOUT", "Breaker", "LuaScript", "NotReplicated", "RedisDown", "RedisOptions", "SharedRedis", "SyncClient"]

log = logging.getLogger("gateway.redis")
T = TypeVar("T")
# What a failing Redis raises: redis-py's errors (its Cluster errors are not RedisErrors), socket
# errors, and the deadline.
FAILURES = (TimeoutError, redis.RedisError, redis.exceptions.RedisClusterException, OSError)
WARM_CONNECTIONS = 4  # opened at startup, so that the first burst of requests finds connections ready


class RedisDown(Exception):  # noqa: N818 - established name
    """Redis is unreachable or the breaker is open; the caller falls back."""


class SharedRedis:
    """Calls Redis through the breaker. Every failure and every skip calls ``on_error``."""

    def __init__(self, url: str, *, prefix: str = "gw:", on_error: Callable[[], None] = lambda: None,
                 breaker: Breaker | None = None, options: RedisOptions | None = None) -> None:
        self.target = parse_redis_url(url)
        self.options = options or RedisOptions()
        self.prefix = prefix
        self.credentials = self.options.credentials(self.target)
        self.client: AsyncClient
        self.client, self._sentinel = async_client(self.target, self.options, self.credentials)
        self.cluster = self.target.mode == "cluster"
        self.replica_acks = self.options.replica_acks(self.target)
        self.breaker = breaker or Breaker()
        self.timeout = self.options.timeout
        self.deadline = self.options.call_deadline()
        self.facts: ServerFacts | None = None
        self.last_error: str | None = None
        self.master_generation = 0  # bumped on each Sentinel failover, for the blocking clients
        self.listener: SwitchMasterListener | None = None
        if self._sentinel is not None and self.target.master:
            self.listener = SwitchMasterListener(self._sentinel, self.target.master, self._master_switched)
        self._confirmed = ConfirmedWrites(self.client)
        self._nonces = SetNxBatcher(self._set_nx_batch)
        self._tasks: list[asyncio.Task[None]] = []
        self._on_error = on_error

    # -- keys -----------------------------------------------------------------------------------
    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def tagged(self, kind: str, ident: str) -> str:
        """A key with a Cluster hash tag, ``gw:kind:{ident}``: every key built for one ``ident``
        (one principal's buckets, say) lands in one slot, so one script may touch them all."""
        # A "}" in the name (or an empty one) would end the tag early: those tag by a digest instead.
        tag = ident if ident and "}" not in ident else hashlib.sha256(ident.encode()).hexdigest()[:32]
        return f"{self.prefix}{kind}:{{{tag}}}"

    # -- calls ----------------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self.breaker.closed

    async def call(self, operation: Callable[[AsyncClient], Awaitable[T]], *, extra: float = 0.0) -> T:
        if not self.breaker.allow():
            self._on_error()
            raise RedisDown("the circuit breaker is open")
        try:
            # The socket timeouts bound each step; this bounds the whole call, reconnects included.
            result = await asyncio.wait_for(operation(self.client), self.deadline + extra)
        except FAILURES as exc:
            self.breaker.failure()
            self.last_error = self._describe(exc)
            self._on_error()
            raise RedisDown(type(exc).__name__) from exc
        except asyncio.CancelledError:
            # Cancelled (client gone, shutdown): never leave a half-open probe claimed.
            self.breaker.abandon()
            raise
        except Exception as exc:
            # redis-py's Cluster client has raised IndexError and the like in the middle of failovers
            # (redis-py #3935): losing Redis must degrade the gateway, never turn into a 500.
            self.breaker.failure()
            self.last_error = self._describe(exc)
            self._on_error()
            log.warning("unexpected error from the Redis client: %s", self.last_error)
            raise RedisDown(type(exc).__name__) from exc
        self.breaker.success()
        return result

    def _describe(self, exc: BaseException) -> str:
        return describe_error(exc, where=self.target.describe(), timeout=self.timeout,
                              files=[self.options.ca_file, self.options.password_file])

    async def get_many(self, names: Sequence[str]) -> list[Any]:
        """MGET; on Cluster one GET per key, concurrently: keys rarely share a slot, and redis-py routes
        GET, not MGET, to replicas when reading from them is configured."""
        if isinstance(self.client, redis.asyncio.cluster.RedisCluster):
            cluster = self.client

            async def each(_: object) -> list[Any]:
                return list(await asyncio.gather(*(cluster.get(name) for name in names)))

            return await self.call(each)
        return await self.call(lambda r: r.mget(list(names)))

    async def set_nx(self, key: str, px: int, *, confirm: bool = False) -> bool:
        """``SET key NX PX``: True when this call created the key. With ``confirm`` (and replicas
        required), only once ``WAIT`` saw them take it; raises NotReplicated when they did not."""
        if not confirm or self.replica_acks == 0:
            return await self._nonces.set_nx(key, px)
        wait_ms = max(1, int(self.options.wait_timeout * 1000))
        created, acks = await self.call(
            lambda _: self._confirmed.set_nx(key, b"1", px, replicas=self.replica_acks, wait_ms=wait_ms),
            extra=self.options.wait_timeout)
        if created and acks < self.replica_acks:
            raise NotReplicated(f"{acks} of {self.replica_acks} replicas confirmed within {wait_ms} ms")
        return created

    async def _set_nx_batch(self, items: Sequence[tuple[str, int]]) -> list[bool]:
        """One pipeline for the nonces of one loop turn (gateway.redis.batch); not a transaction."""
        async def send(client: AsyncClient) -> list[Any]:
            pipe = client.pipeline(transaction=False) if not self.cluster else client.pipeline()
            for key, px in items:
                pipe.set(key, b"1", nx=True, px=px)
            return list(await pipe.execute())

        return [bool(created) for created in await self.call(send)]

    async def ping(self) -> bool:
        try:
            await self.call(lambda r: r.ping())
        except RedisDown:
            return False
        self.last_error = None
        return True

    def sync_client(self) -> SyncClient:
        """A blocking client with the same target, TLS and credentials (for the audit writer thread)."""
        return sync_client(self.target, self.options, self.credentials)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect before the first request: Cluster learns its slots (redis-py #3935: a lazily
        initialised cluster client misbehaves under concurrency), pools get warm connections, the
        server's eviction policy is read, and Sentinel failovers are followed. Never raises for an
        unreachable or misconfigured Redis: it says why, once, and the gateway serves degraded."""
        if self.listener is not None:
            self._tasks.append(asyncio.create_task(self.listener.run(), name="redis-switch-master"))
        try:
            await asyncio.wait_for(self._connect(), self.deadline * 3)
        except FAILURES as exc:
            self.last_error = self._describe(exc)
            log.error("Redis is not usable at startup: %s. Serving degraded (in-process fallbacks) until it "
                      "answers", self.last_error)
            return
        await self._learn()

    async def _connect(self) -> None:
        if isinstance(self.client, redis.asyncio.cluster.RedisCluster):
            await self.client.initialize()
            await self.client.ping(target_nodes=self.client.PRIMARIES)
        else:
            # Every ping is awaited to its end before the first failure is raised: a ping left running
            # after gather() raised would log "Task exception was never retrieved", and a connection it
            # was still opening would outlive aclose() (its socket closed only by the collector).
            results = await asyncio.gather(*(self.client.ping() for _ in range(WARM_CONNECTIONS)),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _learn(self) -> None:
        """Read what the server says about itself; warn when it endangers the gateway's keys."""
        try:
            self.facts = await asyncio.wait_for(read_facts(self.client, self.cluster), self.deadline)
        except FAILURES as exc:
            log.warning("could not read Redis INFO (%s); eviction policy unknown", type(exc).__name__)
            return
        if self.facts.evicts_gateway_keys:
            log.warning("REDIS CAN EVICT THE GATEWAY'S KEYS: maxmemory-policy is %s (maxmemory %d bytes). Under "
                        "memory pressure it drops replay nonces (a replay hole) and rate-limit buckets. Set "
                        "maxmemory-policy to noeviction (docs/redis.md)", self.facts.maxmemory_policy,
                        self.facts.maxmemory)
        if self.replica_acks > self.facts.replicas:
            log.warning("Redis has %d connected replica(s) and %d must confirm each nonce: with "
                        "GATEWAY_REPLAY_FAIL_CLOSED=true vendor requests are refused until enough replicas "
                        "are attached (GATEWAY_REDIS_WAIT_REPLICAS)", self.facts.replicas, self.replica_acks)

    async def _master_switched(self, host: str, port: int) -> None:
        self.master_generation += 1
        self.breaker.probe_now()  # the failures were the old master's
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()  # in use too: a command in flight fails and is retried on the new master

    async def readiness(self) -> dict[str, Any]:
        """What /readyz shows about Redis. One bounded PING, which also closes the breaker again."""
        up = await self.ping()
        if up and self.facts is None:
            await self._learn()  # Redis was down at startup: learn its policy now
        facts = self.facts
        return {
            "mode": self.target.mode,
            "url": self.target.describe(),
            "state": "up" if up else "down",
            "error": None if up else self.last_error,
            "server": facts.server if facts else None,
            "maxmemory_policy": facts.maxmemory_policy if facts else None,
            "evicts_gateway_keys": facts.evicts_gateway_keys if facts else None,
            "replicas": facts.replicas if facts else None,
            "nonce_replica_acks": self.replica_acks,
            "failovers_followed": self.listener.switches if self.listener else None,
            "sentinels_listened_to": self.listener.subscribed if self.listener else None,
        }

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.client.aclose()
        if isinstance(self.client, redis.asyncio.cluster.RedisCluster):
            # A Cluster client that never initialised closes nothing (redis-py), yet its startup nodes
            # may hold connections from the attempts.
            await self.client.nodes_manager.aclose("startup_nodes")
            await self.client.nodes_manager.aclose()
        close_sentinels = getattr(self._sentinel, "aclose", None)  # redis-py 8.1 and later
        if close_sentinels is not None:
            await close_sentinels()
