"""The gateway as an OpenID Connect client of one issuer, for browser sign-in.

Authlib does the protocol: it validates the discovery document (``OpenIDProviderMetadata``),
builds the authorization request (``prepare_grant_uri`` with an S256 ``code_challenge``) and the
token request (``prepare_token_request``, ``ClientAuth``), and checks the ID token's claims
(``CodeIDToken``: ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, ``nonce``, ``at_hash``). joserfc
checks its signature, with keys from the issuer's ``JwksCache`` (shared with bearer tokens, so its
refetch limits hold) and only with the algorithms the configuration allows. HTTP goes through
``IdpHttp``, as the key cache's does: no redirects, one deadline, bounded bodies, one error type.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from joserfc.jws import JWSRegistry

from gateway.auth.claims import unverified_parts
from gateway.auth.idp_http import TOKEN_ANSWERS, IdpError, IdpFailure, IdpHttp
from gateway.auth.jwks import JwksCache
from gateway.config import BrowserSignIn, OidcIssuer
from gateway.errors import SignInFailed, Unauthenticated, Unavailable

log = logging.getLogger(__name__)
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class SignInReason(StrEnum):
    """Why a sign-in did not complete: a fixed set, safe for audit records and metric labels."""

    NOT_TOP_LEVEL = "not_top_level"
    UNKNOWN_ISSUER = "unknown_issuer"
    BAD_PARAMETERS = "bad_parameters"
    NO_TRANSACTION = "no_transaction"
    BAD_TRANSACTION = "bad_transaction"
    BAD_STATE = "bad_state"
    EXPIRED_TRANSACTION = "expired_transaction"
    REPLAYED_STATE = "replayed_state"
    IDP_ERROR = "idp_error"
    WRONG_ISSUER = "wrong_issuer"
    TOKEN_REFUSED = "token_refused"  # noqa: S105 - a reason, not a password
    BAD_ID_TOKEN = "bad_id_token"  # noqa: S105 - a reason, not a password
    SESSION_TOO_LARGE = "session_too_large"


def refuse(reason: SignInReason, detail: str) -> SignInFailed:
    return SignInFailed(detail, reason=str(reason))


def idp_code(value: object) -> str:
    """An OAuth error code from the issuer, safe to repeat in an answer and an audit record."""
    return value if isinstance(value, str) and _ERROR_CODE.match(value) else "unknown"


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    end_session_endpoint: str | None
    iss_parameter: bool  # RFC 9207: the authorization response names its issuer
    auth_methods: frozenset[str]


def load_client_secret(browser: BrowserSignIn, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(secret, None) or (None, problem); a problem never quotes the secret."""
    if browser.client_secret_env is not None:
        value = environ.get(browser.client_secret_env)
        if not value:
            return None, f"client_secret_env: environment variable {browser.client_secret_env} is not set"
        return value.strip(), None
    assert browser.client_secret_file is not None  # noqa: S101 - the schema requires one source
    try:
        value = browser.client_secret_file.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"client_secret_file: cannot read {browser.client_secret_file} ({type(exc).__name__})"
    return (value, None) if value else (None, f"client_secret_file: {browser.client_secret_file} is empty")


