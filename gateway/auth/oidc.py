"""JWT bearer tokens from OIDC issuers (Okta or any other), verified against each issuer's JWKS.

One ``OidcAuthenticator`` serves every configured issuer: it reads the token's unverified ``iss``
only to choose which issuer's keys and rules apply, then verifies everything against that
issuer's configuration. Okta access tokens (``aud`` is the authorization server's audience,
``scp`` a list) are accepted as well as ID tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import httpx
import jwt

from gateway.auth import AuthRequest
from gateway.auth.jwks import JwksCache
from gateway.config import OidcIssuer
from gateway.errors import Unauthenticated
from gateway.models import AuthMethod, Principal

SCHEME = "Bearer"
MAX_TOKEN_BYTES = 32_768  # Okta tokens with the 100-group cap stay well below this
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class OidcReason(StrEnum):
    """Why a bearer token was refused: a fixed set, safe for audit records and metric labels."""

    MALFORMED = "malformed"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_KID = "unknown_kid"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_AUDIENCE = "bad_audience"
    BAD_ISSUER = "bad_issuer"
    MISSING_CLAIM = "missing_claim"


def _fail(reason: OidcReason, detail: str) -> Unauthenticated:
    return Unauthenticated(detail, scheme=SCHEME, reason=str(reason))


def _segment(text: str, name: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise _fail(OidcReason.MALFORMED, f"the token {name} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise _fail(OidcReason.MALFORMED, f"the token {name} is not a JSON object")
    return value


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, NOT verified. Raises Unauthenticated(malformed)."""
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise _fail(OidcReason.MALFORMED, "the bearer token is not a JWT")
    parts = token.split(".")
    # The signature may be empty (alg "none" looks like that); it is refused by algorithm later.
    if len(parts) != 3 or not parts[0] or not parts[1] or not all(_B64URL.match(p) for p in parts):
        raise _fail(OidcReason.MALFORMED, "the bearer token is not a JWT (three base64url parts)")
    return _segment(parts[0], "header"), _segment(parts[1], "payload")


