"""OIDC bearer tokens: real keys, a real IdP over HTTP, and every way a token can be wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.auth import AuthRequest
from gateway.auth.claims import issuer_for_token, principal_from_claims, unverified_parts
from gateway.errors import Unauthenticated
from gateway.models import AuthMethod

from .support import FakeClock, Idp, SigningKey, claims_for, issuer_config, oidc_authenticator

pytestmark = pytest.mark.anyio


def request(token: str | None, scheme: str = "Bearer") -> AuthRequest:
    headers = {} if token is None else {"authorization": f"{scheme} {token}"}
    return AuthRequest("GET", "/v1/x", "", headers, ipaddress.ip_address("10.0.0.1"))


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_valid_token_gives_the_principal(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk(), keys["e1"].jwk()]
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        for key in (keys["k1"], keys["e1"]):
            token = key.sign(claims_for(idp, wall, email="ada@example.com", groups=["ml-team", "ML Team"]))
            principal = await auth.authenticate(request(token))
            assert principal is not None
            assert principal.method is AuthMethod.OIDC
            assert principal.subject == "ada@example.com"
            assert principal.email == "ada@example.com"
            assert principal.issuer == "okta"
            assert principal.groups == {"ml-team", "ML Team"}


async def test_okta_access_token_with_groups_and_scopes(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    okta = {
        "ver": 1,
        "cid": "0oa1abcd",
        "uid": "00u1xyz",
        "sub": "ada@example.com",
        "aud": "api://default",
        "scp": ["openid", "profile", "datasets.read"],
        "groups": ["ml-team"],
    }
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        principal = await auth.verify(keys["k1"].sign(claims_for(idp, wall, **okta)))
        assert principal.groups == {"ml-team"}
        assert principal.scopes == {"openid", "profile", "datasets.read"}
        assert principal.email is None  # Okta access tokens carry no email unless you add the claim
        # scp as a space-separated string, scope (RFC 9068) as well; a string groups claim is one group.
        other = claims_for(idp, wall, scp="a b", scope="c", groups="ML Team", aud=["other", "api://default"])
        principal = await auth.verify(keys["k1"].sign(other))
        assert principal.scopes == {"a", "b", "c"}
        assert principal.groups == {"ML Team"}


async def test_id_token_and_custom_claims(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    issuer = issuer_config(
        idp,
        audience=["api://default", "0oa-client-id"],
        subject_claim="uid",
        email_claim="preferred_username",
        groups_claim="roles",
    )
    claims = claims_for(
        idp, wall, aud="0oa-client-id", uid="00u1", preferred_username="ada@x.io", roles=["admin"], nonce="n"
    )
    async with oidc_authenticator([issuer], wall, mono) as auth:
        principal = await auth.verify(keys["k1"].sign(claims))
    assert (principal.subject, principal.email, principal.groups) == ("00u1", "ada@x.io", frozenset({"admin"}))


async def test_other_schemes_and_no_header_are_not_ours(idp: Idp, wall: FakeClock, mono: FakeClock) -> None:
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        assert await auth.authenticate(request(None)) is None
        assert await auth.authenticate(request("dXNlcjpwYXNz", scheme="Basic")) is None
    assert idp.hits.total() == 0


def _alg_none(key: SigningKey, claims: dict[str, Any]) -> str:
    return f"{b64({'alg': 'none', 'kid': key.kid})}.{b64(claims)}."


def _hs256_with_public_key(key: SigningKey, claims: dict[str, Any]) -> str:
    # The classic confusion attack: HMAC keyed with the issuer's public key, which anyone can fetch.
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64({'alg': 'HS256', 'kid': key.kid, 'typ': 'JWT'})}.{b64(claims)}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _tampered_signature(key: SigningKey, claims: dict[str, Any]) -> str:
    token = key.sign(claims)
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 0x01
    return f"{head}.{body}.{b64(bytes(raw))}"


def _tampered_payload(key: SigningKey, claims: dict[str, Any]) -> str:
    head, _, sig = key.sign(claims).split(".")
    return f"{head}.{b64({**claims, 'groups': ['admins']})}.{sig}"


def _foreign_key_same_kid(key: SigningKey, claims: dict[str, Any], other: SigningKey) -> str:
    return SigningKey(key.kid, key.alg, other.private).sign(claims)


Case = tuple[str, Callable[[dict[str, SigningKey], Idp, FakeClock], str], str]
CASES: list[Case] = [
    ("alg none", lambda k, i, w: _alg_none(k["k1"], claims_for(i, w)), "bad_algorithm"),
    ("HS256 with the public key", lambda k, i, w: _hs256_with_public_key(k["k1"], claims_for(i, w)), "bad_algorithm"),
    ("alg outside the allow-list", lambda k, i, w: k["k1"].sign(claims_for(i, w), alg="RS512"), "bad_algorithm"),
    (
        "EC alg on an RSA kid",
        lambda k, i, w: SigningKey("k1", "ES256", k["e1"].private).sign(claims_for(i, w)),
        "bad_algorithm",
    ),
    ("unknown iss", lambda k, i, w: k["k1"].sign(claims_for(i, w, iss="https://evil.example.com")), "unknown_issuer"),
    ("no iss", lambda k, i, w: k["k1"].sign(claims_for(i, w, iss=None)), "malformed"),
    ("wrong aud", lambda k, i, w: k["k1"].sign(claims_for(i, w, aud="api://other")), "bad_audience"),
    ("aud list without ours", lambda k, i, w: k["k1"].sign(claims_for(i, w, aud=["a", "b"])), "bad_audience"),
    ("no aud", lambda k, i, w: k["k1"].sign(claims_for(i, w, aud=None)), "missing_claim"),
    ("expired beyond leeway", lambda k, i, w: k["k1"].sign(claims_for(i, w, exp=int(w()) - 61)), "expired"),
    ("no exp", lambda k, i, w: k["k1"].sign(claims_for(i, w, exp=None)), "missing_claim"),
    ("exp 1e308", lambda k, i, w: k["k1"].sign(claims_for(i, w, exp=1e308)), "too_long_lived"),
    ("lives 25h from iat", lambda k, i, w: k["k1"].sign(claims_for(i, w, exp=int(w()) + 25 * 3600)), "too_long_lived"),
    ("no iat, exp in 25h",
     lambda k, i, w: k["k1"].sign(claims_for(i, w, iat=None, exp=int(w()) + 25 * 3600)), "too_long_lived"),
    ("exp not a number", lambda k, i, w: k["k1"].sign(claims_for(i, w, exp="tomorrow")), "malformed"),
    ("nbf in the future", lambda k, i, w: k["k1"].sign(claims_for(i, w, nbf=int(w()) + 120)), "not_yet_valid"),
    ("iat in the future", lambda k, i, w: k["k1"].sign(claims_for(i, w, iat=int(w()) + 120)), "not_yet_valid"),
    ("no sub", lambda k, i, w: k["k1"].sign(claims_for(i, w, sub=None)), "missing_claim"),
    ("tampered signature", lambda k, i, w: _tampered_signature(k["k1"], claims_for(i, w)), "bad_signature"),
    ("tampered payload", lambda k, i, w: _tampered_payload(k["k1"], claims_for(i, w)), "bad_signature"),
    (
        "another key, same kid",
        lambda k, i, w: _foreign_key_same_kid(k["k1"], claims_for(i, w), k["k2"]),
        "bad_signature",
    ),
    ("no kid", lambda k, i, w: jwt.encode(claims_for(i, w), k["k1"].private, algorithm="RS256"), "malformed"),
    ("kid the issuer does not publish", lambda k, i, w: k["k3"].sign(claims_for(i, w)), "unknown_kid"),
    ("garbage base64", lambda k, i, w: "eyJ!!!.e30.c2ln", "malformed"),
    ("base64 of non-JSON", lambda k, i, w: f"{b64(b'not json')}.{b64(b'x')}.{b64(b'y')}", "malformed"),
    ("JSON array header", lambda k, i, w: f"{b64(b'[1]')}.{b64(claims_for(i, w))}.{b64(b'y')}", "malformed"),
    ("not a JWT", lambda k, i, w: "0123456789abcdef", "malformed"),
    ("two parts", lambda k, i, w: "a.b", "malformed"),
    ("empty signature", lambda k, i, w: k["k1"].sign(claims_for(i, w)).rsplit(".", 1)[0] + ".", "bad_signature"),
    ("huge token", lambda k, i, w: "a." * 20_000 + "a", "malformed"),
]


@pytest.mark.parametrize(("name", "make", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_attack_matrix(
    name: str,
    make: Callable[[dict[str, SigningKey], Idp, FakeClock], str],
    reason: str,
    idp: Idp,
    keys: dict[str, SigningKey],
    wall: FakeClock,
    mono: FakeClock,
) -> None:
    idp.keys = [keys["k1"].jwk(), keys["e1"].jwk()]
    token = make(keys, idp, wall)
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        with pytest.raises(Unauthenticated) as caught:
            await auth.authenticate(request(token))
    assert caught.value.reason == reason, caught.value.detail
    assert caught.value.scheme == "Bearer"
    assert caught.value.status == 401
    # The detail never echoes the token or any of its parts.
    for part in token.split("."):
        if len(part) > 8:
            assert part not in caught.value.detail
            assert part not in str(caught.value)


async def test_max_token_lifetime_is_per_issuer(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    two_days = keys["k1"].sign(claims_for(idp, wall, exp=int(wall()) + 47 * 3600))
    almost_a_day = keys["k1"].sign(claims_for(idp, wall, exp=int(wall()) + 23 * 3600))
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        assert (await auth.verify(almost_a_day)).subject == "ada@example.com"  # the default: 24h
        with pytest.raises(Unauthenticated):
            await auth.verify(two_days)
    async with oidc_authenticator([issuer_config(idp, max_token_lifetime="48h")], wall, mono) as auth:
        assert (await auth.verify(two_days)).subject == "ada@example.com"


async def test_empty_bearer_is_refused(idp: Idp, wall: FakeClock, mono: FakeClock) -> None:
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        with pytest.raises(Unauthenticated) as caught:
            await auth.authenticate(request(""))
    assert caught.value.reason == "malformed"


async def test_leeway_accepts_small_clock_differences(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    now = int(wall())
    claims = claims_for(idp, wall, exp=now - 30, nbf=now + 30, iat=now + 30)
    async with oidc_authenticator([issuer_config(idp, leeway=60)], wall, mono) as auth:
        assert (await auth.verify(keys["k1"].sign(claims))).subject == "ada@example.com"
    async with oidc_authenticator([issuer_config(idp, leeway=0)], wall, mono) as auth:
        with pytest.raises(Unauthenticated):
            await auth.verify(keys["k1"].sign(claims))


async def test_algorithm_comes_from_config_not_the_token(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    # A JWK without "alg" is usable with any allowed algorithm of its family, and only those.
    idp.keys = [keys["k1"].jwk(declare_alg=False)]
    claims = claims_for(idp, wall)
    async with oidc_authenticator([issuer_config(idp, algorithms=["PS256"])], wall, mono) as auth:
        assert (await auth.verify(keys["k1"].sign(claims, alg="PS256"))).subject == "ada@example.com"
        with pytest.raises(Unauthenticated) as caught:
            await auth.verify(keys["k1"].sign(claims, alg="RS256"))
    assert caught.value.reason == "bad_algorithm"


async def test_two_configs_for_one_issuer_are_chosen_by_audience(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    a = issuer_config(idp, name="okta-api", audience="api://default")
    b = issuer_config(idp, name="okta-app", audience="0oa-client")
    async with oidc_authenticator([a, b], wall, mono) as auth:
        assert (await auth.verify(keys["k1"].sign(claims_for(idp, wall)))).issuer == "okta-api"
        assert (await auth.verify(keys["k1"].sign(claims_for(idp, wall, aud="0oa-client")))).issuer == "okta-app"


async def test_verified_tokens_skip_the_signature_check(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    original = jwt.algorithms.RSAAlgorithm.verify

    def counting_verify(self: Any, msg: bytes, key: Any, sig: bytes) -> bool:
        calls.append(msg)
        return original(self, msg, key, sig)

    monkeypatch.setattr(jwt.algorithms.RSAAlgorithm, "verify", counting_verify)
    idp.keys = [keys["k1"].jwk()]
    token = keys["k1"].sign(claims_for(idp, wall, exp=int(wall()) + 600))
    async with oidc_authenticator([issuer_config(idp, leeway=0)], wall, mono, token_cache_size=2) as auth:
        first = await auth.verify(token)
        assert len(calls) == 1
        assert await auth.verify(token) == first
        assert len(calls) == 1  # served from the verified-token cache
        # The cache is bounded: two other tokens push the first one out, so it is verified again.
        for _ in range(2):
            await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        assert len(calls) == 3
        await auth.verify(token)
        assert len(calls) == 4
        # A cached token still expires on time.
        wall.advance(601)
        with pytest.raises(Unauthenticated) as caught:
            await auth.verify(token)
        assert caught.value.reason == "expired"
        assert len(calls) == 4


async def test_cache_never_accepts_a_tampered_variant(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    claims = claims_for(idp, wall)
    token = keys["k1"].sign(claims)
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        await auth.verify(token)
        with pytest.raises(Unauthenticated) as caught:
            await auth.verify(_tampered_payload(keys["k1"], claims))
    assert caught.value.reason == "bad_signature"


def test_offline_helpers_need_no_network(keys: dict[str, SigningKey], wall: FakeClock) -> None:
    from .support import Idp as IdpState

    offline = IdpState(base="https://acme.okta.com/oauth2/default")
    issuer = issuer_config(offline)
    other = issuer_config(IdpState(base="https://login.example.com"), name="corp")
    token = keys["k1"].sign(claims_for(offline, wall, groups=["ml-team"], scp=["openid"]))
    assert issuer_for_token([other, issuer], token) is issuer
    header, claims = unverified_parts(token)
    assert header["kid"] == "k1"
    principal = principal_from_claims(issuer, claims)
    assert (principal.subject, principal.issuer, principal.groups, principal.scopes) == (
        "ada@example.com",
        "okta",
        frozenset({"ml-team"}),
        frozenset({"openid"}),
    )
    with pytest.raises(Unauthenticated) as caught:
        issuer_for_token([other], token)
    assert caught.value.reason == "unknown_issuer"
