"""Follow Sentinel's ``+switch-master`` so that a failover moves the gateway's writes at once.

redis-py keeps pooled connections to the old master after a failover until the old master is
turned into a replica, about ten seconds later on a planned ``SENTINEL FAILOVER``; it accepts
writes all that time and throws them away when it resyncs (measured: about a thousand
acknowledged writes). redis-py has no listener for this (redis-py #3867), so this is one: it
subscribes to ``+switch-master`` on every sentinel and, for our master, drops the pool's
connections, in use or idle. New connections ask Sentinel again, starting with the sentinel that
announced the switch (it surely knows the new master; the others may learn it a moment later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.exceptions import RedisError

log = logging.getLogger("gateway.redis")

CHANNEL = "+switch-master"


class MasterConnection(SentinelManagedConnection):
    """A master connection that asks Sentinel where the master is whenever it reconnects.

    redis-py's Sentinel connection asks only when the pool hands it out; a connection that drops
    in the middle of a command (as every one does when the listener disconnects the pool) is
    reconnected by the command's retry to the address it had: the old master (redis-py #3874).
    """

    _address_fresh = False

    async def connect_to(self, address: Any) -> None:
        self._address_fresh = True  # the pool just asked Sentinel
        await super().connect_to(address)  # type: ignore[no-untyped-call]

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self.is_connected and not self._address_fresh and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        self._address_fresh = False
        await super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)


class MasterSSLConnection(MasterConnection, SSLConnection):
    pass


class SwitchMasterListener:
    """Runs until cancelled; survives sentinels that go away and come back."""

    def __init__(self, manager: Any, master: str, on_switch: Callable[[str, int], Awaitable[None]],
                 *, poll: float = 1.0, max_backoff: float = 5.0) -> None:
        self.manager = manager  # a redis.asyncio.sentinel.Sentinel
        self.master = master
        self.on_switch = on_switch
        self.poll = poll
        self.max_backoff = max_backoff
        self.switches = 0
        self.current: tuple[str, int] | None = None
        self.subscribed = 0  # sentinels we currently listen to, for /readyz

    async def run(self) -> None:
        await asyncio.gather(*(self._listen(sentinel) for sentinel in list(self.manager.sentinels)))

    async def _listen(self, sentinel: Any) -> None:
        backoff = 0.1
        while True:
            pubsub = sentinel.pubsub()
            subscribed = False
            try:
                await pubsub.subscribe(CHANNEL)
                subscribed = True
                self.subscribed += 1
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll)
                    if message is not None:
                        await self._handle(sentinel, message.get("data"))
            except (RedisError, OSError) as exc:
                log.debug("sentinel subscription lost (%s); retrying in %.1fs", type(exc).__name__, backoff)
            finally:
                if subscribed:
                    self.subscribed -= 1
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _handle(self, sentinel: Any, data: object) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        fields = text.split()
        # "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
        if len(fields) != 5 or fields[0] != self.master or not fields[4].isdigit():
            return
        new = (fields[3], int(fields[4]))
        if new == self.current:  # every sentinel announces the same switch
            return
        self.current = new
        self.switches += 1
        sentinels = self.manager.sentinels
        if sentinel in sentinels:  # ask the announcing sentinel first from now on
            sentinels.remove(sentinel)
            sentinels.insert(0, sentinel)
        log.warning("Redis Sentinel failover: master %r moved from %s:%s to %s:%s; reconnecting",
                    self.master, fields[1], fields[2], fields[3], fields[4])
        await self.on_switch(*new)
