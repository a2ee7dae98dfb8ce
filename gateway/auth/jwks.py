"""An issuer's signing keys: discovery, the JWKS document, and a cache that survives outages.

One ``JwksCache`` per configured issuer. Keys are fetched on first use and again when the cache
is older than ``jwks_cache_ttl``, or when a token names a ``kid`` the cache does not hold (keys
rotate). Fetch *attempts* are spaced at least ``jwks_refetch_interval`` apart, and concurrent
callers share one fetch, so no number of unknown ``kid``s can make the gateway flood the issuer.

What an unknown ``kid`` gets depends only on the issuer, never on how many strangers ask:

- the last fetch succeeded (it may have been this request's, or one less than an interval ago):
  the issuer does not publish the key, and the token is refused (``None``, a 401). A stranger
  can send any number of these without moving the gateway's 5xx rate;
- the last fetch failed: the gateway cannot tell, and says so (``Unavailable``, 503 with
  ``Retry-After``): its own problem, not the client's.

A failed fetch keeps the last good keys, so tokens signed with known keys keep working while the
issuer is down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from gateway.auth.idp_http import IdpError, IdpFailure, IdpHttp
from gateway.config import OidcIssuer
from gateway.errors import Unavailable

log = logging.getLogger(__name__)


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
        raise IdpError(IdpFailure.INVALID, "the JWKS is not a JSON object with a 'keys' list")
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
        raise IdpError(IdpFailure.INVALID, "the JWKS holds no usable signing key")
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
        self._idp = IdpHttp(http, timeout)
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._failure: IdpError | None = None  # why the latest attempt failed; None once one succeeds
        self._jwks_uri = issuer.jwks_uri
        self._lock = asyncio.Lock()

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    @property
    def reachable(self) -> bool:
        """Did the latest fetch succeed? (Then an unknown kid is one the issuer does not publish.)"""
        return self._attempted_at is not None and self._failure is None

    async def get(self, kid: str) -> SigningKey | None:
        """The key for ``kid``; None when the issuer does not publish it (as of its latest
        successful fetch); Unavailable when the key is not known and the issuer could not be asked."""
        key = self._keys.get(kid)
        loaded_at = self._loaded_at
        fresh = loaded_at is not None and self._clock() - loaded_at < self.issuer.jwks_cache_ttl
        if key is not None and (fresh or self._lock.locked()):
            return key  # a stale known key is not held up behind a refresh already in flight
        await self._refresh()  # fetches only when allowed; else waits for one in flight, or returns
        key = self._keys.get(kid)
        if key is not None:
            return key  # possibly from the last good set, if this refresh failed
        if self._failure is not None:
            # The gateway's problem, not the client's: the key may exist, and nobody can say.
            raise Unavailable(
                f"the identity provider {self.issuer.name!r} cannot be reached to look up the token's signing "
                f"key ({self._failure.reason})", retry_after=self._retry_after())
        # The issuer answered at most one interval ago, without this key. A key it has published
        # since is found by the first token that names it after the interval (docs/okta.md).
        return None

    async def _refresh(self) -> None:
        """Fetch the keys, unless another caller just did (single flight) or the last attempt was
        less than ``jwks_refetch_interval`` ago (rate limit)."""
        attempted_at = self._attempted_at
        in_flight = self._lock.locked()  # the lock is held across one await only: the fetch
        async with self._lock:
            if in_flight or self._attempted_at != attempted_at:
                return  # single flight: another caller fetched while this one waited
            now = self._clock()
            if attempted_at is not None and now - attempted_at < self.issuer.jwks_refetch_interval:
                return  # rate limit: unknown kids must not turn into a flood of fetches
            self._attempted_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except IdpError as exc:
                self.failures += 1
                self._on_fetch(self.issuer.name, "error")
                self._failure = exc
                log.warning("jwks fetch failed for issuer %s: %s: %s (keeping %d known keys)",
                            self.issuer.name, exc.reason, exc, len(self._keys))
                return
            self._on_fetch(self.issuer.name, "success")
            self._keys = keys
            self._loaded_at = now
            self._failure = None

    def _retry_after(self) -> int:
        if self._attempted_at is None:
            return 1
        wait = self.issuer.jwks_refetch_interval - (self._clock() - self._attempted_at)
        return max(1, math.ceil(wait))

    async def _fetch(self) -> dict[str, SigningKey]:
        uri = self._jwks_uri or await self._discover()
        try:
            return parse_jwks(await self._idp.get(uri))
        except IdpError:
            if self.issuer.jwks_uri is None:
                self._jwks_uri = None  # discover again next time: the issuer may have moved its keys
            raise

    async def _discover(self) -> str:
        document = await self._idp.get(self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration")
        # The document must be about the configured issuer (OpenID Connect Discovery, section 4.3).
        if document.get("issuer") != self.issuer.issuer:
            raise IdpError(IdpFailure.INVALID, "the discovery document names a different issuer")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not self._acceptable(uri):
            raise IdpError(IdpFailure.INVALID, "the discovery document has no usable https jwks_uri")
        self._jwks_uri = uri
        return uri

    def _acceptable(self, uri: str) -> bool:
        # Keys must come over TLS; plain http only when the issuer itself was configured as http.
        plain = uri.startswith("http://") and self.issuer.issuer.startswith("http://")
        return uri.startswith("https://") or plain
