"""Build redis-py clients for one server, Sentinel or Cluster, with explicit timeouts and TLS.

The one place that chooses the client class. Choices that matter, and why:

- timeouts are always explicit (redis-py 5/6 default to none at all: a blackholed node hangs);
- connection errors are retried twice, quickly; timeouts are not retried, so a slow server costs
  one timeout, not three, and a write that may have been applied is not sent again blindly;
- Cluster keeps the startup nodes as given (``dynamic_startup_nodes=False``), so that a DNS
  configuration endpoint is asked again on every topology refresh instead of node addresses that
  may have gone away; it starts even when part of the slots is uncovered;
- only read commands (the signed-URL cache's GETs) may go to replicas, and only when asked:
  nonces and rate limits are writes and always go to primaries.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.redis.options import RedisOptions
from gateway.redis.sentinel import MasterConnection, MasterSSLConnection
from gateway.redis.url import RedisTarget

AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncClient = redis.Redis | redis.cluster.RedisCluster
CLUSTER_MAX_CONNECTIONS = 256  # per node; the async cluster pool refuses (it never waits) beyond it


def _tls(target: RedisTarget, options: RedisOptions) -> dict[str, Any]:
    if not target.tls:
        return {}
    # Verify the chain and the host name always; the CA file is for private or per-instance CAs
    # (Memorystore), the system store covers public ones (ElastiCache).
    return {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True,
            "ssl_ca_certs": str(options.ca_file) if options.ca_file else None}


def _common(options: RedisOptions, credentials: CredentialProvider | None) -> dict[str, Any]:
    return {
        "socket_timeout": options.timeout,
        "socket_connect_timeout": options.connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "credential_provider": credentials,
    }


def _retry(sync: bool) -> Any:
    backoff = ExponentialWithJitterBackoff(base=0.01, cap=0.1)
    cls = redis.retry.Retry if sync else redis.asyncio.retry.Retry
    return cls(backoff, 2, supported_errors=(RedisConnectionError,))


def async_client(target: RedisTarget, options: RedisOptions,
                 credentials: CredentialProvider | None) -> tuple[AsyncClient, Any]:
    """The request path's client, and for Sentinel its ``Sentinel`` manager (else None)."""
    common = _common(options, credentials) | _tls(target, options)
    match target.mode:
        case "cluster":
            from redis.cluster import LoadBalancingStrategy

            nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes]
            cluster = redis.asyncio.cluster.RedisCluster(
                startup_nodes=nodes, dynamic_startup_nodes=False, require_full_coverage=False,
                max_connections=CLUSTER_MAX_CONNECTIONS, retry=_retry(sync=False),
                load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN if options.read_from_replicas else None,
                **common)
            return cluster, None
        case "sentinel":
            manager = redis.asyncio.sentinel.Sentinel(
                list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target, options), **common)
            assert target.master is not None  # noqa: S101 - the URL parser guarantees it
            # One master_for per process: each call makes a new pool (redis-py #3433).
            master: redis.asyncio.Redis = manager.master_for(
                target.master, db=target.db, retry=_retry(sync=False),
                connection_class=MasterSSLConnection if target.tls else MasterConnection)
            return master, manager
    if target.unix_path is not None:
        unix = redis.asyncio.Redis(unix_socket_path=target.unix_path, retry=_retry(sync=False),
                                   **_common(options, credentials))
        return unix, None
    (host, port), = target.nodes
    return redis.asyncio.Redis(host=host, port=port, db=target.db, retry=_retry(sync=False), **common), None


def sync_client(target: RedisTarget, options: RedisOptions, credentials: CredentialProvider | None) -> SyncClient:
    """A blocking client for a thread (the audit writer). A cluster client connects when built."""
    common = _common(options, credentials) | _tls(target, options)
    match target.mode:
        case "cluster":
            nodes = [redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                     for host, port in target.nodes]
            return redis.cluster.RedisCluster(startup_nodes=nodes, dynamic_startup_nodes=False,
                                              require_full_coverage=False, retry=_retry(sync=True), **common)
        case "sentinel":
            manager = redis.sentinel.Sentinel(
                list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target, options), **common)
            assert target.master is not None  # noqa: S101 - the URL parser guarantees it
            client: redis.Redis = manager.master_for(
                target.master, db=target.db, retry=_retry(sync=True))
            return client
    if target.unix_path is not None:
        return redis.Redis(unix_socket_path=target.unix_path, retry=_retry(sync=True),
                           **_common(options, credentials))
    (host, port), = target.nodes
    return redis.Redis(host=host, port=port, db=target.db, retry=_retry(sync=True), **common)


def _sentinel_kwargs(target: RedisTarget, options: RedisOptions) -> dict[str, Any]:
    """The sentinels' own connections: same timeouts and TLS; their own password, if any."""
    kwargs = {"socket_timeout": options.timeout, "socket_connect_timeout": options.connect_timeout,
              "socket_keepalive": True} | _tls(target, options)
    if options.sentinel_password is not None:
        kwargs["password"] = options.sentinel_password
    return kwargs
