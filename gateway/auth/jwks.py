"""An issuer's signing keys: discovery, the JWKS document, and a cache that survives outages.

One ``JwksCache`` per configured issuer. Keys are fetched on first use and again when the cache
is older than ``jwks_cache_ttl``, or when a token names a ``kid`` the cache does not hold (keys
rotate). Fetch *attempts* are spaced at least ``jwks_refetch_interval`` apart, and concurrent
callers share one fetch, so no number of unknown ``kid``s can make the gateway flood the issuer.
A failed fetch keeps the last good keys: tokens signed with known keys keep working while the
issuer is down, and only a ``kid`` that cannot be looked up gives ``Unavailable`` (503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from gateway.config import OidcIssuer
from gateway.errors import Unavailable

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1_000_000
_ACCEPT_JSON = {"Accept": "application/json"}


class FetchError(Exception):
    """Discovery or JWKS could not be fetched or understood. The message names no secrets."""


@dataclass(slots=True)
class SigningKey:
    """One verification key from a JWKS, with a PyJWK per algorithm it is used with."""

    kid: str
    jwk: dict[str, Any]
    _by_alg: dict[str, jwt.PyJWK] = field(default_factory=dict, repr=False)

    def for_algorithm(self, alg: str) -> jwt.PyJWK:
        """The key bound to ``alg`` (from the allow-list); ValueError when the key cannot do ``alg``."""
        declared = self.jwk.get("alg")
        # A key that declares its algorithm is used with that algorithm only (RFC 7517 section 4.4).
        if declared is not None and declared != alg:
            raise ValueError(f"key {self.kid!r} is for {declared}, not {alg}")
        key = self._by_alg.get(alg)
        if key is None:
            try:
                key = jwt.PyJWK(self.jwk, algorithm=alg)
            except jwt.PyJWTError as exc:
                raise ValueError(f"key {self.kid!r} ({self.jwk.get('kty')}) cannot verify {alg}") from exc
            self._by_alg[alg] = key
        return key


def parse_jwks(document: object) -> dict[str, SigningKey]:
    """Usable signing keys by kid. Keys without a kid, symmetric keys, encryption keys and keys
    that do not parse are skipped; a document with no usable key at all is an error."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise FetchError("the JWKS is not a JSON object with a 'keys' list")
    keys: dict[str, SigningKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        # Symmetric ("oct") keys are never accepted: a JWKS is public, so they would be public too.
        if not isinstance(kid, str) or not kid or kid in keys or jwk.get("kty") not in {"RSA", "EC", "OKP"}:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            jwt.PyJWK(jwk)
        except jwt.PyJWTError:
            continue
        keys[kid] = SigningKey(kid, dict(jwk))
    if not keys:
        raise FetchError("the JWKS holds no usable signing key")
    return keys


class JwksCache:
    """The signing keys of one issuer (see the module docstring for the fetch rules)."""

    def __init__(
        self,
        issuer: OidcIssuer,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 5.0,
        on_fetch: Callable[[str, str], None] = lambda issuer, result: None,
    ) -> None:
        self.issuer = issuer
        self._on_fetch = on_fetch
        self.fetches = 0  # attempts, successful or not
        self.failures = 0
        self._http = http
        self._clock = clock
        self._timeout = httpx.Timeout(timeout)
        self._keys: dict[str, SigningKey] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._last_error: str | None = None
        self._jwks_uri = issuer.jwks_uri
        self._lock = asyncio.Lock()

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def get(self, kid: str) -> SigningKey | None:
        """The key for ``kid``; None when the issuer does not publish it; Unavailable when the
        key is not known and the issuer cannot be asked right now."""
        key = self._keys.get(kid)
        loaded_at = self._loaded_at
        fresh = loaded_at is not None and self._clock() - loaded_at < self.issuer.jwks_cache_ttl
        if key is not None and (fresh or self._lock.locked()):
            return key  # a stale known key is not held up behind a refresh already in flight
        fetched = await self._refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key  # possibly from the last good set, if this refresh failed
        if self._last_error is not None:
            raise Unavailable(
                f"the identity provider {self.issuer.name!r} cannot be reached to look up a signing key",
                retry_after=self._retry_after(),
            )
        if not fetched:
            # The issuer may have rotated in a key we have not fetched yet, and we may not ask again
            # yet: "log in again" (401) would be wrong, so the client is told when to retry.
            raise Unavailable(
                f"{self.issuer.name!r} does not publish key {kid[:100]!r} as far as the gateway knows; its keys "
                "are fetched again shortly", retry_after=self._retry_after())
        return None

    async def _refresh(self) -> bool:
        """Fetch the keys unless a fetch is not allowed yet; True when a fetch was made (by this
        caller, or by another one while this one waited)."""
        attempted_at = self._attempted_at
        in_flight = self._lock.locked()
        async with self._lock:
            if in_flight or self._attempted_at != attempted_at:
                return True  # single flight: another caller fetched while this one waited
            now = self._clock()
            last = self._attempted_at
            if last is not None and now - last < self.issuer.jwks_refetch_interval:
                return False  # rate limit: unknown kids must not turn into a flood of fetches
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except FetchError as exc:
                self.failures += 1
                self._on_fetch(self.issuer.name, "error")
                self._last_error = str(exc)
                log.warning(
                    "jwks fetch failed for issuer %s: %s (keeping %d known keys)",
                    self.issuer.name,
                    exc,
                    len(self._keys),
                )
                return True
            self._on_fetch(self.issuer.name, "success")
            self._keys = keys
            self._loaded_at = now
            self._last_error = None
            return True

    def _retry_after(self) -> int:
        if self._attempted_at is None:
            return 1
        wait = self.issuer.jwks_refetch_interval - (self._clock() - self._attempted_at)
        return max(1, math.ceil(wait))

    async def _fetch(self) -> dict[str, SigningKey]:
        uri = self._jwks_uri or await self._discover()
        try:
            return parse_jwks(await self._get_json(uri))
        except FetchError:
            if self.issuer.jwks_uri is None:
                self._jwks_uri = None  # discover again next time: the issuer may have moved its keys
            raise

    async def _discover(self) -> str:
        url = self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url)
        if not isinstance(document, dict):
            raise FetchError("the discovery document is not a JSON object")
        # The document must be about the configured issuer (OpenID Connect Discovery, section 4.3).
        if document.get("issuer") != self.issuer.issuer:
            raise FetchError("the discovery document names a different issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not self._acceptable(uri):
            raise FetchError("the discovery document has no usable https jwks_uri")
        self._jwks_uri = uri
        return uri

    def _acceptable(self, uri: str) -> bool:
        # Keys must come over TLS; plain http only when the issuer itself was configured as http.
        plain = uri.startswith("http://") and self.issuer.issuer.startswith("http://")
        return uri.startswith("https://") or plain

    async def _get_json(self, url: str) -> object:
        try:
            async with self._http.stream(
                "GET", url, timeout=self._timeout, follow_redirects=False, headers=_ACCEPT_JSON
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"GET {url} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise FetchError(f"GET {url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise FetchError(f"GET {url} failed: {type(exc).__name__}") from exc
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise FetchError(f"GET {url} did not answer JSON") from exc
