"""JWKS caching against a real IdP: rotation, unknown-kid floods, outages. Requests are counted at the server."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import socket
from collections import Counter

import httpx
import pytest

from gateway.auth.idp_http import IdpError
from gateway.auth.jwks import JwksCache, parse_jwks
from gateway.auth.oidc import OidcAuthenticator
from gateway.errors import Unauthenticated, Unavailable

from .support import Canned, FakeClock, Idp, SigningKey, claims_for, issuer_config, oidc_authenticator

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


async def attempt(auth: OidcAuthenticator, token: str) -> str:
    """What a client is told: accepted, a 401's reason, or a 503's Retry-After."""
    try:
        await auth.verify(token)
    except Unauthenticated as exc:
        return exc.reason
    except Unavailable as exc:
        return f"retry in {exc.retry_after}"
    return "accepted"


async def test_rotation_okta_publishes_the_next_key_before_signing_with_it(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_cache_ttl=3600)], wall, mono) as auth:
        assert await attempt(auth, keys["k1"].sign(claims_for(idp, wall))) == "accepted"
        idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]  # Okta: the next key weeks before its first use
        mono.advance(3601)
        assert await attempt(auth, keys["k1"].sign(claims_for(idp, wall))) == "accepted"  # the hourly refresh
        assert idp.hits[JWKS] == 2
        idp.keys = [keys["k2"].jwk()]  # the switch: the gateway holds the new key already
        assert await attempt(auth, keys["k2"].sign(claims_for(idp, wall))) == "accepted"
        assert idp.hits[JWKS] == 2  # no client ever waited for it


async def test_rotation_a_key_used_as_soon_as_it_is_published_is_fetched_once(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_refetch_interval=30)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        mono.advance(30)
        idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]  # published and used at once (an emergency rotation)
        # Concurrent first uses of the new kid share one fetch, and every one of them waits for it.
        tokens = [keys["k2"].sign(claims_for(idp, wall)) for _ in range(20)]
        assert set(await asyncio.gather(*(attempt(auth, t) for t in tokens))) == {"accepted"}
        assert idp.hits[JWKS] == 2
        assert auth.jwks("okta").kids == {"k1", "k2"}


async def test_rotation_within_the_interval_after_a_refetch_is_refused_until_it_ends(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_refetch_interval=30)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        mono.advance(31)
        stranger = SigningKey("forged", "RS256", keys["k3"].private)
        assert await attempt(auth, stranger.sign(claims_for(idp, wall))) == "unknown_kid"  # a refetch, at 31 s
        assert idp.hits[JWKS] == 2
        mono.advance(5)
        idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]  # published after that refetch, and used at once
        honest = keys["k2"].sign(claims_for(idp, wall))
        # The gateway asked the issuer 5 s ago and may not ask again for 25 s: the key it does not
        # hold is one the issuer did not publish, as far as anyone can tell. 401, and no fetch.
        with pytest.raises(Unauthenticated) as caught:
            await auth.verify(honest)
        assert caught.value.reason == "unknown_kid"
        assert caught.value.detail == "the token is signed with a key the issuer 'okta' does not publish"
        mono.advance(24.9)
        assert await attempt(auth, honest) == "unknown_kid"
        assert idp.hits[JWKS] == 2
        mono.advance(0.1)  # one interval after the last fetch: the same token fetches, and is accepted
        assert await attempt(auth, honest) == "accepted"
        assert idp.hits[JWKS] == 3


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


async def test_a_flood_of_unknown_kids_is_401_with_one_fetch_per_interval(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_refetch_interval=30)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        fetched_at = [mono()]
        told: Counter[str] = Counter()
        # 200 tokens with random kids, in bursts of 20 concurrent ones, 7 s apart (over 70 s).
        for _ in range(10):
            mono.advance(7)
            before = idp.hits[JWKS]
            forged = [SigningKey(secrets.token_urlsafe(8), "RS256", keys["k3"].private) for _ in range(20)]
            told.update(await asyncio.gather(*(attempt(auth, k.sign(claims_for(idp, wall))) for k in forged)))
            fetched_at += [mono()] * (idp.hits[JWKS] - before)
        assert told == {"unknown_kid": 200}  # never a 503: the issuer is up
        assert [b - a for a, b in itertools.pairwise(fetched_at)] == [35, 35]  # one per interval, no more
        assert idp.hits[JWKS] == 3 and idp.hits[DISCOVERY] == 1
        assert await attempt(auth, keys["k1"].sign(claims_for(idp, wall))) == "accepted"


async def test_concurrent_lookups_share_one_fetch_even_without_a_rate_limit(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp, jwks_refetch_interval=0)], wall, mono) as auth:
        await auth.verify(keys["k1"].sign(claims_for(idp, wall)))
        forged = [SigningKey(f"forged-{i}", "RS256", keys["k3"].private) for i in range(50)]
        told = await asyncio.gather(*(attempt(auth, k.sign(claims_for(idp, wall))) for k in forged))
        assert set(told) == {"unknown_kid"}
        assert idp.hits[JWKS] == 2  # the 49 that waited read the one fetch's answer


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
        assert not cache.reachable
        # An unknown kid cannot be looked up: 503 with Retry-After (the gateway's problem), not 401.
        with pytest.raises(Unavailable) as caught:
            await auth.verify(keys["k2"].sign(claims_for(idp, wall)))
        assert caught.value.status == 503
        assert caught.value.retry_after == 30
        assert caught.value.detail.endswith("(status)")  # the fetch's reason; the log has the rest
        mono.advance(10)
        for _ in range(20):  # strangers too, while it is down; without any more fetches
            assert await attempt(auth, SigningKey(secrets.token_urlsafe(8), "RS256", keys["k3"].private).sign(
                claims_for(idp, wall))) == "retry in 20"
        assert cache.fetches == 2  # one initial fetch, one failed refresh: the outage is not hammered
        # The issuer comes back with the new key: it is fetched, and strangers are 401 again.
        idp.down = False
        idp.keys = [keys["k1"].jwk(), keys["k2"].jwk()]
        mono.advance(20)
        assert await attempt(auth, keys["k2"].sign(claims_for(idp, wall))) == "accepted"
        assert cache.reachable
        assert await attempt(auth, keys["k3"].sign(claims_for(idp, wall))) == "unknown_kid"
        assert cache.fetches == 3


@pytest.mark.parametrize(("canned", "reason"), [
    (Canned(200, b"[" + b"0," * 600_000 + b"0]"), "too_large"),  # 1.2 MB
    (Canned(200, b'{"keys": []}', delay=1.0), "timeout"),
    (Canned(302, headers={"Location": "https://evil.example.com/keys"}), "status"),
    (Canned(200, b"<html>maintenance</html>"), "not_json"),
])
async def test_the_key_set_is_fetched_within_bounds(
    idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock, canned: Canned, reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp.keys = [keys["k1"].jwk()]
    async with oidc_authenticator([issuer_config(idp)], wall, mono, fetch_timeout=0.3) as auth:
        assert await attempt(auth, keys["k1"].sign(claims_for(idp, wall))) == "accepted"
        idp.canned[JWKS] = canned
        mono.advance(30)
        with pytest.raises(Unavailable) as caught:
            await auth.verify(keys["k2"].sign(claims_for(idp, wall)))
        assert caught.value.detail.endswith(f"({reason})")
        assert f"jwks fetch failed for issuer okta: {reason}: GET {idp.base}{JWKS}" in caplog.text
        assert await attempt(auth, keys["k1"].sign(claims_for(idp, wall))) == "accepted"  # the last good keys


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
    assert caught.value.detail.endswith("(unreachable)") and str(port) not in caught.value.detail


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
    bad: object
    for bad in ({}, {"keys": "x"}, [], {"keys": [{"kty": "oct", "kid": "h", "k": "eA"}]}):
        with pytest.raises(IdpError):
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
