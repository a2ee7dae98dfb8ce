"""Credentials for Redis, handed to redis-py as a ``credential_provider``: asked for on every new connection.

redis-py calls the provider each time it opens a connection (reconnects after a failover, and
ElastiCache's routine 12-hour disconnects, included), so a rotated password file or a renewed
IAM token applies to new connections without a restart, while open connections keep working:
Redis checks credentials only at ``AUTH``/``HELLO``. Every value here is a credential: none is
ever logged, put in an exception message or shown in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError

from gateway.sigv4.primitives import Credentials as AwsCredentials
from gateway.sigv4.primitives import FrozenCredentials, presign_query

Credentials = tuple[str] | tuple[str, str]

IAM_TOKEN_LIFETIME = 900  # seconds: ElastiCache accepts a connect token for 15 minutes
IAM_TOKEN_RENEW_AFTER = 600.0  # renew well before that, so that a slow reconnect never carries a stale one
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class PasswordFileProvider(CredentialProvider):
    """The password is the file's content (one trailing newline ignored), read for each new
    connection: a Kubernetes Secret mounted as a file is rotated in place, without a restart."""

    def __init__(self, path: Path, username: str | None = None) -> None:
        self.path = path
        self.username = username

    def get_credentials(self) -> Credentials:
        try:
            password = self.path.read_text("utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            # The path is configuration, not a secret; the content never reaches a message.
            raise AuthenticationError(f"cannot read the Redis password file {self.path}: "
                                      f"{type(exc).__name__}") from None
        return (self.username, password) if self.username else (password,)

    async def get_credentials_async(self) -> Credentials:
        return await asyncio.to_thread(self.get_credentials)  # a file read; a mounted volume may be slow


class _RenewedToken(CredentialProvider):
    """A token made by ``_fetch`` (possibly a network call, so run in a thread), reused until
    ``renew_after`` seconds have passed. One renewal at a time; the others wait for it."""

    renew_after = IAM_TOKEN_RENEW_AFTER

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._token: Credentials | None = None
        self._made_at = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> Credentials:
        raise NotImplementedError

    def _fresh(self) -> Credentials | None:
        if self._token is not None and self.clock() - self._made_at < self.renew_after:
            return self._token
        return None

    def get_credentials(self) -> Credentials:
        with self._lock:
            token = self._fresh()
            if token is None:
                try:
                    token = self._fetch()
                except AuthenticationError:
                    raise
                except Exception as exc:  # botocore, google-auth: say which, never what they held
                    raise AuthenticationError(f"{type(self).__name__} could not make a token: "
                                              f"{type(exc).__name__}") from None
                self._token, self._made_at = token, self.clock()
            return token

    async def get_credentials_async(self) -> Credentials:
        token = self._fresh()
        if token is not None:
            return token
        return await asyncio.to_thread(self.get_credentials)


class ElastiCacheIamProvider(_RenewedToken):
    """ElastiCache IAM authentication: the password is a SigV4 query-presigned ``connect`` request.

    The token is ``<cache>/?Action=connect&User=<user>&X-Amz-...``, signed for the
    ``elasticache`` service with the pod's AWS credentials (IRSA, instance profile, environment:
    whatever ``credentials`` returns), valid for 15 minutes and renewed after 10. The user must
    be an IAM-enabled ElastiCache user whose id equals its name.
    """

    def __init__(self, *, user: str, cache: str, region: str, serverless: bool = False,
                 credentials: Callable[[], FrozenCredentials] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.user = user
        self.cache = cache.lower()
        self.region = region
        self.serverless = serverless
        self._credentials = credentials or _boto3_credentials

    def token(self, signed_at: int) -> str:
        """The token for ``signed_at`` (Unix seconds)."""
        params = [("Action", "connect"), ("User", self.user)]
        if self.serverless:
            params.append(("ResourceType", "ServerlessCache"))
        query = presign_query(method="GET", host=self.cache, path="/", params=params,
                              credentials=self._credentials(), region=self.region, service="elasticache",
                              signed_at=signed_at, expires=IAM_TOKEN_LIFETIME)
        return f"{self.cache}/?{query}"

    def _fetch(self) -> Credentials:
        return self.user, self.token(int(self.clock()))


class MemorystoreIamProvider(_RenewedToken):
    """Memorystore IAM authentication: the password is an OAuth 2 access token from google-auth
    (Workload Identity, a service-account key, the metadata server). Tokens live about an hour;
    it is renewed when it has under 5 minutes left. Memorystore throttles IAM-authenticated
    connection rates, which is one more reason the gateway keeps its pools warm."""

    def __init__(self, credentials: Any | None = None, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._google = credentials

    def _fetch(self) -> Credentials:
        import google.auth
        import google.auth.transport.requests

        if self._google is None:
            self._google, _ = google.auth.default(scopes=[GOOGLE_SCOPE])
        self._google.refresh(google.auth.transport.requests.Request())
        token = self._google.token
        if not token:
            raise AuthenticationError("google-auth returned no access token")
        expiry = getattr(self._google, "expiry", None)
        if isinstance(expiry, datetime.datetime):  # google-auth keeps a naive UTC datetime
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=datetime.UTC)
            self.renew_after = max(0.0, expiry.timestamp() - self.clock() - 300.0)
        return (str(token),)


def _boto3_credentials() -> FrozenCredentials:
    import boto3

    found = boto3.session.Session().get_credentials()
    if found is None:
        raise AuthenticationError("no AWS credentials found for ElastiCache IAM authentication")
    frozen = found.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        raise AuthenticationError("the AWS credentials found are incomplete")
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)


def region_from_environment(environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
