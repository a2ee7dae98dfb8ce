"""Browser sign-in's back channel against a real (and misbehaving) identity provider on a local
socket: discovery and the token endpoint go through the bounded fetcher, and each failure becomes
the answer it should (503 for the issuer's trouble, 400 for a refused code or a bad ID token)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from gateway.auth.browser_client import BrowserClient
from gateway.auth.jwks import JwksCache
from gateway.errors import SignInFailed, Unavailable

from .support import Canned, FakeClock, Idp, SigningKey, claims_for, issuer_config

pytestmark = pytest.mark.anyio
DISCOVERY = "/.well-known/openid-configuration"
TOKEN = "/v1/token"  # noqa: S105 - a path
SECRET = "client-secret-" + "s" * 20  # noqa: S105 - a test value
TIMEOUT = 0.3


@asynccontextmanager
async def client(idp: Idp, wall: FakeClock, mono: FakeClock) -> AsyncIterator[BrowserClient]:
    issuer = issuer_config(idp, browser={"client_id": "gw-client", "client_secret_env": "OKTA_SECRET"})
    async with httpx.AsyncClient() as http:
        yield BrowserClient(issuer, client_secret=SECRET, redirect_uri="http://127.0.0.1:9/v1/auth/callback",
                            http=http, jwks=JwksCache(issuer, http, clock=mono, timeout=TIMEOUT), clock=wall,
                            monotonic=mono, timeout=TIMEOUT)


async def start(browser: BrowserClient) -> str:
    return await browser.authorization_url(state="s" * 43, nonce="n" * 43, verifier="v" * 64)


def huge() -> Canned:
    return Canned(200, b'{"issuer": "' + b"x" * 2_000_000 + b'"}')


@pytest.mark.parametrize(("canned", "words"), [
    (Canned(500, b'{"error": "server_error"}'), "it answered with an unexpected status"),
    (Canned(302, headers={"Location": "http://127.0.0.1:9/evil"}), "it answered with an unexpected status"),
    (huge(), "its answer is too large"),
    (Canned(200, b"<html>maintenance</html>"), "its answer is not JSON"),
    (Canned(200, b"{}", delay=1.0), "it did not answer in time"),
], ids=["500", "redirect", "huge", "html", "slow"])
async def test_discovery_that_fails_is_503_and_is_not_hammered(
        idp: Idp, wall: FakeClock, mono: FakeClock, canned: Canned, words: str) -> None:
    idp.canned[DISCOVERY] = canned
    async with client(idp, wall, mono) as browser:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await start(browser)
        assert time.monotonic() - started < TIMEOUT + 0.5  # bounded by the deadline, whatever the issuer does
        assert caught.value.detail == f"the identity provider 'okta' cannot be used for sign-in right now ({words})"
        assert "127.0.0.1" not in caught.value.detail
        with pytest.raises(Unavailable):  # within the interval: not asked again
            await start(browser)
        assert idp.hits[DISCOVERY] == 1
        del idp.canned[DISCOVERY]
        mono.advance(30)
        assert (await start(browser)).startswith(idp.base + "/v1/authorize?")
    assert idp.hits[DISCOVERY] == 2


@pytest.mark.parametrize(("document", "words"), [
    ({"issuer": "https://evil.example.com"}, "names another issuer"),
    ({"code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
    ({"authorization_endpoint": "ftp://127.0.0.1/authorize"}, "authorization_endpoint"),
])
async def test_discovery_that_cannot_be_trusted_says_why(
        idp: Idp, wall: FakeClock, mono: FakeClock, document: dict[str, object], words: str) -> None:
    honest = {"issuer": idp.issuer, "jwks_uri": idp.base + "/v1/keys", "token_endpoint": idp.base + TOKEN,
              "authorization_endpoint": idp.base + "/v1/authorize"}
    idp.canned[DISCOVERY] = Canned(200, json.dumps({**honest, **document}).encode())
    async with client(idp, wall, mono) as browser:
        with pytest.raises(Unavailable) as caught:
            await start(browser)
    assert words in caught.value.detail


async def test_a_refused_code_is_a_sign_in_failure_not_an_outage(idp: Idp, wall: FakeClock, mono: FakeClock) -> None:
    idp.token_answer = (400, {"error": "invalid_grant", "error_description": "the code was used already"})
    async with client(idp, wall, mono) as browser:
        with pytest.raises(SignInFailed) as caught:
            await browser.exchange("the-code", "v" * 64)
    assert caught.value.reason == "token_refused"
    assert caught.value.detail == "the identity provider refused the code (invalid_grant)"
    sent = idp.token_requests[-1]
    assert sent["grant_type"] == ["authorization_code"] and sent["code_verifier"] == ["v" * 64]
    assert SECRET not in str(sent)  # client_secret_basic: in the Authorization header, not the form


@pytest.mark.parametrize(("canned", "words"), [
    (Canned(500, b'{"error": "server_error"}'), "it answered with an unexpected status"),
    (Canned(200, b"<html>"), "its answer is not JSON"),
    (Canned(200, b'["id_token"]'), "its answer is not a JSON object"),
    (huge(), "its answer is too large"),
    (Canned(200, b"{}", delay=1.0), "it did not answer in time"),
], ids=["500", "html", "array", "huge", "slow"])
async def test_a_token_endpoint_in_trouble_is_503(
        idp: Idp, wall: FakeClock, mono: FakeClock, canned: Canned, words: str) -> None:
    async with client(idp, wall, mono) as browser:
        await start(browser)  # discovery first, unbothered
        idp.canned[TOKEN] = canned
        with pytest.raises(Unavailable) as caught:
            await browser.exchange("the-code", "v" * 64)
    assert caught.value.detail == f"the identity provider 'okta' did not answer the token request ({words})"


async def test_an_id_token_with_a_kid_the_issuer_does_not_publish(
        idp: Idp, keys: dict[str, SigningKey], wall: FakeClock, mono: FakeClock) -> None:
    idp.keys = [keys["k1"].jwk()]

    def id_token(key: SigningKey) -> dict[str, str]:
        return {"id_token": key.sign(claims_for(idp, wall, aud="gw-client", nonce="n1"))}

    async with client(idp, wall, mono) as browser:
        assert (await browser.id_token_claims(id_token(keys["k1"]), "n1"))["sub"] == "ada@example.com"
        # The issuer answered moments ago without k2: a refusal (400), not an outage (503).
        with pytest.raises(SignInFailed) as refused:
            await browser.id_token_claims(id_token(keys["k2"]), "n1")
        assert refused.value.reason == "bad_id_token"
        # With the issuer down, a kid it might have published since cannot be looked up: 503.
        idp.down = True
        mono.advance(30)
        with pytest.raises(Unavailable):
            await browser.id_token_claims(id_token(keys["k2"]), "n1")
        assert (await browser.id_token_claims(id_token(keys["k1"]), "n1"))["sub"] == "ada@example.com"
