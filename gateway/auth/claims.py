"""A JWT's parts and claims, read and checked against one configured issuer: the rules every
token the gateway accepts must pass, with a fixed set of reasons for refusing one."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

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
    TOO_LONG_LIVED = "too_long_lived"


def fail(reason: OidcReason, detail: str) -> Unauthenticated:
    return Unauthenticated(detail, scheme=SCHEME, reason=str(reason))


def _segment(text: str, name: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise fail(OidcReason.MALFORMED, f"the token {name} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise fail(OidcReason.MALFORMED, f"the token {name} is not a JSON object")
    return value


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, NOT verified. Raises Unauthenticated(malformed)."""
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise fail(OidcReason.MALFORMED, "the bearer token is not a JWT")
    parts = token.split(".")
    # The signature may be empty (alg "none" looks like that); it is refused by algorithm later.
    if len(parts) != 3 or not parts[0] or not parts[1] or not all(_B64URL.match(p) for p in parts):
        raise fail(OidcReason.MALFORMED, "the bearer token is not a JWT (three base64url parts)")
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
        raise fail(OidcReason.MALFORMED, "the token has no iss claim")
    candidates = [issuer for issuer in issuers if issuer.issuer == iss]
    if not candidates:
        shown = iss if len(iss) <= 200 else iss[:200] + "..."
        raise fail(OidcReason.UNKNOWN_ISSUER, f"the token's issuer {shown!r} is not configured")
    token_aud = _audiences(claims.get("aud"))
    return next((c for c in candidates if _configured_audiences(c) & token_aud), candidates[0])


def issuer_for_token(issuers: Sequence[OidcIssuer], token: str) -> OidcIssuer:
    """The issuer configuration a token claims to come from, without verifying anything."""
    return select_issuer(issuers, unverified_parts(token)[1])


def number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(OidcReason.MALFORMED, f"the {name} claim is not a number")
    return float(value)


def check_times(issuer: OidcIssuer, claims: Mapping[str, Any], now: float) -> float:
    """Check exp (required), nbf and iat with the issuer's leeway; returns exp."""
    exp = number(claims, "exp")
    if exp is None:
        raise fail(OidcReason.MISSING_CLAIM, "the token has no exp claim; tokens must expire")
    if now > exp + issuer.leeway:
        raise fail(OidcReason.EXPIRED, f"the token expired {now - exp:.0f}s ago")
    nbf = number(claims, "nbf")
    if nbf is not None and now + issuer.leeway < nbf:
        raise fail(OidcReason.NOT_YET_VALID, f"the token is not valid for another {nbf - now:.0f}s")
    iat = number(claims, "iat")
    if iat is not None and now + issuer.leeway < iat:
        raise fail(OidcReason.NOT_YET_VALID, "the token was issued in the future (check clocks)")
    return exp


def check_claims(issuer: OidcIssuer, claims: Mapping[str, Any], now: float) -> float:
    """Check iss, aud, exp, nbf and iat of verified claims; returns exp."""
    if claims.get("iss") != issuer.issuer:
        raise fail(OidcReason.BAD_ISSUER, f"the token was not issued by {issuer.name!r}")
    if "aud" not in claims:
        raise fail(OidcReason.MISSING_CLAIM, "the token has no aud claim")
    if not _audiences(claims["aud"]) & _configured_audiences(issuer):
        raise fail(OidcReason.BAD_AUDIENCE, f"the token is not meant for this gateway's audience for {issuer.name!r}")
    exp = check_times(issuer, claims, now)
    # A token that lives for years (exp 1e308) is a credential that never ends: no issuer the
    # gateway trusts should mint one, and one stolen would never stop working.
    iat = number(claims, "iat")
    lifetime = exp - (iat if iat is not None else now)
    if lifetime > issuer.max_token_lifetime:
        raise fail(OidcReason.TOO_LONG_LIVED, f"the token lives {_span(lifetime)}, longer than max_token_lifetime "
                   f"({_span(issuer.max_token_lifetime)}) for {issuer.name!r}")
    return exp


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.1f}h" if seconds < 1e7 else "practically forever"


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
        raise fail(OidcReason.MISSING_CLAIM, f"the token has no {issuer.subject_claim} claim")
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
