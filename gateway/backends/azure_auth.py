"""How the gateway authenticates its own reads from Azure Blob Storage: header signatures, never a URL.

Two ways, as the dataset's credential allows: ``SharedKey`` (an account key, for development) signs
the request's method, its standard headers and its path; a Microsoft Entra access token (workload or
managed identity, from azure-identity) goes in ``Authorization: Bearer``. Both carry ``x-ms-date``
and ``x-ms-version``. Nothing here is ever logged or returned to a client.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hmac
import threading
import time
from collections.abc import Callable, Mapping

import yarl
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError

from gateway.backends.azure_sas import STORAGE_SCOPE
from gateway.errors import Unavailable

# The standard headers SharedKey signs, in its order (Date is empty: x-ms-date is sent instead).
_SIGNED = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
           "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")
TOKEN_MARGIN = 300  # seconds: a token closer than this to its expiry is replaced before use


class SharedKey:
    """Signs requests with an account key (``Authorization: SharedKey account:signature``)."""

    def __init__(self, account: str, key: str, *, version: str) -> None:
        self.account = account
        self.version = version
        self._key = base64.b64decode(key, validate=True)

    def headers(self, method: str, url: str, sent: Mapping[str, str], *, now: float) -> dict[str, str]:
        """The headers that authenticate ``method url`` sent with the headers ``sent`` (Range, the
        conditionals): every one of them is signed, so each must be sent exactly as given here."""
        lower = {name.lower(): value for name, value in sent.items()}
        ms = {"x-ms-date": email.utils.formatdate(int(now), usegmt=True), "x-ms-version": self.version}
        # aiohttp sends yarl's form of the path; the storage signs what it receives.
        path = yarl.URL(url).raw_path
        lines = [method, *(lower.get(name, "") for name in _SIGNED)]
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(ms.items()))
        string_to_sign = "\n".join(lines) + "\n" + canonical + f"/{self.account}{path}"
        digest = hmac.digest(self._key, string_to_sign.encode(), "sha256")
        return {**ms, "Authorization": f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"}


class Tokens:
    """Microsoft Entra access tokens for Azure Storage from an azure-identity credential.

    A token is reused until :data:`TOKEN_MARGIN` seconds before it expires; getting a new one is a
    network call (the token endpoint of workload or managed identity), so it runs in a thread, one at
    a time, with a deadline. Failures become ``Unavailable`` and name no endpoint, tenant or client.
    """

    def __init__(self, credential: TokenCredential, *, version: str, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0) -> None:
        self.credential = credential
        self.version = version
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self.failures = 0

    def _fresh(self) -> AccessToken | None:
        token = self._token
        return token if token is not None and token.expires_on - TOKEN_MARGIN > self._clock() else None

    def _refresh(self) -> AccessToken:
        with self._lock:  # concurrent requests wait for one refresh instead of each making one
            token = self._fresh()
            if token is None:
                token = self._token = self.credential.get_token(STORAGE_SCOPE)
            return token

    async def token(self) -> str:
        token = self._fresh()
        if token is None:
            try:
                token = await asyncio.wait_for(asyncio.to_thread(self._refresh), self.timeout)
            except (AzureError, TimeoutError, ValueError, OSError) as exc:
                self.failures += 1
                raise Unavailable("could not obtain a Microsoft Entra token for Azure Storage",
                                  retry_after=5) from exc
        return token.token

    async def headers(self, *, now: float) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token()}",
                "x-ms-date": email.utils.formatdate(int(now), usegmt=True), "x-ms-version": self.version}
