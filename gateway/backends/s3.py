"""S3 backend: SigV4 query presigning with boto3's credential chain and a fast local signer.

Credentials come from boto3's full chain (IRSA web identity, container and instance metadata,
environment, profile, static) and refresh on their own; each ``sign`` takes one frozen snapshot.
URLs are deterministic for a given ``signed_at`` (the start of the caller's time bucket), so every
replica hands out the same URL without sharing a cache. A URL never outlives the temporary
credentials that signed it: S3 rejects such a URL once the session ends, so its expiry is capped
at the credentials' expiry minus :data:`CREDENTIAL_MARGIN`.

With ``network_binding``, URLs are signed with the credentials of the dataset's own STS session
instead (gateway/backends/s3_sessions.py), so that S3 serves them only to the configured networks.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import boto3
import botocore.auth
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from botocore.credentials import ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from gateway.backends import Listed, ListPage
from gateway.backends.listing import check_prefix, page_size, relative
from gateway.backends.s3_sessions import BoundSessions
from gateway.config import S3Backend as S3BackendConfig
from gateway.errors import BadGateway, GatewayError, NotFound, Unavailable
from gateway.keys import MAX_KEY_BYTES, join_prefix
from gateway.models import SignedUrl
from gateway.sigv4.presign import MAX_EXPIRES, Credentials, SigV4Presigner, bucket_base_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ListObjectsV2OutputTypeDef

CREDENTIAL_MARGIN = 30  # seconds a URL must stop working before its signing credentials do
_RESOLVE_RETRY = 30.0  # seconds between attempts to find credentials after none were found
_NO_CREDENTIALS = (
    "no AWS credentials are available to sign S3 URLs (checked web identity, container and "
    "instance metadata, environment and profile)"
)


def _expiry(credentials: BotoCredentials) -> float | None:
    """Unix expiry of temporary credentials, ``None`` for long-lived keys (or not fetched yet)."""
    # botocore keeps the expiry only on this private attribute; it is stable across releases
    # and is what botocore's own refresh logic reads.
    expiry: Any = getattr(credentials, "_expiry_time", None)
    return expiry.timestamp() if isinstance(expiry, datetime.datetime) else None


def _response_params(config: S3BackendConfig) -> dict[str, str]:
    params: dict[str, str] = {}
    if config.response_content_type is not None:
        params["response-content-type"] = config.response_content_type
    if config.response_content_disposition is not None:
        params["response-content-disposition"] = config.response_content_disposition
    return params


class S3Backend:
    """Presigns S3 ``GetObject`` URLs for one bucket and prefix.

    Signing is local (about 5 µs per URL), so URLs are not worth sharing through Redis:
    ``shared_cache`` is False. Missing or unrefreshable credentials raise ``Unavailable``.
    """

    kind = "s3"
    shared_cache = False

    def __init__(
        self,
        config: S3BackendConfig,
        *,
        session: boto3.session.Session | None = None,
        clock: Callable[[], float] = time.time,
        dataset: str = "s3",
    ) -> None:
        self.config = config
        self._session = session if session is not None else boto3.session.Session()
        self._clock = clock
        self.base_url = bucket_base_url(
            self._session,
            bucket=config.bucket,
            region=config.region,
            endpoint_url=config.endpoint_url,
            addressing_style=config.addressing_style,
        )
        self._presigner = SigV4Presigner(self.base_url, region=config.region, params=_response_params(config))
        self._lock = threading.Lock()
        self._resolved_at = clock()
        self._credentials: BotoCredentials | None = self._session.get_credentials()
        # The last frozen credentials, reused while they cannot have changed: static ones for ever,
        # refreshable ones until botocore says a refresh is needed.
        self._snapshot: tuple[RefreshableCredentials | None, float | None, Credentials] | None = None
        self.bound: BoundSessions | None = None
        self._listing: S3Client | None = None  # built on the first listing: signing never needs it
        policy = config.session_policy()
        if config.network_binding is not None and policy is not None:
            self.bound = BoundSessions(self._session, config.network_binding, policy, dataset=dataset,
                                       region=config.region, clock=clock)

    def _resolve(self) -> BotoCredentials | None:
        with self._lock:
            if self._credentials is None and self._clock() - self._resolved_at >= _RESOLVE_RETRY:
                self._resolved_at = self._clock()
                self._credentials = self._session.get_credentials()
            return self._credentials

    async def credentials(self, *, bound: bool = True) -> tuple[float | None, Credentials]:
        """(expiry or None, a frozen snapshot) of the credentials to sign with: the dataset's
        network-bound STS session when it has one (and ``bound``: URLs for clients), else boto3's
        chain (the gateway's own reads, which the bound session would refuse outside its networks).
        Raises Unavailable."""
        if bound and self.bound is not None:
            return await self.bound.current()
        snapshot = self._snapshot
        if snapshot is not None and (snapshot[0] is None or not snapshot[0].refresh_needed()):
            return snapshot[1], snapshot[2]  # unchanged since the last freeze: no botocore call per URL
        credentials, frozen = await self._frozen()
        expiry = _expiry(credentials)
        refreshable = credentials if isinstance(credentials, RefreshableCredentials) else None
        self._snapshot = (refreshable, expiry, frozen)
        return expiry, frozen

    async def _frozen(self) -> tuple[BotoCredentials, Credentials]:
        credentials = self._credentials
        try:
            if credentials is None:
                # The chain may probe instance metadata over the network: keep it off the loop.
                credentials = await asyncio.to_thread(self._resolve)
                if credentials is None:
                    raise Unavailable(_NO_CREDENTIALS, retry_after=int(_RESOLVE_RETRY))
            if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
                # A refresh is an STS or metadata call; it happens a few times an hour at most.
                frozen: ReadOnlyCredentials = await asyncio.to_thread(credentials.get_frozen_credentials)
            else:
                frozen = credentials.get_frozen_credentials()
        except Unavailable:
            raise
        except Exception as exc:  # any provider failure (botocore, STS, IMDS, a custom refresher)
            # The provider's message may name roles, files or endpoints: keep it out of the detail.
            raise Unavailable("the AWS credentials for S3 could not be refreshed") from exc
        access_key, secret_key = frozen.access_key, frozen.secret_key
        if not access_key or not secret_key:
            raise Unavailable(_NO_CREDENTIALS, retry_after=int(_RESOLVE_RETRY))
        return credentials, Credentials(access_key, secret_key, frozen.token)

    def _capped(self, expiry: float | None, signed_at: int, expires_in: int) -> int:
        expires = min(expires_in, MAX_EXPIRES)
        if expiry is not None:
            expires = min(expires, int(expiry) - CREDENTIAL_MARGIN - signed_at)
        if expires < 1:
            raise Unavailable("the temporary AWS credentials expire too soon to sign a URL", retry_after=5)
        return expires

    async def sign(self, keys: Sequence[str], *, signed_at: int, expires_in: int) -> list[SignedUrl]:
        if expires_in < 1:
            raise ValueError("expires_in must be at least one second")
        expiry, frozen = await self.credentials()
        expires = self._capped(expiry, signed_at, expires_in)
        presign = self._presigner.presign
        prefix = self.config.prefix
        expires_at = signed_at + expires
        return [
            SignedUrl(
                presign(join_prefix(prefix, key), frozen, signed_at=signed_at, expires=expires),
                expires_at,
                signed_at,
            )
            for key in keys
        ]

    async def list_page(self, prefix: str, start: str | None, limit: int) -> ListPage:
        """One ``ListObjectsV2`` page under the dataset's prefix, in a thread (boto3 blocks). ``start``
        is S3's own continuation token. Listed with boto3's credential chain, never the network-bound
        session (that one may read objects only)."""
        own = self.config.prefix
        full = join_prefix(own, check_prefix(prefix, MAX_KEY_BYTES - len(own.encode())))
        answer = await asyncio.to_thread(self._list, full, start, page_size(limit))
        objects = [Listed(key, obj.get("Size"), obj.get("ETag"), None, obj["LastModified"].timestamp()
                          if "LastModified" in obj else None)
                   for key, obj in relative(((obj.get("Key", ""), obj) for obj in answer.get("Contents", [])), own)]
        token = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
        return ListPage(objects, token or None)

    def _list(self, full: str, start: str | None, size: int) -> ListObjectsV2OutputTypeDef:
        try:
            client = self._listing_client()
            if start:
                return client.list_objects_v2(Bucket=self.config.bucket, Prefix=full, MaxKeys=size,
                                              ContinuationToken=start)
            return client.list_objects_v2(Bucket=self.config.bucket, Prefix=full, MaxKeys=size)
        except ClientError as exc:
            raise _listing_error(exc) from exc
        except NoCredentialsError as exc:
            raise Unavailable(_NO_CREDENTIALS, retry_after=int(_RESOLVE_RETRY)) from exc
        except BotoCoreError as exc:  # unreachable, timed out; its message names the endpoint: not passed on
            raise Unavailable("the dataset's bucket could not be listed; retry shortly") from exc

    def _listing_client(self) -> S3Client:
        with self._lock:
            if self._listing is None:
                config = Config(s3={"addressing_style": self.config.addressing_style}, connect_timeout=5,
                                read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
                bundle = self.config.ca_bundle  # an S3-compatible store on a company CA
                self._listing = self._session.client("s3", region_name=self.config.region,
                                                     endpoint_url=self.config.endpoint_url, config=config,
                                                     verify=str(bundle) if bundle is not None else None)
            return self._listing

    def health(self) -> dict[str, object]:
        if self.bound is not None:
            return {"kind": self.kind, "credentials": "sts-session", **self.bound.health()}
        credentials = self._credentials
        if credentials is None:
            return {"kind": self.kind, "ok": False, "credentials": "missing"}
        expiry = _expiry(credentials)
        remaining = None if expiry is None else int(expiry - self._clock())
        return {
            "kind": self.kind,
            "ok": remaining is None or remaining > CREDENTIAL_MARGIN,
            "credentials": getattr(credentials, "method", None) or "unknown",
            "expires_in": remaining,
        }


def _listing_error(exc: ClientError) -> GatewayError:
    """S3's refusal as the gateway's: its message names the bucket and the host, so only a fixed text."""
    error: Any = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return NotFound("the dataset's bucket does not exist")
    if status is not None and 400 <= status < 500:  # its credentials, its signature, its request
        return BadGateway("the storage refused to list the dataset's bucket")
    return Unavailable("the dataset's bucket could not be listed; retry shortly")


_CLOCK_LOCK = threading.Lock()


def boto3_presign(
    client: S3Client,
    bucket: str,
    key: str,
    *,
    signed_at: int,
    expires_in: int,
    method: str = "GET",
    response_content_type: str | None = None,
    response_content_disposition: str | None = None,
) -> str:
    """boto3's own ``generate_presigned_url`` with ``X-Amz-Date`` fixed at ``signed_at``.

    The reference the fast signer is tested and benchmarked against; not for the request path.
    botocore reads the signing time from ``botocore.auth.get_current_datetime`` and has no
    parameter for it, so that function is swapped for the duration of the call, under a lock.
    """
    params: dict[str, str] = {"Bucket": bucket, "Key": key}
    if response_content_type is not None:
        params["ResponseContentType"] = response_content_type
    if response_content_disposition is not None:
        params["ResponseContentDisposition"] = response_content_disposition
    operation = {"GET": "get_object", "HEAD": "head_object"}[method]
    if method == "HEAD":
        params = {"Bucket": bucket, "Key": key}  # HeadObject has no response-* overrides
    fixed = datetime.datetime.fromtimestamp(signed_at, datetime.UTC)
    with _CLOCK_LOCK:
        original = getattr(botocore.auth, "get_current_datetime")  # noqa: B009
        setattr(botocore.auth, "get_current_datetime", lambda: fixed)  # noqa: B010
        try:
            return client.generate_presigned_url(operation, Params=params, ExpiresIn=expires_in)
        finally:
            setattr(botocore.auth, "get_current_datetime", original)  # noqa: B010
