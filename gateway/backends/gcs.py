"""GCS backend: V4 signed URLs with a service-account key, IAM signBlob, or an HMAC key.

Which signer runs (``signer: auto``): an HMAC key when its environment variables are configured;
else a service-account private key (``credentials_file``, or ADC that carries a key); else IAM
``signBlob`` with the ambient credentials (GKE Workload Identity has no key file). RSA costs about
0.7 ms per URL and signBlob a network round trip, so GCS URLs are shared through Redis
(``shared_cache``) and every batch is signed off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

import google.auth
import google.auth.credentials
import google.auth.exceptions
import httpx
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from gateway.backends import ListPage
from gateway.backends.gcs_listing import GcsListing
from gateway.backends.gcs_v4 import DEFAULT_ENDPOINT, HMAC, MAX_EXPIRES, RSA, HmacSigner, V4Builder, finish
from gateway.backends.listing import check_prefix, page_size
from gateway.config import GcsBackend as GcsBackendConfig
from gateway.errors import Unavailable
from gateway.keys import MAX_KEY_BYTES, join_prefix
from gateway.models import SignedUrl

IAM_BASE_URL = "https://iamcredentials.googleapis.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
Credentials = google.auth.credentials.Credentials


class IamSignBlob:
    """Signs strings-to-sign with IAM Credentials ``signBlob`` (the key never leaves Google).

    Every call has a deadline (``timeout``) and at most ``concurrency`` calls are in flight per
    batch; any failure becomes ``Unavailable`` (503 with Retry-After), never a hang. Token
    refreshes are blocking google-auth calls and run in a thread. ``base_url`` is injectable so
    tests can run a fake IAM endpoint on a real socket.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str = IAM_BASE_URL,
        timeout: float = 5.0,
        concurrency: int = 16,
    ) -> None:
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._concurrency = concurrency
        # One connection pool per event loop (each uvicorn worker has one), built once, not per call.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = self._clients[loop] = httpx.AsyncClient(timeout=self.timeout)
        return client

    async def _headers(self) -> dict[str, str]:
        if not self.credentials.valid:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.credentials.refresh, Request()), self.timeout)
            except (google.auth.exceptions.GoogleAuthError, TimeoutError) as exc:
                raise Unavailable("could not obtain a Google access token to sign GCS URLs") from exc
        headers: dict[str, str] = {}
        self.credentials.apply(headers)  # type: ignore[no-untyped-call]
        return headers

    async def email(self, configured: str | None) -> str:
        """The service account to sign as: configured, or the ambient credentials' own."""
        email = configured or getattr(self.credentials, "service_account_email", None)
        if not email or email == "default":  # GCE/GKE credentials learn their email on refresh
            await self._headers()
            email = getattr(self.credentials, "service_account_email", None)
        if not isinstance(email, str) or not email or email == "default":
            raise Unavailable("no service account email is known for IAM signBlob; set service_account_email")
        return email

    async def sign_many(self, email: str, payloads: Sequence[bytes]) -> list[bytes]:
        headers = await self._headers()
        url = f"{self.base_url}/v1/projects/-/serviceAccounts/{quote(email, safe='@')}:signBlob"
        limit = asyncio.Semaphore(self._concurrency)

        async def one(client: httpx.AsyncClient, payload: bytes) -> bytes:
            async with limit:
                body = {"payload": base64.b64encode(payload).decode("ascii")}
                async with asyncio.timeout(self.timeout):  # a deadline for the whole exchange
                    response = await client.post(url, json=body, headers=headers)
            if response.status_code != 200:
                # The body can name projects and roles: log-worthy, but not for the client.
                raise Unavailable(f"IAM signBlob failed with HTTP {response.status_code}")
            return base64.b64decode(response.json()["signedBlob"])

        try:
            client = self._client()
            return list(await asyncio.gather(*(one(client, p) for p in payloads)))
        except Unavailable:
            raise
        except (httpx.HTTPError, TimeoutError, ValueError, KeyError) as exc:
            raise Unavailable("IAM signBlob did not answer in time or answered badly") from exc