def _audiences(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def _configured_audiences(issuer: OidcIssuer) -> set[str]:
    return {issuer.audience} if isinstance(issuer.audience, str) else set(issuer.audience)


def select_issuer(issuers: Sequence[OidcIssuer], claims: Mapping[str, Any]) -> OidcIssuer:
    """The issuer configuration for these (unverified) claims, by exact ``iss``; when several
    configurations share one issuer URL, the one whose audience the token names."""
    iss = claims.get("iss")
    if not isinstance(iss, str):
        raise _fail(OidcReason.MALFORMED, "the token has no iss claim")
    candidates = [issuer for issuer in issuers if issuer.issuer == iss]
    if not candidates:
        shown = iss if len(iss) <= 200 else iss[:200] + "..."
        raise _fail(OidcReason.UNKNOWN_ISSUER, f"the token's issuer {shown!r} is not configured")
    token_aud = _audiences(claims.get("aud"))
    return next((c for c in candidates if _configured_audiences(c) & token_aud), candidates[0])


def issuer_for_token(issuers: Sequence[OidcIssuer], token: str) -> OidcIssuer:
    """The issuer configuration a token claims to come from, without verifying anything."""
    return select_issuer(issuers, unverified_parts(token)[1])


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(OidcReason.MALFORMED, f"the {name} claim is not a number")
    return float(value)


def check_times(issuer: OidcIssuer, claims: Mapping[str, Any], now: float) -> float:
    """Check exp (required), nbf and iat with the issuer's leeway; returns exp."""
    exp = _number(claims, "exp")
    if exp is None:
        raise _fail(OidcReason.MISSING_CLAIM, "the token has no exp claim; tokens must expire")
    if now > exp + issuer.leeway:
        raise _fail(OidcReason.EXPIRED, f"the token expired {now - exp:.0f}s ago")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + issuer.leeway < nbf:
        raise _fail(OidcReason.NOT_YET_VALID, f"the token is not valid for another {nbf - now:.0f}s")
    iat = _number(claims, "iat")
    if iat is not None and now + issuer.leeway < iat:
        raise _fail(OidcReason.NOT_YET_VALID, "the token was issued in the future (check clocks)")
    return exp


def check_claims(issuer: OidcIssuer, claims: Mapping[str, Any], now: float) -> float:
    """Check iss, aud, exp, nbf and iat of verified claims; returns exp."""
    if claims.get("iss") != issuer.issuer:
        raise _fail(OidcReason.BAD_ISSUER, f"the token was not issued by {issuer.name!r}")
    if "aud" not in claims:
        raise _fail(OidcReason.MISSING_CLAIM, "the token has no aud claim")
    if not _audiences(claims["aud"]) & _configured_audiences(issuer):
        raise _fail(OidcReason.BAD_AUDIENCE, f"the token is not meant for this gateway's audience for {issuer.name!r}")
    return check_times(issuer, claims, now)


def _names(value: object, *, split: bool) -> frozenset[str]:
    # Group names may contain spaces (Okta: "ML Team"), so a string is one group; scopes split.
    if isinstance(value, str):
        return frozenset(value.split()) if split else frozenset([value]) if value else frozenset()
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


def principal_from_claims(issuer: OidcIssuer, claims: Mapping[str, Any]) -> Principal:
    """The principal these claims describe, using the issuer's claim names. Does not verify
    anything: only for claims that were verified, or for offline explanation (``gateway explain``)."""
    subject = claims.get(issuer.subject_claim)
    if isinstance(subject, int) and not isinstance(subject, bool):
        subject = str(subject)
    if not isinstance(subject, str) or not subject:
        raise _fail(OidcReason.MISSING_CLAIM, f"the token has no {issuer.subject_claim} claim")
    email = claims.get(issuer.email_claim)
    return Principal(
        method=AuthMethod.OIDC,
        subject=subject,
        email=email if isinstance(email, str) and email else None,
        issuer=issuer.name,
        groups=_names(claims.get(issuer.groups_claim), split=False),
        # Okta puts scopes in "scp" (a list); RFC 9068 uses "scope" (a space-separated string).
        scopes=_names(claims.get("scp"), split=True) | _names(claims.get("scope"), split=True),
    )


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
        """The principal for a valid token, or Unauthenticated / Unavailable."""
        if not token:
            raise _fail(OidcReason.MALFORMED, "the bearer token is empty")
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
            raise _fail(OidcReason.BAD_ALGORITHM, f"alg {str(alg)[:20]!r} is never accepted")
        if alg not in issuer.algorithms:
            raise _fail(OidcReason.BAD_ALGORITHM, f"alg {alg[:20]!r} is not allowed for {issuer.name!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _fail(OidcReason.UNKNOWN_KID, "the token header has no kid; this gateway requires one")
        key = await self._jwks[issuer.name].get(kid)
        if key is None:
            raise _fail(OidcReason.UNKNOWN_KID, f"{issuer.name!r} publishes no key {kid[:100]!r}")
        try:
            pyjwk = key.for_algorithm(alg)
        except ValueError as exc:
            raise _fail(OidcReason.BAD_ALGORITHM, str(exc)) from None
        claims = self._verified_claims(token, pyjwk, issuer)
        check_claims(issuer, claims, self._clock())
        principal = principal_from_claims(issuer, claims)
        self._remember(digest, issuer, claims, principal)
        return principal

    def _verified_claims(self, token: str, key: jwt.PyJWK, issuer: OidcIssuer) -> dict[str, Any]:
        try:
            payload = self._jws.decode(token, key=key, algorithms=issuer.algorithms)
        except jwt.InvalidSignatureError:
            raise _fail(OidcReason.BAD_SIGNATURE, "the token's signature does not verify") from None
        except (jwt.InvalidAlgorithmError, jwt.InvalidKeyError) as exc:
            detail = f"the key cannot verify this token ({str(exc)[:120]})"
            raise _fail(OidcReason.BAD_ALGORITHM, detail) from None
        except jwt.PyJWTError:
            raise _fail(OidcReason.MALFORMED, "the token could not be decoded") from None
        claims = json.loads(payload)
        if not isinstance(claims, dict):  # pragma: no cover - unverified_parts checked it already
            raise _fail(OidcReason.MALFORMED, "the token payload is not a JSON object")
        return claims

    def _remember(self, digest: bytes, issuer: OidcIssuer, claims: Mapping[str, Any], principal: Principal) -> None:
        # The window in which check_times passes, computed once (claims were checked: exp is a number).
        exp = _number(claims, "exp") or 0.0
        starts = [t for t in (_number(claims, "nbf"), _number(claims, "iat")) if t is not None]
        valid_from = max(starts) - issuer.leeway if starts else -math.inf
        self._cache[digest] = (issuer, claims, principal, valid_from, exp + issuer.leeway, digest)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
