"""``SET key NX PX`` followed by ``WAIT`` on the same connection: a write that replicas confirmed.

Redis replicates asynchronously, so a write acknowledged by a primary can vanish when a replica
is promoted before it arrived there (measured on a planned ``SENTINEL FAILOVER``: about a
thousand). ``WAIT n ms`` blocks until ``n`` replicas have everything this *connection* wrote, so
it must follow the SET on the same connection: a pipeline on one server or Sentinel master, and
on Cluster a pipeline sent to the key's primary itself, with no redirection or retry that could
move the SET elsewhere while the WAIT stays behind.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from redis.asyncio.cluster import PipelineCommand, RedisCluster
from redis.exceptions import AskError, MovedError
from redis.exceptions import ConnectionError as RedisConnectionError


class NotReplicated(Exception):  # noqa: N818 - a condition, not a failure of Redis itself
    """The primary took the write, but fewer replicas than required confirmed it in time."""


class ConfirmedWrites:
    """Sends confirmed writes for one client; remembers when it last re-read a Cluster's topology."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._refreshed_at = 0.0

    async def set_nx(self, key: str, value: bytes, px: int, *, replicas: int, wait_ms: int) -> tuple[bool, int]:
        """(created, replicas that confirmed). Raises redis errors as they come."""
        if isinstance(self.client, RedisCluster):
            return await self._cluster(key, value, px, replicas, wait_ms)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, value, nx=True, px=px)
        pipe.execute_command("WAIT", replicas, wait_ms)
        created, acks = await pipe.execute()
        return bool(created), int(acks)

    async def _cluster(self, key: str, value: bytes, px: int, replicas: int, wait_ms: int) -> tuple[bool, int]:
        client: RedisCluster = self.client
        await client.initialize()  # a no-op once the slots are known
        for attempt in range(2):
            node = client.get_node_from_key(key)
            if node is None:
                raise RedisConnectionError(f"no node serves the slot of {key!r}")
            commands = [PipelineCommand(0, "SET", key, value, "NX", "PX", px),
                        PipelineCommand(1, "WAIT", replicas, wait_ms)]
            try:
                await node.execute_pipeline(commands)
            except (RedisConnectionError, OSError):
                await self._refresh()  # the primary is gone: learn the new one for the next request
                raise
            error = next((c.result for c in commands if isinstance(c.result, Exception)), None)
            if isinstance(error, MovedError | AskError) and attempt == 0:
                # The slot moved (a failover or resharding): the SET did not run there. Learn where, once.
                moved = client.nodes_manager.move_slot(error)
                if inspect.isawaitable(moved):  # a coroutine from redis-py 8 on
                    await moved
                continue
            if error is not None:
                raise error
            acks: Any = commands[1].result
            return bool(commands[0].result), int(acks)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _refresh(self) -> None:
        """Re-read the topology, at most twice a second: while a node is dead, every call fails."""
        now = time.monotonic()
        if now - self._refreshed_at < 0.5:
            return
        self._refreshed_at = now
        try:
            await self.client.nodes_manager.initialize()
        except Exception:  # noqa: S110 - the caller reports the original error; the next call tries again
            pass
