"""Azure Blob Storage backend: read-only service SAS for one blob, signed in process.

Signing identities (workload identity on AKS, managed identity, or azure-identity's default chain)
sign with a **user delegation key** (gateway/backends/azure_keys.py): no account key ever exists in
the cluster, and Entra ID's role assignments decide what a URL may read. An account key
(``credential: account_key``, from an environment variable or a file) is for development.

Every URL is ``sp=r``, ``sr=b`` for exactly the authorized blob, ``spr=https`` unless the endpoint
is plain http (Azurite), with the dataset's ``rsct``/``rscd`` overrides and, with
``network_binding``, the one address range Azure Storage will serve it to (``sip``). ``st`` is left
out (valid at once, whatever the storage's clock), so a URL depends on the key, the blob and
``se = signed_at + expires`` only: deterministic within a time bucket. A URL never outlives the user
delegation key that signed it: its expiry is capped at the key's expiry minus a margin.

Signing is one HMAC-SHA256 (a few µs, ``bench/sign_bench.py``), less than a Redis round trip, so
``shared_cache`` is False.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from gateway.backends import Listed, ListPage
from gateway.backends.azure_auth import SharedKey, Tokens
from gateway.backends.azure_keys import MARGIN, DelegationKeys
from gateway.backends.azure_sas import SasSigner
from gateway.backends.listing import check_prefix, page_size, relative
from gateway.config.backends import AzureBackend as AzureBackendConfig
from gateway.errors import BadGateway, ConfigError, GatewayError, NotFound, Unavailable
from gateway.keys import MAX_KEY_BYTES, join_prefix
from gateway.models import SignedUrl

MAX_EXPIRES = 7 * 86400  # the gateway's own bound; url_ttl is far below it
# Key requests are not retried by the SDK (its storage retry policy sleeps 15 s first): the last good key
# keeps signing, and the next request asks again after RETRY_AFTER. Listings (a CLI run) keep its retries.
_KEY_CLIENT: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 5, "retry_total": 0}
_LIST_CLIENT: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 30}


def load_account_key(config: AzureBackendConfig, environ: Mapping[str, str]) -> str:
    """The account key from its environment variable or file; a ConfigError never quotes it."""
    if config.account_key_env is not None:
        value = environ.get(config.account_key_env, "").strip()
        where = f"account_key_env: environment variable {config.account_key_env}"
        if not value:
            raise ConfigError("backend", [f"{where} is not set"])
    else:
        assert config.account_key_file is not None  # noqa: S101 - the schema requires one source
        where = f"account_key_file: {config.account_key_file}"
        try:
            value = config.account_key_file.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("backend", [f"{where} cannot be read ({type(exc).__name__})"]) from None
    try:
        if len(base64.b64decode(value, validate=True)) < 32:
            raise ValueError("short")
    except (binascii.Error, ValueError):
        raise ConfigError("backend", [f"{where} does not hold a base64 storage account key"]) from None
    return value


def identity_credential(config: AzureBackendConfig) -> TokenCredential:
    """The azure-identity credential the config names. Nothing here calls the network."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential, WorkloadIdentityCredential

    try:
        match config.credential:
            case "workload_identity":
                # AKS's workload identity webhook sets AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE.
                return WorkloadIdentityCredential(client_id=config.client_id)
            case "managed_identity":
                return ManagedIdentityCredential(client_id=config.client_id)
            case _:
                return DefaultAzureCredential(managed_identity_client_id=config.client_id,
                                              workload_identity_client_id=config.client_id)
    except ValueError as exc:  # a missing setting; its message names environment variables, not secrets
        raise ConfigError("backend", [f"credential: {config.credential}: {exc}"]) from None


