"""The ``auth`` section: vendor HMAC keys and OIDC issuers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.types import NAME, Duration, Origin, Strict


class VendorKey(Strict):
    id: str = Field(pattern=NAME)
    secret_env: str | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VendorKey:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env or secret_file")
        return self


SignatureVersion = Literal[1, 2]
SIGNATURE_VERSIONS = (1, 2)


def _version_2_only() -> list[SignatureVersion]:
    return [2]


class Vendor(Strict):
    name: str = Field(pattern=NAME)
    keys: list[VendorKey] = Field(min_length=1)
    max_skew: Duration = 300.0
    # Version 1 does not sign the request body, so by default only version 2 is accepted; an operator
    # lists 1 only while that vendor migrates (docs/vendor-auth.md, "Moving from version 1 to version 2").
    signature_versions: list[SignatureVersion] = Field(default_factory=_version_2_only)

    @field_validator("signature_versions", mode="before")
    @classmethod
    def _known_versions(cls, value: object) -> object:
        if not isinstance(value, list | tuple):
            return value  # pydantic reports the type
        # Exact ints only: YAML's true (or "2") is a typo, not a version.
        bad = [v for v in value if type(v) is not int or v not in SIGNATURE_VERSIONS]
        if bad:
            raise ValueError(f"signature versions are 1 (does not sign the body) and 2; got {bad!r}")
        if not value:
            raise ValueError("list at least one signature version (2; and 1 only while the vendor migrates)")
        if len(set(value)) != len(value):
            raise ValueError(f"a signature version is listed twice: {list(value)!r}")
        return value


MAX_SESSION_TTL = 86_400.0


class BrowserSignIn(Strict):
    """Employees' browsers sign in to the gateway itself (authorization code flow with PKCE), and
    then carry a session cookie that ``<img>`` tags send without the vendor's help."""

    client_id: str = Field(min_length=1, max_length=256)
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile", "groups"])
    session_ttl: Duration = Field(28_800.0, gt=0, le=MAX_SESSION_TTL)  # absolute: a new sign-in after it
    idle_ttl: Duration = Field(3600.0, gt=0)
    embedders: list[Origin] = Field(default_factory=list)  # sites whose pages may load objects with the session
    return_origins: list[Origin] = Field(default_factory=list)  # where sign-in may send the browser back to
    # Capabilities (GET /v1/auth/connect): a short-lived per-user credential an embedder's page gets
    # in a popup and every loader carries, for browsers that block third-party cookies.
    capability_ttl: Duration = Field(900.0, ge=60, le=86_400)
    capability_bind_address: bool = True  # usable only from the address it was handed to

    @model_validator(mode="after")
    def _consistent(self) -> BrowserSignIn:
        if (self.client_secret_env is None) == (self.client_secret_file is None):
            raise ValueError("give exactly one of client_secret_env or client_secret_file")
        if "openid" not in self.scopes:
            raise ValueError("scopes must include openid: sign-in needs an ID token")
        if any(not scope or any(c.isspace() or c in '"\\' for c in scope) for scope in self.scopes):
            raise ValueError("a scope is a non-empty word without spaces or quotes")
        if self.idle_ttl > self.session_ttl:
            raise ValueError("idle_ttl cannot be longer than session_ttl")
        return self


class OidcIssuer(Strict):
    name: str = Field(pattern=NAME)
    issuer: str = Field(pattern=r"^https?://")
    audience: str | list[str]
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwks_uri: str | None = None
    subject_claim: str = "sub"
    email_claim: str = "email"
    groups_claim: str = "groups"
    leeway: Duration = Field(60.0, le=600)
    jwks_cache_ttl: Duration = 3600.0
    jwks_refetch_interval: Duration = 30.0
    # Tokens that live longer (exp minus iat, or minus now without iat) are refused.
    max_token_lifetime: Duration = Field(86_400.0, gt=0, le=30 * 86_400)
    browser: BrowserSignIn | None = None

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        # Symmetric and unsigned algorithms would let a public key act as a shared secret.
        bad = [a for a in algorithms if a not in allowed]
        if bad or not algorithms:
            raise ValueError(f"algorithms must be asymmetric ({', '.join(sorted(allowed))}); got {bad or '[]'}")
        return algorithms


class AuthConfig(Strict):
    vendors: list[Vendor] = Field(default_factory=list)
    oidc: list[OidcIssuer] = Field(default_factory=list)
