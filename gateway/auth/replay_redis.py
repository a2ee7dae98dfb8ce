"""A ReplayStore shared by every replica, in Redis, with an in-process fallback."""

from __future__ import annotations

from collections.abc import Callable

from gateway.auth import ReplayStore
from gateway.errors import Unavailable
from gateway.redis.client import NotReplicated, RedisDown, SharedRedis


class RedisReplayStore:
    """``SET nonce NX PX ttl``: atomic across replicas, so a signature is accepted once cluster-wide.

    While Redis is down it uses ``fallback`` (this replica only) and calls ``on_fallback``; with
    ``fail_closed`` it refuses instead (503), for sites that prefer no vendor traffic to a
    per-replica replay window. With ``fail_closed`` a nonce also counts only once a replica has
    confirmed it (``WAIT``, Sentinel and Cluster): a failover cannot forget an accepted signature.
    """

    def __init__(self, shared: SharedRedis, fallback: ReplayStore, *, fail_closed: bool = False,
                 on_fallback: Callable[[], None] = lambda: None) -> None:
        self.shared = shared
        self.fallback = fallback
        self.fail_closed = fail_closed
        self._on_fallback = on_fallback

    async def first_seen(self, nonce: str, ttl: float) -> bool:
        key = self.shared.key("nonce", nonce)
        px = max(1, int(ttl * 1000))
        try:
            created = await self.shared.set_nx(key, px, confirm=self.fail_closed)
        except NotReplicated:
            # Security: an unconfirmed nonce could vanish in a failover and the signature be accepted again.
            raise Unavailable("replay protection could not confirm the nonce on a replica; refusing "
                              "(fail-closed)", retry_after=1) from None
        except RedisDown:
            if self.fail_closed:
                raise Unavailable("replay protection is unavailable (Redis is down); refusing (fail-closed)") from None
            self._on_fallback()
            return await self.fallback.first_seen(nonce, ttl)
        return bool(created)
