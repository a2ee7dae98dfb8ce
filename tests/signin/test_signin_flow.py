"""Sign-in against a real oidc-provider, and the attacks on it: login CSRF, replayed state, injected
codes, PKCE, issuer mix-up, open redirects, junk parameters, many logins, session fixation."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.e2e.helpers import assert_error
from tests.oidc.harness import Provider
from tests.signin.conftest import EMBEDDER, SignInGateway
from tests.signin.support import Jar, MovableClock, callback, idp_login, query_of, sign_in, start_login

OBJECT = "/v1/datasets/ml/objects/tiny.png"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def read(gw: SignInGateway, jar: Jar, path: str = OBJECT) -> httpx.Response:
    return httpx.get(gw.url + path, headers={**jar.header(), **SAME_ORIGIN}, follow_redirects=False)


def started(gw: SignInGateway, login: str = "ada", jar: Jar | None = None) -> tuple[Jar, str]:
    """A sign-in up to the issuer's redirect back: (the browser's cookies, the callback URL)."""
    jar = jar or Jar()
    response = start_login(gw.url, jar)
    assert response.status_code == 302
    return jar, idp_login(response.headers["location"], login)


def with_params(url: str, **changes: str | None) -> str:
    query = query_of(url)
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return f"{urlsplit(url).path}?{urlencode(query)}"


def refused(response: httpx.Response, words: str) -> None:
    body = assert_error(response, 400, "sign_in_failed")
    assert words in body["detail"], body
    assert response.headers["cache-control"] == "no-store"
    assert not any(c.startswith("__Host-gateway_session=") and "Max-Age=0" not in c
                   for c in response.headers.get_list("set-cookie")), "a failed sign-in set a session"


def test_sign_in_is_pkce_s256_with_state_and_nonce_and_sets_a_host_cookie(gw: SignInGateway) -> None:
    jar = Jar()
    response = start_login(gw.url, jar, return_to=EMBEDDER + "/labels?task=7#top")
    assert response.status_code == 302 and response.headers["cache-control"] == "no-store"
    authorize = query_of(response.headers["location"])
    assert authorize["response_type"] == "code" and authorize["client_id"] == "gateway"
    assert authorize["code_challenge_method"] == "S256" and len(authorize["code_challenge"]) == 43
    assert len(authorize["state"]) == 43 and len(authorize["nonce"]) == 43 and authorize["state"] != authorize["nonce"]
    assert authorize["redirect_uri"] == f"{gw.url}/v1/auth/callback"
    assert set(authorize["scope"].split()) == {"openid", "email", "profile", "groups"}
    [tx_cookie] = response.headers.get_list("set-cookie")
    name = "__Host-gateway_tx_" + hashlib.sha256(authorize["state"].encode()).hexdigest()[:8]
    assert tx_cookie.startswith(name + "=")
    assert tx_cookie.endswith("; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Lax")
    # The verifier and the state are inside the sealed cookie, not readable in it.
    assert authorize["state"] not in base64.urlsafe_b64decode(jar.values[name] + "==").decode("latin-1")

    done = callback(gw.url, idp_login(response.headers["location"], "ada"), jar)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == EMBEDDER + "/labels?task=7#top"
    cookies = done.headers.get_list("set-cookie")
    assert f"{name}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax" in cookies  # one use
    [session] = [c for c in cookies if c.startswith("__Host-gateway_session=")]
    assert session.endswith("; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=None")
    assert "domain" not in session.lower() and "partitioned" not in session.lower()
    assert len(session.split(";")[0]) < 1536
    assert read(gw, jar).status_code == 302


def test_the_session_feeds_the_rule_conditions_and_the_audit_says_browser_session(gw: SignInGateway) -> None:
    ada, bob = sign_in(gw.url, "ada"), sign_in(gw.url, "bob")
    assert read(gw, ada).status_code == 302
    assert_error(read(gw, bob), 403, "forbidden")  # no ml-team group
    assert read(gw, bob, "/v1/datasets/staff/objects/tiny.png").status_code == 302
    records = gw.audit_records()
    reads = [r for r in records if r["action"] == "redirect" and r["dataset"] == "ml"]
    assert {r["principal"]["subject"] for r in reads} >= {"ada", "bob"}
    assert all(r["principal"]["method"] == "browser_session" and r["principal"]["issuer"] == "corp" for r in reads)
    sign_ins = [r for r in records if r["action"] == "sign_in" and r["decision"] == "allow"]
    assert {"ada", "bob"} <= {r["principal"]["subject"] for r in sign_ins}
    text = gw.audit.read_text()
    assert ada.session and ada.session not in text and bob.session and bob.session not in text


def test_login_csrf_a_callback_without_its_transaction_cookie_is_refused(gw: SignInGateway) -> None:
    _, url = started(gw)
    victim = Jar()  # the attacker makes the victim's browser open the attacker's callback
    refused(callback(gw.url, url, victim), "did not start this sign-in")
    assert victim.session is None


def test_a_callback_with_another_browsers_transaction_is_refused(gw: SignInGateway) -> None:
    _, url = started(gw)
    other, _ = started(gw)  # this browser has a sign-in of its own in flight
    refused(callback(gw.url, url, other), "did not start this sign-in")


def test_a_replayed_state_is_refused_even_with_its_cookie(gw: SignInGateway) -> None:
    jar, url = started(gw)
    kept = Jar(dict(jar.values))  # an attacker who copied the cookie and the callback URL
    assert callback(gw.url, url, jar).status_code == 303
    refused(callback(gw.url, url, kept), "completed already")


def test_an_injected_code_fails_pkce_in_the_victims_browser(gw: SignInGateway) -> None:
    _, attacker_url = started(gw, "bob")  # the attacker's own code, bound to the attacker's verifier
    victim, victim_url = started(gw, "ada")
    injected = with_params(victim_url, code=query_of(attacker_url)["code"])
    refused(callback(gw.url, gw.url + injected, victim), "refused the code (invalid_grant)")
    assert victim.session is None


def test_the_authorization_request_never_downgrades_pkce(gw: SignInGateway, provider: Provider) -> None:
    jar = Jar()
    response = start_login(gw.url, jar)
    params = query_of(response.headers["location"])
    assert params["code_challenge_method"] == "S256"
    # The issuer itself insists on PKCE (Okta: "Require PKCE"): a request stripped of it (or
    # downgraded to plain) fails there, and the gateway reports the issuer's refusal.
    for changed in ({"code_challenge": None, "code_challenge_method": None},
                    {"code_challenge": params["state"], "code_challenge_method": "plain"}):
        attempt = {k: v for k, v in {**params, **changed}.items() if v is not None}
        answer = httpx.get(provider.issuer + "/auth", params=attempt, follow_redirects=False)
        location = answer.headers["location"]
        assert "error=invalid_request" in location and "PKCE" in location or "code_challenge" in location, location
    refused(callback(gw.url, location, jar), "answered invalid_request")


@pytest.mark.parametrize(("iss", "words"), [
    ("http://127.0.0.9:1/", "does not come from the issuer"),
    (None, "does not come from the issuer"),  # the issuer sends iss (RFC 9207): its absence is a mix-up
])
def test_issuer_mix_up_is_refused(gw: SignInGateway, iss: str | None, words: str) -> None:
    jar, url = started(gw)
    refused(callback(gw.url, gw.url + with_params(url, iss=iss), jar), words)


def test_an_error_from_the_issuer_is_a_clear_400(gw: SignInGateway) -> None:
    jar, url = started(gw)
    denied = with_params(url, code=None, error="access_denied")
    refused(callback(gw.url, gw.url + denied, jar), "answered access_denied")
    jar, url = started(gw)
    refused(callback(gw.url, gw.url + with_params(url, code=None, error="<script>x"), jar), "answered unknown")


def test_an_expired_transaction_is_refused(gw: SignInGateway, clock: MovableClock) -> None:
    jar, url = started(gw)
    clock.offset += 601
    refused(callback(gw.url, url, jar), "took too long")


@pytest.mark.parametrize("query", [
    "", "state=", "state=short", "code=x", "state=" + "A" * 5000,
    "state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&state=BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    "state=%00%01%02", "state=%ff%fe" * 30, "code=a&code=b&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
])
def test_junk_callback_parameters_are_a_clear_400(gw: SignInGateway, query: str) -> None:
    response = httpx.get(f"{gw.url}/v1/auth/callback?{query}", follow_redirects=False)
    assert_error(response, 400, "sign_in_failed")


def test_the_callback_is_get_only(gw: SignInGateway) -> None:
    jar, url = started(gw)
    parts = urlsplit(url)
    response = httpx.post(f"{gw.url}{parts.path}", content=parts.query, headers={
        **jar.header(), "Content-Type": "application/x-www-form-urlencoded"})
    assert_error(response, 405, "method_not_allowed")


def test_many_parallel_logins_keep_at_most_three_transaction_cookies(gw: SignInGateway) -> None:
    jar = Jar()
    for _ in range(6):
        assert start_login(gw.url, jar).status_code == 302
        assert len(jar.tx()) <= 3
    assert len(jar.tx()) == 3


def test_session_fixation_a_session_brought_along_is_never_adopted(gw: SignInGateway) -> None:
    planted = sign_in(gw.url, "bob")  # the attacker's own session, planted in the victim's browser
    victim = Jar(dict(planted.values))
    jar, url = started(gw, "ada", victim)
    assert callback(gw.url, url, jar).status_code == 303
    assert jar.session != planted.session
    me = httpx.get(f"{gw.url}/v1/auth/session", headers={**jar.header(), **SAME_ORIGIN}).json()
    assert me["signed_in"] and me["subject"] == "ada"
    # The browser's previous session ended with the new sign-in.
    assert_error(read(gw, planted, "/v1/datasets/staff/objects/tiny.png"), 401, "unauthenticated")


def test_sign_in_is_a_top_level_navigation_only(gw: SignInGateway) -> None:
    for dest in ("image", "empty", "iframe", "script"):
        response = start_login(gw.url, Jar(), headers={"Sec-Fetch-Dest": dest, "Sec-Fetch-Mode": "no-cors"})
        assert_error(response, 400, "sign_in_failed")
    assert start_login(gw.url, Jar(), headers={"Sec-Fetch-Dest": "document"}).status_code == 302
    assert_error(httpx.get(f"{gw.url}/v1/auth/login?issuer=nobody"), 400, "sign_in_failed")
    assert_error(httpx.get(f"{gw.url}/v1/auth/login?return_to=a&return_to=b"), 400, "bad_request")


@pytest.mark.parametrize("target", [
    "//evil.test/", "https://app.vendor.example.evil.test/", "https://app.vendor.example@evil.test/",
    "https://evil.test#@app.vendor.example", "javascript:alert(document.domain)", "http://app.vendor.example/",
])
def test_open_redirect_payloads_end_on_the_gateways_page(gw: SignInGateway, target: str) -> None:
    jar = Jar()
    response = start_login(gw.url, jar, return_to=target)
    done = callback(gw.url, idp_login(response.headers["location"], "ada"), jar)
    assert done.status_code == 303 and done.headers["location"] == f"{gw.url}/v1/auth/"


def test_a_session_that_cannot_fit_a_cookie_is_refused_not_split(gw: SignInGateway) -> None:
    jar, url = started(gw, "many")  # 150 long group names in the ID token
    refused(callback(gw.url, url, jar), "filter the groups claim at the issuer")
    assert jar.session is None and not jar.tx()
