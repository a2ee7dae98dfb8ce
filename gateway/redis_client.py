"""One shared Redis connection with short timeouts and a circuit breaker.

A leaf module: the cache, the replay store, the rate limiter and the audit stream each use it
through their own implementation file, and each falls back to an in-process store (counted) while
the breaker is open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

T = TypeVar("T")
TIMEOUT = 0.25  # seconds; a slow Redis must cost less than the signing it would save


class RedisDown(Exception):
    """Redis is unreachable or the breaker is open; the caller falls back."""


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


def _sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """``redis+sentinel://[:password@]host:26379,host2:26379/master-name/db``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    password = unquote(netloc[0].split(":", 1)[-1]) if len(netloc) == 2 else None
    hosts = []
    for host in netloc[-1].split(","):
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "26379")
        hosts.append((name, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a sentinel URL names the master: redis+sentinel://host:26379/mymaster/0")
    return hosts, path[0], int(path[1]) if len(path) > 1 else 0, password


def connect(url: str, *, timeout: float = TIMEOUT) -> redis.asyncio.Redis:
    """An asyncio client for ``redis://``, ``rediss://`` (TLS) or ``redis+sentinel://``."""
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if url.startswith("redis+sentinel://"):
        hosts, master, db, password = _sentinel_parts(url)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            hosts, sentinel_kwargs=options, **options
        )
        client: redis.asyncio.Redis = sentinel.master_for(master, db=db, password=password, **options)
        return client
    return redis.asyncio.Redis.from_url(url, **options)


def connect_sync(url: str, *, timeout: float = 1.0) -> redis.Redis:
    """A blocking client for threads (the audit writer)."""
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if url.startswith("redis+sentinel://"):
        hosts, master, db, password = _sentinel_parts(url)
        sentinel = redis.sentinel.Sentinel(hosts, sentinel_kwargs=options, **options)  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            master, db=db, password=password, **options
        )
        return client
    return redis.Redis.from_url(url, **options)


class SharedRedis:
    """Calls Redis through the breaker. Every failure and every skip calls ``on_error``."""

    def __init__(self, url: str, *, prefix: str = "gw:", on_error: Callable[[], None] = lambda: None,
                 breaker: Breaker | None = None, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.prefix = prefix
        self.client = connect(url, timeout=timeout)
        self.breaker = breaker or Breaker()
        self.timeout = timeout
        self._on_error = on_error

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def up(self) -> bool:
        return self.breaker.closed

    async def call(self, operation: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            self._on_error()
            raise RedisDown("the circuit breaker is open")
        try:
            # The socket timeouts bound each step; this bounds the whole call, reconnects included.
            result = await asyncio.wait_for(operation(self.client), self.timeout * 4)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            self.breaker.failure()
            self._on_error()
            raise RedisDown(type(exc).__name__) from exc
        except BaseException:
            # Cancelled (client gone, shutdown) or a surprise: never leave a half-open probe claimed.
            self.breaker.abandon()
            raise
        self.breaker.success()
        return result

    async def ping(self) -> bool:
        try:
            await self.call(lambda r: r.ping())
        except RedisDown:
            return False
        return True

    async def aclose(self) -> None:
        await self.client.aclose()