class GcsBackend:
    """Presigns GCS V4 ``GET`` URLs for one bucket and prefix (path style)."""

    kind = "gcs"
    shared_cache = True

    def __init__(
        self,
        config: GcsBackendConfig,
        *,
        credentials: Credentials | None = None,
        iam_signer: IamSignBlob | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._endpoint = config.endpoint or DEFAULT_ENDPOINT
        self._problem: str | None = None
        self._hmac: HmacSigner | None = None
        self._key: service_account.Credentials | None = None
        self._iam: IamSignBlob | None = iam_signer
        self._builder: V4Builder | None = None
        env = os.environ if environ is None else environ
        mode = config.signer
        if mode == "auto":
            mode = "hmac" if config.hmac_access_id_env else "iam" if iam_signer is not None else "auto"
        if mode == "hmac":
            self._init_hmac(env)
        elif mode == "iam" and iam_signer is not None:
            pass
        else:
            credentials = credentials or self._load_credentials()
            if mode in {"auto", "key"} and isinstance(credentials, service_account.Credentials):
                mode = "key"
                self._key = credentials
                self._builder = V4Builder(
                    algorithm=RSA, credential_id=credentials.service_account_email, endpoint=self._endpoint
                )
            elif mode == "key":
                self._problem = self._problem or "signer: key needs a service-account key (credentials_file)"
            else:
                mode = "iam"
                if credentials is not None:
                    self._iam = IamSignBlob(credentials)
        self.signer = mode
        self._listing: GcsListing | None = None
        # An HMAC signature costs ~23 us, far less than a Redis round trip (~200 us): no shared cache.
        self.shared_cache = mode != "hmac"

    def _init_hmac(self, env: Mapping[str, str]) -> None:
        names = (self.config.hmac_access_id_env, self.config.hmac_secret_env)
        access_id, secret = (env.get(name) if name else None for name in names)
        if not access_id or not secret:
            self._problem = "the GCS HMAC key is not set (hmac_access_id_env and hmac_secret_env)"
            return
        self._hmac = HmacSigner(secret)
        self._builder = V4Builder(algorithm=HMAC, credential_id=access_id, endpoint=self._endpoint)

    def _load_credentials(self) -> Credentials | None:
        try:
            if self.config.credentials_file is not None:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call,no-any-return]
                    str(self.config.credentials_file), scopes=[CLOUD_PLATFORM]
                )
            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
            return credentials
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            # Name the source, not the error text (it can quote file contents or paths).
            source = "credentials_file" if self.config.credentials_file else "application default credentials"
            self._problem = f"no usable Google credentials ({source}: {type(exc).__name__})"
            return None

    def _signblob(self) -> IamSignBlob:
        if self._iam is None:
            raise Unavailable(self._problem or "no Google credentials are available to sign GCS URLs")
        return self._iam

    async def _iam_builder(self) -> V4Builder:
        if self._builder is None:
            email = await self._signblob().email(self.config.service_account_email)
            self._builder = V4Builder(algorithm=RSA, credential_id=email, endpoint=self._endpoint)
        return self._builder

    async def sign(self, keys: Sequence[str], *, signed_at: int, expires_in: int) -> list[SignedUrl]:
        if expires_in < 1:
            raise ValueError("expires_in must be at least one second")
        if self._problem is not None:
            raise Unavailable(self._problem)
        expires = min(expires_in, MAX_EXPIRES)
        builder = self._builder if self._builder is not None else await self._iam_builder()
        bucket, prefix = self.config.bucket, self.config.prefix
        prepared = [
            builder.prepare(bucket, join_prefix(prefix, key), signed_at=signed_at, expires=expires)
            for key in keys
        ]
        payloads = [p.string_to_sign for p in prepared]
        if self._hmac is not None:
            signatures = [self._hmac(payload) for payload in payloads]
        elif self._key is not None:
            sign = self._key.signer.sign
            # RSA is ~0.7 ms per URL: a 1000-key batch must not hold the event loop for 0.7 s.
            signatures = await asyncio.to_thread(lambda: [bytes(sign(p)) for p in payloads])
        else:
            signatures = await self._signblob().sign_many(builder.credential_id, payloads)
        expires_at = signed_at + expires
        return [
            SignedUrl(finish(p, s), expires_at, signed_at) for p, s in zip(prepared, signatures, strict=True)
        ]

    def access_credentials(self) -> Credentials | None:
        """The Google credentials that can obtain OAuth access tokens (proxy delivery), or None
        (an HMAC key has none)."""
        if self._key is not None:
            return self._key
        return self._iam.credentials if self._iam is not None else None

    async def list_page(self, prefix: str, start: str | None, limit: int) -> ListPage:
        """One ``objects.list`` page under the dataset's prefix (``start``: GCS's page token), in a
        thread, with the OAuth credentials of proxy reads (or, for an HMAC signer, the ambient ones)."""
        own = self.config.prefix
        full = join_prefix(own, check_prefix(prefix, MAX_KEY_BYTES - len(own.encode())))
        if self._listing is None:
            self._listing = GcsListing(self.config.bucket, self._endpoint, self.access_credentials(),
                                       problem=self._problem)
        return await asyncio.to_thread(self._listing.page, own, full, start, page_size(limit))

    def health(self) -> dict[str, object]:
        ok = self._problem is None and (self._hmac or self._key or self._iam) is not None
        info: dict[str, object] = {"kind": self.kind, "ok": ok, "signer": self.signer}
        if self._problem is not None:
            info["problem"] = self._problem
        if self._iam is not None:
            info["token_valid"] = bool(self._iam.credentials.valid)
        return info
