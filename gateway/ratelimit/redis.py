"""GCRA in Redis: one atomic Lua script, so that limits hold across replicas."""

from __future__ import annotations

from collections.abc import Callable

from gateway.ratelimit import RateLimiter, Verdict
from gateway.redis.client import LuaScript, RedisDown, SharedRedis

# Times in microseconds from Redis's own clock, so that replicas with skewed clocks agree. Every key
# the script touches comes in KEYS (one, hash-tagged): Cluster runs it on the slot's primary.
GCRA = LuaScript("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
if new_tat - now > period then
  return {0, new_tat - period - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
""")


class RedisRateLimiter:
    """Falls back to ``fallback`` (per replica, counted through ``on_fallback``) while Redis is down.

    The script is sent as EVALSHA, and as EVAL when the node does not have it (after a failover,
    a restart or SCRIPT FLUSH), so no call fails for a missing script."""

    def __init__(self, shared: SharedRedis, fallback: RateLimiter, *,
                 on_fallback: Callable[[], None] = lambda: None) -> None:
        self.shared = shared
        self.fallback = fallback
        self._on_fallback = on_fallback

    async def hit(self, key: str, *, cost: int, limit: int, period: float) -> Verdict:
        interval = int(period * 1_000_000 / limit)

        async def script(r: object) -> Verdict:
            # Read the answer inside the call: an odd one is a Redis failure (a fallback), not a 500.
            allowed, wait = await GCRA.run(r, [self.shared.tagged("rl", key)], [interval, int(period * 1e6), cost])
            return Verdict(bool(allowed), retry_after=int(wait) / 1e6)

        try:
            return await self.shared.call(script)
        except RedisDown:
            self._on_fallback()
            return await self.fallback.hit(key, cost=cost, limit=limit, period=period)
