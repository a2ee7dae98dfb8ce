"""The circuit breaker (injected clock) and SharedRedis against a dead, a silent and a revived server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from gateway.redis.client import Breaker, RedisDown, SharedRedis
from tests.redis.procs import RedisHolder
from tests.support import RedisServer, free_port, start_redis, stop_redis


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, threshold: int = 3, backoff: float = 5.0) -> Breaker:
    breaker = Breaker(threshold=threshold, backoff=backoff, clock=clock)
    for _ in range(threshold):
        breaker.failure()
    return breaker


# -- Breaker --------------------------------------------------------------------------------------------

def test_breaker_opens_at_the_threshold_and_not_before() -> None:
    breaker = Breaker(threshold=3, backoff=5.0, clock=Clock())
    breaker.failure()
    breaker.failure()
    assert breaker.closed and breaker.allow()
    breaker.failure()
    assert not breaker.closed
    assert not breaker.allow()


def test_breaker_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = Breaker(threshold=3, backoff=5.0, clock=Clock())
    for _ in range(2):
        breaker.failure()
    breaker.success()
    for _ in range(2):
        breaker.failure()
    assert breaker.closed and breaker.allow()


def test_breaker_stays_open_for_the_backoff() -> None:
    clock = Clock()
    breaker = opened(clock, backoff=5.0)
    for now in (100.0, 102.5, 104.99):
        clock.now = now
        assert not breaker.allow(), now
    clock.now = 105.0
    assert breaker.allow()


def test_breaker_after_the_backoff_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    breaker = opened(clock, backoff=5.0)
    clock.now = 106.0
    assert [breaker.allow() for _ in range(5)] == [True, False, False, False, False]
    clock.now = 200.0  # time alone does not free a second probe while the first is in flight
    assert not breaker.allow()


def test_breaker_a_failed_probe_opens_it_for_another_backoff() -> None:
    clock = Clock()
    breaker = opened(clock, backoff=5.0)
    clock.now = 106.0
    assert breaker.allow()
    breaker.failure()
    clock.now = 110.9
    assert not breaker.allow()
    clock.now = 111.0
    assert breaker.allow()


def test_breaker_a_successful_probe_closes_it() -> None:
    clock = Clock()
    breaker = opened(clock, threshold=2, backoff=5.0)
    clock.now = 106.0
    assert breaker.allow()
    breaker.success()
    assert breaker.closed
    assert all(breaker.allow() for _ in range(5))
    breaker.failure()  # the count starts again from zero
    assert breaker.closed
    breaker.failure()
    assert not breaker.allow()


# -- SharedRedis against real sockets -------------------------------------------------------------------

class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_shared_redis_against_a_dead_port_fails_fast_and_counts() -> None:
    port = free_port()  # nothing listens here
    errors = Counter()

    async def body() -> None:
        shared = SharedRedis(f"redis://127.0.0.1:{port}/0", on_error=errors,
                             breaker=Breaker(threshold=2, backoff=60.0))
        try:
            for expected in (1, 2):
                started = time.monotonic()
                with pytest.raises(RedisDown):
                    await shared.call(lambda r: r.get("k"))
                assert time.monotonic() - started < 1.0
                assert errors.count == expected
            assert not shared.up
            started = time.monotonic()
            with pytest.raises(RedisDown, match="breaker"):
                await shared.call(lambda r: r.get("k"))
            assert time.monotonic() - started < 0.05  # open: not even a connection attempt
            assert errors.count == 3  # skips are counted too
            assert await shared.ping() is False
            assert errors.count == 4
        finally:
            await shared.aclose()

    asyncio.run(body())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A socket that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_shared_redis_against_a_silent_server_times_out_within_a_second(silent_port: int) -> None:
    errors = Counter()

    async def body() -> None:
        shared = SharedRedis(f"redis://127.0.0.1:{silent_port}/0", on_error=errors)
        try:
            started = time.monotonic()
            with pytest.raises(RedisDown):
                await shared.call(lambda r: r.get("k"))
            assert time.monotonic() - started < 1.2
            assert errors.count == 1
        finally:
            await shared.aclose()

    asyncio.run(body())


def test_shared_redis_recovers_after_the_backoff_once_the_server_is_back() -> None:
    port = free_port()
    clock = Clock()
    errors = Counter()
    server: RedisServer | None = None

    async def body() -> None:
        nonlocal server
        shared = SharedRedis(f"redis://127.0.0.1:{port}/0", on_error=errors,
                             breaker=Breaker(threshold=2, backoff=1.0, clock=clock))
        try:
            assert await shared.ping() is False
            assert await shared.ping() is False
            assert not shared.up
            server = start_redis(port)
            assert await shared.ping() is False  # still backing off: Redis is not even asked
            assert errors.count == 3
            clock.now += 1.0
            assert await shared.ping() is True  # the one probe succeeds and closes the breaker
            assert shared.up
            assert await shared.call(lambda r: r.set("k", b"v")) is True
            assert await shared.call(lambda r: r.get("k")) == b"v"
            assert errors.count == 3
        finally:
            await shared.aclose()

    try:
        asyncio.run(body())
    finally:
        if server is not None:
            stop_redis(server)


def test_shared_redis_reconnects_after_the_server_restarts(private_redis: RedisHolder) -> None:
    clock = Clock()

    async def body() -> None:
        shared = SharedRedis(private_redis.url, breaker=Breaker(threshold=1, backoff=1.0, clock=clock))
        try:
            assert await shared.call(lambda r: r.set("k", b"1")) is True  # a pooled connection now exists
            private_redis.kill()
            with pytest.raises(RedisDown):
                await shared.call(lambda r: r.get("k"))
            private_redis.restart()
            clock.now += 1.0
            assert await shared.ping() is True
            assert await shared.call(lambda r: r.get("k")) is None  # a new, empty server
        finally:
            await shared.aclose()

    asyncio.run(body())


def test_a_cancelled_probe_does_not_leave_the_breaker_stuck_open(private_redis: RedisHolder) -> None:
    clock = Clock()

    async def fail(_: object) -> None:
        raise redis.ConnectionError("simulated")

    async def body() -> None:
        shared = SharedRedis(private_redis.url, breaker=Breaker(threshold=1, backoff=1.0, clock=clock))
        try:
            with pytest.raises(RedisDown):
                await shared.call(fail)
            clock.now += 1.0
            probe = asyncio.create_task(shared.call(lambda r: asyncio.sleep(0.5)))
            await asyncio.sleep(0.05)
            probe.cancel()  # e.g. a client that went away, or shutdown, during the probe
            with pytest.raises(asyncio.CancelledError):
                await probe
            clock.now += 10.0
            assert await shared.ping() is True  # Redis is up all along
        finally:
            await shared.aclose()

    asyncio.run(body())


def test_breaker_probe_now_ends_the_backoff_but_still_probes_once() -> None:
    clock = Clock()
    breaker = opened(clock, backoff=5.0)
    assert not breaker.allow()
    breaker.probe_now()  # e.g. Sentinel announced a new master
    assert [breaker.allow() for _ in range(3)] == [True, False, False]
    breaker.success()
    assert breaker.closed
    breaker.probe_now()  # closed: nothing to do
    assert breaker.closed and breaker.allow()


def test_a_surprise_from_the_client_degrades_instead_of_failing(private_redis: RedisHolder) -> None:
    """redis-py's Cluster client has raised IndexError mid-failover: that must be a fallback, not a 500,
    and a pipeline's quoted arguments (signed URLs) must not reach /readyz."""
    errors = Counter()

    async def surprise(_: object) -> None:
        raise IndexError("Command # 1 (SET gw:url:k https://s.example/k?sig=SECRET) of pipeline caused error: "
                         "list index out of range")

    async def body() -> None:
        shared = SharedRedis(private_redis.url, on_error=errors)
        try:
            with pytest.raises(RedisDown):
                await shared.call(surprise)
            assert errors.count == 1 and shared.breaker.failures == 1
            assert shared.last_error is not None and "SECRET" not in shared.last_error
            assert "list index out of range" in shared.last_error
        finally:
            await shared.aclose()

    asyncio.run(body())
