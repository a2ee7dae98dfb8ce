"""What the gateway learns about its Redis at startup, and plain words for why it cannot reach it.

``maxmemory-policy`` is read from ``INFO memory``: managed Redis (ElastiCache, Memorystore) blocks
``CONFIG``. Every key the gateway writes has a TTL, so ``volatile-*`` policies (the managed
default is ``volatile-lru``) evict them as readily as ``allkeys-*``: an evicted nonce reopens a
replay, an evicted rate-limit bucket forgets what a principal spent. Only ``noeviction`` (or no
``maxmemory`` at all) keeps them; anything else is reported loudly and in ``/readyz``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


@dataclass(frozen=True)
class ServerFacts:
    """One node's answers (for Cluster: the primaries', combined)."""

    server: str  # "redis 7.0.15", "valkey 8.0.1"
    maxmemory_policy: str
    maxmemory: int
    replicas: int  # connected replicas of the (least replicated) primary

    @property
    def evicts_gateway_keys(self) -> bool:
        return self.maxmemory > 0 and self.maxmemory_policy != "noeviction"


def facts_from_info(infos: list[dict[str, Any]]) -> ServerFacts:
    """Combine ``INFO`` answers (one per primary): the riskiest policy, the fewest replicas."""
    policies = sorted({str(i.get("maxmemory_policy", "unknown")) for i in infos})
    risky = [p for p in policies if p != "noeviction"]
    first = infos[0]
    name = str(first.get("server_name", "redis"))
    version = first.get("valkey_version") or first.get("redis_version", "?")
    return ServerFacts(
        server=f"{name} {version}",
        maxmemory_policy=",".join(risky or policies),
        maxmemory=max(int(i.get("maxmemory", 0) or 0) for i in infos),
        replicas=min(int(i.get("connected_slaves", 0) or 0) for i in infos),
    )


async def read_facts(client: Any, cluster: bool) -> ServerFacts:
    """``INFO server``, ``memory`` and ``replication`` from the primary, or every Cluster primary."""
    if cluster:
        answer = await client.info(target_nodes=client.PRIMARIES)
        infos = list(answer.values()) if answer and all(isinstance(v, dict) for v in answer.values()) else [answer]
    else:
        infos = [await client.info()]
    return facts_from_info(infos)


def describe_error(exc: BaseException, *, where: str, timeout: float, files: Sequence[Path | None] = ()) -> str:
    """A one-line reason an operator can act on. Never holds a password or a token: redis-py's
    messages name hosts and ports only, and ours are written here."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    missing = next((e for e in chain if isinstance(e, FileNotFoundError | PermissionError)), None)
    if missing is not None:  # ssl does not say which file; the configured ones are checked here
        unreadable = getattr(missing, "filename", None) or next(
            (str(f) for f in files if f is not None and not os.access(f, os.R_OK)), "a configured file")
        return (f"cannot read {unreadable} for {where}: check GATEWAY_REDIS_CA_FILE and "
                "GATEWAY_REDIS_PASSWORD_FILE")
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"TLS certificate verification failed for {where}: the server's certificate is not signed by "
                "GATEWAY_REDIS_CA_FILE (or the system's CAs), or does not name the host")
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSL" in text and "wrong version" in text:
        return f"TLS handshake with {where} failed: is the server speaking TLS (rediss://) or not (redis://)?"
    if any(isinstance(e, AuthenticationError | AuthenticationWrongNumberOfArgsError) for e in chain) or any(
            marker in text for marker in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")):
        return (f"authentication to {where} failed: check the user name and the password "
                "(URL, GATEWAY_REDIS_PASSWORD, GATEWAY_REDIS_PASSWORD_FILE) or the IAM token")
    if "No master found" in text:
        return f"no sentinel of {where} knows a healthy master by that name"
    if isinstance(exc, TimeoutError | RedisTimeoutError) or any(isinstance(e, RedisTimeoutError) for e in chain):
        return f"{where} did not answer within {timeout:g}s"
    if isinstance(exc, RedisClusterException) and not isinstance(exc, ResponseError):
        return f"cannot reach the Redis Cluster at {where}: {_first_line(exc)}"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "reset by peer" in text:
        return f"{where} closed the connection at once: does it expect TLS (rediss://)?"
    if any(isinstance(e, RedisConnectionError | OSError) for e in chain):
        return f"cannot connect to {where}: {_first_line(chain[-1])}"
    return f"{where}: {type(exc).__name__}: {_first_line(exc)}"


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 8:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _first_line(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    # redis-py quotes a failed pipeline command with its arguments, and those can be signed URLs.
    _, marker, reason = text.partition("of pipeline caused error:")
    return (reason.strip() if marker else text)[:200]