class AzureBackend:
    """Presigns Azure Blob ``GET`` URLs (service SAS) for one container and prefix."""

    kind = "azure"
    shared_cache = False

    def __init__(self, config: AzureBackendConfig, *, credential: TokenCredential | None = None,
                 clock: Callable[[], float] = time.time, environ: Mapping[str, str] | None = None) -> None:
        from azure.storage.blob import BlobServiceClient

        self.config = config
        self.endpoint = config.blob_endpoint()
        self._clock = clock
        binding = config.network_binding
        self.signer = SasSigner(
            self.endpoint, account=config.account, container=config.container, version=config.api_version,
            # An https-only SAS cannot be used over plain http, which is all Azurite speaks by default.
            protocol="https" if self.endpoint.startswith("https://") else None,
            ip=binding.sip() if binding is not None else None,
            content_type=config.response_content_type, content_disposition=config.response_content_disposition)
        self._account_key: str | None = None
        self.shared_key: SharedKey | None = None
        self.tokens: Tokens | None = None
        self.delegation: DelegationKeys | None = None
        self._sdk_credential: dict[str, str] | TokenCredential
        self._listing: Any = None  # a ContainerClient, built on the first list_page
        self._listing_lock = threading.Lock()
        if config.credential == "account_key":
            self._account_key = load_account_key(config, os.environ if environ is None else environ)
            self.shared_key = SharedKey(config.account, self._account_key, version=config.api_version)
            self._sdk_credential = {"account_name": config.account, "account_key": self._account_key}
        else:
            credential = credential if credential is not None else identity_credential(config)
            self.tokens = Tokens(credential, version=config.api_version, clock=clock)
            service = BlobServiceClient(self.endpoint, credential=credential, **_KEY_CLIENT)
            self.delegation = DelegationKeys(service, life=config.delegation_key_life, clock=clock)
            self._sdk_credential = credential

    def _capped(self, expires_at: float | None, signed_at: int, expires_in: int) -> int:
        expires = min(expires_in, MAX_EXPIRES)
        if expires_at is not None:
            expires = min(expires, int(expires_at) - MARGIN - signed_at)
        if expires < 1:
            raise Unavailable("the user delegation key expires too soon to sign a URL", retry_after=5)
        return expires

    async def sign(self, keys: Sequence[str], *, signed_at: int, expires_in: int) -> list[SignedUrl]:
        if expires_in < 1:
            raise ValueError("expires_in must be at least one second")
        if self.delegation is not None:
            key = await self.delegation.current()
            expires = self._capped(key.expires_at, signed_at, expires_in)
            batch = self.signer.batch(key, expiry=signed_at + expires)
        else:
            assert self._account_key is not None  # noqa: S101 - one of the two is always set
            expires = self._capped(None, signed_at, expires_in)
            batch = self.signer.batch(self._account_key, expiry=signed_at + expires)
        prefix, expires_at = self.config.prefix, signed_at + expires
        return [SignedUrl(batch.url(join_prefix(prefix, key)), expires_at, signed_at) for key in keys]

    async def read_headers(self, method: str, url: str, sent: Mapping[str, str]) -> dict[str, str]:
        """The headers that authenticate one read of ``url`` (proxy delivery) sent with ``sent``."""
        if self.shared_key is not None:
            return self.shared_key.headers(method, url, sent, now=self._clock())
        assert self.tokens is not None  # noqa: S101 - one of the two is always set
        return await self.tokens.headers(now=self._clock())

    def blob_url(self, key: str) -> str:
        """The blob's URL without any SAS (for header-authenticated reads)."""
        return self.signer.base + quote(join_prefix(self.config.prefix, key), safe="~/")

    async def list_page(self, prefix: str, start: str | None, limit: int) -> ListPage:
        """One ``List Blobs`` page under the dataset's prefix (``start``: Azure's continuation marker),
        read in a thread with the SDK's client, which is kept for the next page."""
        own = self.config.prefix
        full = join_prefix(own, check_prefix(prefix, MAX_KEY_BYTES - len(own.encode())))
        return await asyncio.to_thread(self._page, full, start, page_size(limit))

    def _page(self, full: str, start: str | None, size: int) -> ListPage:
        from azure.storage.blob import ContainerClient, LinearRetry

        with self._listing_lock:
            if self._listing is None:
                # One page may answer an HTTP request: two quick retries (seconds), not the SDK's 15 s first wait.
                retry = LinearRetry(backoff=1, retry_total=2, random_jitter_range=1)
                self._listing = ContainerClient(self.endpoint, self.config.container, credential=self._sdk_credential,
                                                retry_policy=retry, **_LIST_CLIENT)
        try:
            pages = self._listing.list_blobs(name_starts_with=full or None, results_per_page=size).by_page(
                continuation_token=start or None)
            blobs = list(next(pages, []))
            token = pages.continuation_token
        except AzureError as exc:  # its message names the account and the host: only a fixed text goes on
            raise _listing_error(exc) from exc
        objects = [Listed(key, blob.size, blob.etag, getattr(blob.content_settings, "content_type", None),
                          blob.last_modified.timestamp() if blob.last_modified is not None else None)
                   for key, blob in relative(((blob.name, blob) for blob in blobs), self.config.prefix)]
        return ListPage(objects, token or None)

    def health(self) -> dict[str, object]:
        info: dict[str, object] = {"kind": self.kind, "credential": self.config.credential,
                                   "network_binding": self.config.network_binding is not None}
        if self.delegation is not None and self.tokens is not None:
            info.update(self.delegation.health())
            info["token_failures"] = self.tokens.failures  # proxy reads' tokens (keys bring their own)
        else:
            info["ok"] = True
        return info


def _listing_error(exc: AzureError) -> GatewayError:
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if status == 404:
        return NotFound("the dataset's container does not exist")
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):  # a bad key, a missing role
        return BadGateway("the storage refused to list the dataset's container")
    return Unavailable("the dataset's container could not be listed; retry shortly", retry_after=5)

