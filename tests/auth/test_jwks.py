"""JWKS caching against a real IdP: rotation, unknown-kid floods, outages. Requests are counted at the server."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from gateway.auth.jwks import FetchError, JwksCache, parse_jwks
from gateway.errors import Unauthenticated, Unavailable

from .support import FakeClock, Idp, SigningKey, claims_for, issuer_config, oidc_authenticator

pytestmark = pytest.mark.anyio
JWKS = "/v1/keys"
DISCOVERY = "/.well-known/openid-configuration"


async def test_discovery_then_jwks_then_cached(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        for _ in range(5):
            await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
    assert idp.hits == {DISCOVERY: 1, JWKS: 1}


async def test_configured_jwks_uri_skips_discovery(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    issuer = issuer_config(idp, jwks_uri=idp.base + JWKS)
    async with oidc_authenticator([issuer], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
    assert idp.hits == {JWKS: 1}


async def test_rotation_new_kid_is_fetched_and_accepted(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]  # the IdP publishes its next key
        mono.advance(12)
        # Within the refetch interval of the first fetch the gateway cannot tell whether the key is
        # new or forged: 503 with the seconds until it may ask again, never "log in again" (401).
        with pytest.raises(Unavailable) as unknown:
            await auth.verify(keys["k2"].sign(claims_for(idp, wall)))
        assert unknown.value.retry_after == 18
        assert idp.hits[JWKS] == 1
        mono.advance(18)
        mono.advance(30)
        # Concurrent first uses of the new kid share one fetch, and every one of them waits for it.
        tokens = [keys["k2"].sign(claims_for(idp, wall)) for _ in range(20)]
        principals = await asyncio.gather(*(auth.verify(token) for token in tokens))
        assert {p.subject for p in principals} == {"ada@example.com"}
        assert idp.hits[JWKS] == 2
        assert auth.jwks("okta").kids == {"k1", "k2"}


async def test_rotation_removed_kid_is_refused_after_the_ttl(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_cache_ttl=600)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        idp.keys = [keys["k2"].jwk()]  # k1 retired
        mono.advance(599)
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))  # still cached
        assert idp.hits[JWKS] == 1
        mono.advance(2)
        with pytest.raises(Unauthenticated) as caught:
            await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        assert caught.value.reason == "unknown_kid"
        await auth.verify(keys["k2"].sign(claims_for(idp, wall)))
        assert idp.hits[JWKS] == 2


async def test_unknown_kid_flood_costs_one_fetch_per_interval(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_refetch_interval=30)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        assert idp.hits[JWKS] == 1
        forged = [SigningKey(f"forged-{i}", "RS256", keys["k3"].private) for i in range(100)]
        mono.advance(30)

        async def attempt(key: SigningKey) -> str:
            try:
                await auth.verify(key.sign(claims_for(idp, wall)))
            except Unauthenticated as exc:
                return exc.reason
            except Unavailable as exc:
                return f"retry in {exc.retry_after}"
            return "accepted"

        # Concurrent: all 100 wait on one fetch (single flight), after which they are known forgeries.
        results = await asyncio.gather(*(attempt(key) for key in forged))
        assert set(results) == {"unknown_kid"}
        assert idp.hits[JWKS] == 2
        # Sequential, within the interval: no fetch at all, and "not known yet" rather than "forged".
        for key in forged[:20]:
            assert await attempt(key) == "retry in 30"
        mono.advance(29)
        assert await attempt(forged[0]) == "retry in 1"
        assert idp.hits[JWKS] == 2
        # The next interval allows exactly one more.
        mono.advance(2)
        results = await asyncio.gather(*(attempt(key) for key in forged))
        assert set(results) == {"unknown_kid"}
        assert idp.hits[JWKS] == 3
        # Known keys were never affected.
        assert await attempt(keys["k1"]) == "accepted"


async def test_issuer_down_known_keys_keep_working(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    issuer = issuer_config(idp, jwks_cache_ttl=300, jwks_refetch_interval=30)
    async with oidc_authenticator([issuer], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        idp.down = True
        mono.advance(3600)  # far past the TTL: the refresh fails, the last good keys stay
        for _ in range(10):
            await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        cache = auth.jwks("okta")
        assert cache.failures == 1
        # An unknown kid cannot be looked up: 503 with Retry-After, not 401.
        with pytest.raises(Unavailable) as caught:
            await auth.verify(keys["k2"].sign(claims_for(idp, wall)))
        assert caught.value.status == 503
        assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 30
        mono.advance(10)
        with pytest.raises(Unavailable) as caught:
            await auth.verify(keys["k2"].sign(claims_for(idp, wall)))
        assert caught.value.retry_after == 20
        assert cache.fetches == 2  # one initial fetch, one failed refresh: the outage is not hammered
        # The issuer comes back with the new key.
        idp.down = False
        idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]
        mono.advance(21)
        await auth.verify(keys["k2"].sign(claims_for(idp, wall)))


async def test_issuer_down_from_the_start_is_unavailable(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.down = True
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        for _ in range(5):
            with pytest.raises(Unavailable):
                await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
    assert idp.hits.total() == 1


async def test_unreachable_issuer_is_unavailable(keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = Idp(base=f"http://127.0.0.1:{port}/oauth2/default")
    async with oidc_authenticator([issuer_config(gone)], wall, mono, fetch_timeout=1.0) as auth:
        with pytest.raises(Unavailable) as caught:
            await auth.verify(keys["k1"].sign(claims_for(gone, wall)))
    assert "k1" not in caught.value.detail


async def test_discovery_for_another_issuer_is_refused(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    idp.discovery_issuer = "https://evil.example.com"
    async with oidc_authenticator([issuer_config(idp)], wall, mono) as auth:
        with pytest.raises(Unavailable):
            await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
    assert idp.hits[JWKS] == 0


def test_parse_jwks_keeps_only_asymmetric_signing_keys(keys: dict[str, SigningKey]) -> None:
    good = keys["k1"].jwk()
    document = {
        "keys": [
            good,
            {**keys["k2"].jwk(), "use": "enc"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {**keys["k3"].jwk(), "kid": None},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not a key",
            {**keys["e1"].jwk(), "kid": "k1"},  # a duplicate kid does not replace the first
        ]
    }
    parsed = parse_jwks(document)
    assert set(parsed) == {"k1"}
    assert parsed["k1"].jwk == good
    for bad in ({}, {"keys": "x"}, [], {"keys": [{"kty": "oct", "kid": "h", "k": "eA"}]}):
        with pytest.raises(FetchError):
            parse_jwks(bad)


async def test_jwks_garbage_keeps_last_good_keys(idp: Idp, keys: dict[str, SigningKey], mono: FakeClock) -> None:
    idp.keys = [keys["k1"].jwk()]
    issuer = issuer_config(idp, jwks_cache_ttl=60, jwks_refetch_interval=10)
    async with httpx.AsyncClient() as http:
        cache = JwksCache(issuer, http, clock=mono)
        assert await cache.get("k1") is not None
        idp.keys = []  # an empty key set is an error, not a reason to forget every key
        mono.advance(61)
        assert await cache.get("k1") is not None
        assert cache.failures == 1
        with pytest.raises(Unavailable):  # the latest fetch failed, so "unknown" cannot be claimed
            await cache.get("nope")