class BrowserClient:
    """Sign-in against one configured issuer (``issuer.browser`` is set)."""

    def __init__(self, issuer: OidcIssuer, *, client_secret: str, redirect_uri: str, http: httpx.AsyncClient,
                 jwks: JwksCache, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, metadata_ttl: float = 3600.0,
                 timeout: float = 5.0) -> None:
        assert issuer.browser is not None  # noqa: S101 - built only for issuers with browser sign-in
        self.issuer = issuer
        self.browser: BrowserSignIn = issuer.browser
        self.redirect_uri = redirect_uri
        self._auth = ClientAuth(self.browser.client_id, client_secret, "client_secret_basic")
        self._idp = IdpHttp(http, timeout)
        self._jwks = jwks
        self._clock = clock
        self._monotonic = monotonic
        self._metadata_ttl = metadata_ttl
        self._metadata: ProviderMetadata | None = None
        self._loaded_at = 0.0
        self._attempted_at: float | None = None

    def __repr__(self) -> str:  # never the secret
        return f"BrowserClient({self.issuer.name!r}, client_id={self.browser.client_id!r})"

    async def metadata(self) -> ProviderMetadata:
        """The issuer's discovery document, checked; fetched again after ``metadata_ttl``, and at
        most every ``jwks_refetch_interval`` while the issuer fails (the last good one is kept)."""
        now = self._monotonic()
        if self._metadata is not None and now - self._loaded_at < self._metadata_ttl:
            return self._metadata
        attempted = self._attempted_at
        if attempted is None or now - attempted >= self.issuer.jwks_refetch_interval:
            self._attempted_at = now
            try:
                self._metadata, self._loaded_at = await self._discover(), now
            except IdpError as exc:
                log.warning("discovery failed for issuer %s: %s: %s", self.issuer.name, exc.reason, exc)
                if self._metadata is None:
                    raise Unavailable(f"the identity provider {self.issuer.name!r} cannot be used for sign-in "
                                      f"right now ({exc.public})") from None
        if self._metadata is None:
            raise Unavailable(f"the identity provider {self.issuer.name!r} cannot be reached for sign-in")
        return self._metadata

    async def _discover(self) -> ProviderMetadata:
        document = await self._idp.get(self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration")
        # Mix-up defence: the document must be about exactly the configured issuer.
        if document.get("issuer") != self.issuer.issuer:
            raise IdpError(IdpFailure.INVALID, "the discovery document names another issuer")
        checked = OpenIDProviderMetadata(document)
        try:
            for check in (checked.validate_issuer, checked.validate_authorization_endpoint,
                          checked.validate_token_endpoint, checked.validate_jwks_uri):
                check()
        except ValueError as exc:  # authlib's words name the field, never a secret
            raise IdpError(IdpFailure.INVALID, f"the discovery document is not usable: {exc}") from None
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            # Never downgrade to plain.
            raise IdpError(IdpFailure.INVALID, "the issuer does not support PKCE with S256")
        end_session = document.get("end_session_endpoint")
        auth_methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return ProviderMetadata(
            document["issuer"], document["authorization_endpoint"], document["token_endpoint"],
            end_session if isinstance(end_session, str) and end_session.startswith(("https://", "http://")) else None,
            document.get("authorization_response_iss_parameter_supported") is True, frozenset(map(str, auth_methods)))

    async def authorization_url(self, *, state: str, nonce: str, verifier: str) -> str:
        metadata = await self.metadata()
        challenge: str = create_s256_code_challenge(verifier)  # type: ignore[no-untyped-call]
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint, self.browser.client_id, "code", redirect_uri=self.redirect_uri,
            scope=self.browser.scopes, state=state, nonce=nonce, code_challenge=challenge, code_challenge_method="S256")
        return url

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        """The token response for ``code``, over the back channel, with the PKCE verifier."""
        metadata = await self.metadata()
        body = prepare_token_request("authorization_code", code=code, redirect_uri=self.redirect_uri,
                                     code_verifier=verifier)
        url, headers, body = self._auth.prepare(  # type: ignore[no-untyped-call]
            "POST", metadata.token_endpoint,
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}, body)
        try:
            answer = await self._idp.fetch("POST", url, headers=headers, content=body, accept=TOKEN_ANSWERS)
        except IdpError as exc:
            log.warning("token request failed for issuer %s: %s: %s", self.issuer.name, exc.reason, exc)
            raise Unavailable(f"the identity provider {self.issuer.name!r} did not answer the token request "
                              f"({exc.public})") from None
        if "error" in answer:  # a refusal (RFC 6749 section 5.2): invalid_grant for a spent or forged code
            raise refuse(SignInReason.TOKEN_REFUSED, f"the identity provider refused the code "
                                                     f"({idp_code(answer.get('error'))})")
        if not isinstance(answer.get("id_token"), str):
            raise refuse(SignInReason.TOKEN_REFUSED, "the identity provider's token response has no ID token")
        return answer

    async def id_token_claims(self, tokens: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature and every claim check pass."""
        id_token = str(tokens["id_token"])
        try:
            header, _ = unverified_parts(id_token)
        except Unauthenticated:
            raise refuse(SignInReason.BAD_ID_TOKEN, "the ID token is not a signed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        # The allowed algorithms come from the configuration, never from the token: "none" and
        # HS* (an RSA public key used as an HMAC secret) cannot pass, whatever the issuer says.
        if not isinstance(alg, str) or alg not in self.issuer.algorithms:
            raise refuse(SignInReason.BAD_ID_TOKEN, f"the ID token's alg {str(alg)[:20]!r} is not allowed")
        if not isinstance(kid, str) or not kid:
            raise refuse(SignInReason.BAD_ID_TOKEN, "the ID token has no kid")
        key = await self._jwks.get(kid)
        if key is None:
            raise refuse(SignInReason.BAD_ID_TOKEN, "the issuer publishes no key for the ID token's kid")
        declared = key.jwk.get("alg")
        if declared is not None and declared != alg:
            raise refuse(SignInReason.BAD_ID_TOKEN, "the ID token's alg does not match its key")
        try:
            token = jwt.decode(id_token, import_key(key.jwk), registry=JWSRegistry(algorithms=[alg]))
            claims = CodeIDToken(
                token.claims, token.header,
                {"iss": {"essential": True, "value": self.issuer.issuer},
                 "aud": {"essential": True, "value": self.browser.client_id}},
                {"nonce": nonce, "client_id": self.browser.client_id, "access_token": tokens.get("access_token")})
            claims.validate(now=int(self._clock()), leeway=int(self.issuer.leeway))
        except JoseError as exc:
            why = exc.description or exc.error
            raise refuse(SignInReason.BAD_ID_TOKEN, f"the ID token does not verify ({why})") from None
        if "nonce" not in claims:
            raise refuse(SignInReason.BAD_ID_TOKEN, "the ID token has no nonce")
        return dict(claims)

    async def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the issuer (OpenID Connect RP-Initiated Logout 1.0), if it has one."""
        try:
            metadata = await self.metadata()
        except Unavailable:
            return None
        if metadata.end_session_endpoint is None:
            return None
        # No id_token_hint: the gateway keeps none of the issuer's tokens; client_id names the client.
        url: str = add_params_to_uri(metadata.end_session_endpoint, [
            ("client_id", self.browser.client_id), ("post_logout_redirect_uri", post_logout_redirect_uri)])
        return url
