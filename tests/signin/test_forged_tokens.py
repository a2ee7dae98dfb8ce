"""A lying issuer: forged ID tokens and untrustworthy discovery documents are refused at the callback,
and a sign-in never completes on them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.helpers import assert_error
from tests.signin.rogue import Rogue, running_rogue
from tests.signin.support import Jar, callback, gateway_app, session_key, start_login, write_policy
from tests.support import RunningGateway, serve_app


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode())) if sign else ''}"


@pytest.fixture(scope="module")
def rogue() -> Iterator[Rogue]:
    with running_rogue() as running:
        yield running


@pytest.fixture(scope="module")
def gw(rogue: Rogue, port_pool: Iterator[int], data: Path, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[RunningGateway]:
    policy = write_policy(tmp_path_factory.mktemp("rogue") / "policy.yaml", data, rogue.issuer)
    port = next(port_pool)
    with serve_app(gateway_app(port, policy, keys=[session_key()]), port) as server:
        yield server


def attempt(gw: RunningGateway) -> httpx.Response:
    jar = Jar()
    started = start_login(gw.url, jar)
    assert started.status_code == 302, started.text
    back = httpx.get(started.headers["location"], follow_redirects=False)
    response = callback(gw.url, back.headers["location"], jar)
    if response.status_code != 303:
        assert jar.session is None
    return response


def rs_other_key(rogue: Rogue, nonce: str) -> str:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return rogue.sign(rogue.claims(nonce), key=stranger)  # right kid, wrong key


def hs_with_public_key(rogue: Rogue, nonce: str) -> str:
    # Key confusion: the issuer's public key (which anyone can fetch) used as an HMAC secret.
    pem = rogue.key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return compact({"alg": "HS256", "kid": rogue.kid, "typ": "JWT"}, rogue.claims(nonce),
                   lambda data: hmac.new(pem, data, hashlib.sha256).digest())


FORGERIES: dict[str, Any] = {
    "alg_none": lambda r, n: compact({"alg": "none", "kid": r.kid}, r.claims(n)),
    "alg_none_upper": lambda r, n: compact({"alg": "NONE", "kid": r.kid}, r.claims(n)),
    "hs256_with_the_public_key": hs_with_public_key,
    "signed_by_another_key": rs_other_key,
    "wrong_audience": lambda r, n: r.sign(r.claims(n, aud="someone-else")),
    "audience_list_without_azp": lambda r, n: r.sign(r.claims(n, aud=["gateway", "another-client"])),
    "azp_of_another_client": lambda r, n: r.sign(r.claims(n, azp="another-client")),
    "wrong_issuer": lambda r, n: r.sign(r.claims(n, iss="https://evil.test")),
    "wrong_nonce": lambda r, n: r.sign(r.claims("A" * 43)),
    "missing_nonce": lambda r, n: r.sign(r.claims(n, nonce=None)),
    "expired": lambda r, n: r.sign(r.claims(n, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
    "issued_in_the_future": lambda r, n: r.sign(r.claims(n, iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
    "no_exp": lambda r, n: r.sign(r.claims(n, exp=None)),
    "no_subject": lambda r, n: r.sign(r.claims(n, sub=None)),
    "unlisted_algorithm": lambda r, n: r.sign(r.claims(n)).replace(
        r.sign(r.claims(n)).split(".")[0], b64(json.dumps({"alg": "RS512", "kid": r.kid}).encode())),
    "not_a_jwt": lambda r, n: "not.a.jwt",
    "no_kid": lambda r, n: compact({"alg": "RS256"}, r.claims(n), lambda d: b"x" * 256),
}


WHY = {
    "alg_none": "alg 'none' is not allowed", "alg_none_upper": "alg 'NONE' is not allowed",
    "audience_list_without_azp": "Missing claim: 'azp'", "azp_of_another_client": "Invalid claim: 'azp'",
    "expired": "expired", "hs256_with_the_public_key": "alg 'HS256' is not allowed",
    "issued_in_the_future": "issued in the future", "missing_nonce": "Missing claim: 'nonce'",
    "no_exp": "Missing claim: 'exp'", "no_kid": "has no kid", "no_subject": "Missing claim: 'sub'",
    "not_a_jwt": "not a signed JWT", "signed_by_another_key": "bad_signature",
    "unlisted_algorithm": "alg 'RS512' is not allowed", "wrong_audience": "Invalid claim: 'aud'",
    "wrong_issuer": "Invalid claim: 'iss'", "wrong_nonce": "Invalid claim: 'nonce'",
}


def test_an_honest_token_from_the_same_issuer_signs_in(gw: RunningGateway, rogue: Rogue) -> None:
    """The control: the forged cases below fail for their forgery, not for the setup."""
    rogue.forge = lambda r, n: r.sign(r.claims(n))
    response = attempt(gw)
    assert response.status_code == 303, response.text
    body = rogue.token_requests[-1]
    assert body["grant_type"] == ["authorization_code"] and len(body["code_verifier"][0]) == 64
    assert body["redirect_uri"] == [f"{gw.url}/v1/auth/callback"]


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_id_token_is_refused(gw: RunningGateway, rogue: Rogue, forgery: str) -> None:
    rogue.forge = FORGERIES[forgery]
    response = attempt(gw)
    body = assert_error(response, 400, "sign_in_failed")
    assert WHY[forgery] in body["detail"], body  # refused for its forgery, not for something else


def test_an_unknown_kid_is_looked_up_once_then_refused(gw: RunningGateway, rogue: Rogue) -> None:
    rogue.forge = lambda r, n: r.sign(r.claims(n), kid="never-published")
    before = rogue.jwks_fetches
    first = attempt(gw)
    looked_up = rogue.jwks_fetches - before
    # The key set is fetched again for a kid it does not hold, unless an earlier test fetched it less
    # than an interval ago; either way the issuer answered without that key: a forgery (400), never 503.
    assert looked_up <= 1
    body = assert_error(first, 400, "sign_in_failed")
    assert "publishes no key" in body["detail"]
    # However many tokens name unknown kids, the issuer is not asked again within the interval.
    for _ in range(3):
        assert_error(attempt(gw), 400, "sign_in_failed")
    assert rogue.jwks_fetches - before == looked_up


@pytest.mark.parametrize(("metadata", "words"), [
    ({"code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
    ({"issuer": "https://evil.test"}, "another issuer"),
    ({"authorization_endpoint": "ftp://evil.test/authorize"}, "authorization_endpoint"),
])
def test_a_discovery_document_that_cannot_be_trusted_stops_sign_in(
        rogue: Rogue, port_pool: Iterator[int], data: Path, tmp_path: Path, metadata: dict[str, Any],
        words: str) -> None:
    rogue.metadata = metadata
    try:
        policy = write_policy(tmp_path / "policy.yaml", data, rogue.issuer)
        port = next(port_pool)
        with serve_app(gateway_app(port, policy, keys=[session_key()]), port) as server:
            response = start_login(server.url, Jar())
            body = assert_error(response, 503, "unavailable")
            assert words in body["detail"], body
            assert not response.headers.get_list("set-cookie")
    finally:
        rogue.metadata = {}
