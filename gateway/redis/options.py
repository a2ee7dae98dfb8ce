"""How the gateway talks to Redis, beyond the URL: timeouts, TLS, credentials, replica confirmation.

Built once from the settings; the async clients (request path) and the blocking one (the audit
writer thread) are made from the same options, so they can never disagree about TLS or
credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider

from gateway.errors import ConfigError
from gateway.redis.auth import (
    ElastiCacheIamProvider,
    MemorystoreIamProvider,
    PasswordFileProvider,
)
from gateway.redis.url import RedisTarget

CONNECT_TIMEOUT = 1.0  # seconds to open a connection (TCP and TLS): rare, so it can afford more
TIMEOUT = 0.25  # seconds per command: a slow Redis must cost less than the signing it would save
WAIT_TIMEOUT = 0.1  # seconds the replicas get to confirm a nonce


@dataclass(frozen=True)
class RedisOptions:
    """Everything but the address. ``wait_replicas=None`` means: 1 for Sentinel and Cluster, where
    a failover can promote a replica, and 0 for one server."""

    connect_timeout: float = CONNECT_TIMEOUT
    timeout: float = TIMEOUT
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    auth: str = "password"
    iam_cache: str | None = None
    iam_region: str | None = None
    iam_serverless: bool = False
    wait_replicas: int | None = None
    wait_timeout: float = WAIT_TIMEOUT
    read_from_replicas: bool = False
    credential_provider: CredentialProvider | None = field(default=None, repr=False, compare=False)

    def replica_acks(self, target: RedisTarget) -> int:
        """How many replicas must confirm a nonce before it counts (only with fail-closed replay)."""
        if self.wait_replicas is not None:
            return self.wait_replicas
        return 1 if target.mode in ("sentinel", "cluster") else 0

    def call_deadline(self) -> float:
        """The most one call may take, reconnect included: connect once, then command and retry."""
        return self.connect_timeout + 2 * self.timeout

    def credentials(self, target: RedisTarget) -> CredentialProvider | None:
        """The provider redis-py asks on every new connection, or None for no AUTH at all."""
        if self.credential_provider is not None:
            return self.credential_provider
        username = self.username or target.username
        match self.auth:
            case "elasticache-iam":
                if not (username and self.iam_cache and self.iam_region):
                    raise ConfigError("GATEWAY_REDIS_AUTH=elasticache-iam", [
                        "needs GATEWAY_REDIS_USERNAME, GATEWAY_REDIS_IAM_CACHE and a region "
                        "(GATEWAY_REDIS_IAM_REGION or AWS_REGION)"])
                return ElastiCacheIamProvider(user=username, cache=self.iam_cache, region=self.iam_region,
                                              serverless=self.iam_serverless)
            case "memorystore-iam":
                return MemorystoreIamProvider()
        if self.password_file is not None:
            return PasswordFileProvider(self.password_file, username)
        password = self.password if self.password is not None else target.password
        if password is None and username is None:
            return None
        return UsernamePasswordCredentialProvider(username, password)
