"""Lua scripts run as EVALSHA, falling back to EVAL on NOSCRIPT, on every call.

Scripts are not replicated: a promoted replica (after any Sentinel or Cluster failover), a
restarted server and ``SCRIPT FLUSH`` all leave a node without them. redis-py's ``register_script``
reloads on NOSCRIPT with ``SCRIPT LOAD`` sent to what it believes are the primaries, which on
redis-py below 7.2 could miss the new primary for good (redis-py #3899). ``EVAL`` instead runs on
the node that owns the keys, and caches the script there, so the next EVALSHA finds it. Never use
EVALSHA inside a Cluster pipeline (redis-py refuses it); these calls are single commands.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError


class LuaScript:
    """One script; ``keys`` must all hash to one Cluster slot (use hash tags)."""

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()

    async def run(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        """Run on an asyncio client (one server, Sentinel master or Cluster)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.body, len(keys), *keys, *args)
