"""JWT bearer tokens from OIDC issuers (Okta or any other), verified against each issuer's JWKS.

One ``OidcAuthenticator`` serves every configured issuer: it reads the token's unverified ``iss``
only to choose which issuer's keys and rules apply, then verifies everything against that
issuer's configuration (the checks are in ``claims.py``). Okta access tokens (``aud`` is the
authorization server's audience, ``scp`` a list) are accepted as well as ID tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import jwt

from gateway.auth import AuthRequest
from gateway.auth.claims import (
    OidcReason,
    check_claims,
    check_times,
    fail,
    number,
    principal_from_claims,
    select_issuer,
    unverified_parts,
)
from gateway.auth.jwks import JwksCache
from gateway.config import OidcIssuer
from gateway.errors import Unauthenticated
from gateway.models import Principal


class OidcAuthenticator:
    """Verifies ``Authorization: Bearer <jwt>`` against the configured issuers.

    Algorithms come from each issuer's allow-list, never from the token; ``none`` and HS* are
    refused even if listed. A ``kid`` is required. Verified tokens are cached (bounded LRU keyed
    by the token's SHA-256, until ``exp``) so a page of thumbnails costs one signature check;
    a cached token still has its times checked on every use.
    """

    def __init__(
        self,
        issuers: Sequence[OidcIssuer],
        *,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        token_cache_size: int = 10_000,
        fetch_timeout: float = 5.0,
        on_fetch: Callable[[str, str], None] = lambda issuer, result: None,
    ) -> None:
        self.issuers = tuple(issuers)
        self._clock = clock
        self._jwks = {
            i.name: JwksCache(i, http, clock=monotonic, timeout=fetch_timeout, on_fetch=on_fetch) for i in self.issuers
        }
        self._cache: OrderedDict[bytes, tuple[OidcIssuer, Mapping[str, Any], Principal, float, float, bytes]] = (
            OrderedDict())
        self._cache_size = token_cache_size
        # The signature check only; claims are checked here, against the injected clock.
        self._jws = jwt.PyJWS(options={"verify_signature": True, "enforce_minimum_key_length": True})

    reads_authorization = True

    def jwks(self, issuer_name: str) -> JwksCache:
        return self._jwks[issuer_name]

    def carries(self, request: AuthRequest) -> bool:
        return "authorization" in request.headers

    async def authenticate(self, request: AuthRequest) -> Principal | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None  # another scheme; the chain refuses what nobody claims
        token = token.strip()
        # A token verified before costs a hash and a lookup, without a coroutine.
        return self.cached(token) or await self.verify(token)

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before, while its times still hold; None when it
        was not verified yet. Raises Unauthenticated once the token's times no longer hold."""
        cached = self._cache.get(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest())
        if cached is None:
            return None
        issuer, claims, principal, valid_from, valid_until, digest = cached
        now = self._clock()
        if not valid_from <= now <= valid_until:
            try:  # outside the window the claims were checked for: say exactly why
                check_times(issuer, claims, now)
            except Unauthenticated:
                del self._cache[digest]
                raise
        self._cache.move_to_end(digest)
        return principal

    async def verify(self, token: str) -> Principal:
        """The principal for a valid token; Unauthenticated, or Unavailable when the token's key is
        not known and its issuer cannot be reached."""
        if not token:
            raise fail(OidcReason.MALFORMED, "the bearer token is empty")
        principal = self.cached(token)
        if principal is not None:
            return principal
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

        header, unverified = unverified_parts(token)
        issuer = select_issuer(self.issuers, unverified)
        alg = header.get("alg")
        # The allow-list comes from config: "none" and HS* (a public key used as an HMAC secret)
        # can never verify, whatever the token says.
        if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
            raise fail(OidcReason.BAD_ALGORITHM, f"alg {str(alg)[:20]!r} is never accepted")
        if alg not in issuer.algorithms:
            raise fail(OidcReason.BAD_ALGORITHM, f"alg {alg[:20]!r} is not allowed for {issuer.name!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            # Not unknown_kid: that reason counts only tokens signed with keys the issuer does not publish.
            raise fail(OidcReason.MALFORMED, "the token header has no kid; this gateway requires one")
        # Unavailable (503) only while the issuer cannot be reached; with the issuer answering, a
        # kid it does not publish is the token's fault (401), however many strangers send one.
        key = await self._jwks[issuer.name].get(kid)
        if key is None:
            raise fail(OidcReason.UNKNOWN_KID, f"the token is signed with a key the issuer {issuer.name!r} does "
                       "not publish")
        try:
            pyjwk = key.for_algorithm(alg)
        except ValueError as exc:
            raise fail(OidcReason.BAD_ALGORITHM, str(exc)) from None
        claims = self._verified_claims(token, pyjwk, issuer)
        check_claims(issuer, claims, self._clock())
        principal = principal_from_claims(issuer, claims)
        self._remember(digest, issuer, claims, principal)
        return principal

    def _verified_claims(self, token: str, key: jwt.PyJWK, issuer: OidcIssuer) -> dict[str, Any]:
        try:
            payload = self._jws.decode(token, key=key, algorithms=issuer.algorithms)
        except jwt.InvalidSignatureError:
            raise fail(OidcReason.BAD_SIGNATURE, "the token's signature does not verify") from None
        except (jwt.InvalidAlgorithmError, jwt.InvalidKeyError) as exc:
            detail = f"the key cannot verify this token ({str(exc)[:120]})"
            raise fail(OidcReason.BAD_ALGORITHM, detail) from None
        except jwt.PyJWTError:
            raise fail(OidcReason.MALFORMED, "the token could not be decoded") from None
        claims = json.loads(payload)
        if not isinstance(claims, dict):  # pragma: no cover - unverified_parts checked it already
            raise fail(OidcReason.MALFORMED, "the token payload is not a JSON object")
        return claims

    def _remember(self, digest: bytes, issuer: OidcIssuer, claims: Mapping[str, Any], principal: Principal) -> None:
        # The window in which check_times passes, computed once (claims were checked: exp is a number).
        exp = number(claims, "exp") or 0.0
        starts = [t for t in (number(claims, "nbf"), number(claims, "iat")) if t is not None]
        valid_from = max(starts) - issuer.leeway if starts else -math.inf
        self._cache[digest] = (issuer, claims, principal, valid_from, exp + issuer.leeway, digest)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
