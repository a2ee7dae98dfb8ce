"""SharedRedis on a real Sentinel setup: writes follow ``+switch-master`` at once, and WAIT confirms nonces."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time

import pytest

from gateway.auth.replay_redis import RedisReplayStore
from gateway.errors import Unavailable
from gateway.redis.client import SharedRedis
from tests.redis.sentinel_setup import MASTER_NAME, SentinelSetup
from tests.redis.test_contracts import MustNotFallBack


@pytest.mark.timeout(60)
def test_fail_closed_nonce_waits_for_a_replica_and_refuses_without_one(sentinel_setup: SentinelSetup) -> None:
    replica = sentinel_setup.replica()

    async def body() -> None:
        shared = SharedRedis(sentinel_setup.url, prefix=f"wait-{secrets.token_hex(3)}:")
        await shared.start()
        store = RedisReplayStore(shared, MustNotFallBack(), fail_closed=True)
        try:
            assert (await shared.readiness())["nonce_replica_acks"] == 1
            assert await store.first_seen("n1", 30) is True
            with replica.client() as r:  # confirmed: the replica has it before the answer
                assert r.exists(shared.key("nonce", "n1")) == 1
            assert await store.first_seen("n1", 30) is False

            replica.signal(signal.SIGSTOP)  # the replica cannot confirm anything
            try:
                started = time.monotonic()
                with pytest.raises(Unavailable, match="confirm"):
                    await store.first_seen("n2", 30)
                assert time.monotonic() - started < 0.5  # WAIT is bounded (GATEWAY_REDIS_WAIT_TIMEOUT)
            finally:
                replica.signal(signal.SIGCONT)
            assert shared.up, "an unconfirmed nonce is not a Redis failure: the breaker stays closed"
        finally:
            await shared.aclose()

    asyncio.run(body())


@pytest.mark.timeout(60)
def test_writes_reach_the_new_master_within_a_second_of_switch_master(sentinel_setup: SentinelSetup) -> None:
    """Without the listener, redis-py's pooled connections stay on the demoted master (which takes the
    writes and drops them when it resyncs) for about ten seconds."""
    old, new = sentinel_setup.master(), sentinel_setup.replica()

    async def body() -> None:
        shared = SharedRedis(sentinel_setup.url, prefix=f"sw-{secrets.token_hex(3)}:")
        await shared.start()
        writing = True

        async def write_forever() -> None:
            while writing:
                await shared.set_nx(shared.key("bg", secrets.token_hex(6)), 60_000)

        writers = [asyncio.create_task(write_forever()) for _ in range(4)]  # connections stay in use
        try:
            await asyncio.sleep(0.3)
            watcher = sentinel_setup.sentinels[1].client().pubsub()
            watcher.subscribe("+switch-master")
            sentinel_setup.failover()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                message = await asyncio.to_thread(watcher.get_message, True, 0.5)
                if message and message["data"].decode().startswith(MASTER_NAME):
                    break
            else:
                raise AssertionError("no +switch-master within 15 s")
            watcher.close()
            await asyncio.sleep(1.0)
            writing = False
            await asyncio.gather(*writers)  # their connections, in use at the switch, go back to the pool
            # Concurrent probes take every pooled connection, those that were in use at the switch too.
            probes = [shared.key("probe", str(i)) for i in range(40)]
            assert await asyncio.gather(*(shared.set_nx(key, 60_000) for key in probes)) == [True] * 40
            with new.client() as r:
                assert sum(r.exists(k) for k in probes) == 40, "writes still go to the old master"
            with old.client() as r:
                assert r.info("replication")["role"] == "master"  # not yet demoted: the dangerous window
            readiness = await shared.readiness()
            assert readiness["failovers_followed"] == 1 and readiness["state"] == "up"
        finally:
            writing = False
            await asyncio.gather(*writers, return_exceptions=True)
            await shared.aclose()

    asyncio.run(body())
