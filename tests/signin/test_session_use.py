"""Using a session on a real gateway: tampered, truncated, swapped, expired, retired and planted
cookies; logout and its CSRF; where a session is accepted at all; which sites may use it; and the
answers around it (sign-in for navigations, 401 for subresources, Vary, no-store, CORS)."""

from __future__ import annotations

import base64

import httpx
import pytest

from gateway.vendor_signing import sign_request
from tests.e2e.helpers import assert_error
from tests.oidc.harness import Provider
from tests.signin.conftest import EMBEDDER, SignInGateway
from tests.signin.support import (
    VENDOR_KEY,
    VENDOR_SECRET,
    Jar,
    MovableClock,
    gateway_app,
    query_of,
    session_key,
    sign_in,
    start_login,
)
from tests.support import serve_app

OBJECT = "/v1/datasets/ml/objects/tiny.png"
COOKIE = "__Host-gateway_session"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
IMAGE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


def get(gw: SignInGateway, cookie: str | None, path: str = OBJECT, **headers: str) -> httpx.Response:
    sent = {"Cookie": cookie} if cookie is not None else {}
    return httpx.get(gw.url + path, headers={**SAME_ORIGIN, **sent, **headers}, follow_redirects=False)


def session_of(jar: Jar) -> str:
    assert jar.session
    return f"{COOKIE}={jar.session}"


def flip(value: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[index] ^= 0x80
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def unauthenticated(response: httpx.Response, reason: str | None = None) -> None:
    body = assert_error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Session realm=") or reason is None, response.headers
    if reason:
        assert reason in body["detail"], body


@pytest.fixture(scope="module")
def ada(gw: SignInGateway) -> Jar:
    return sign_in(gw.url, "ada")


def test_a_live_session_reads_and_the_answer_is_never_stored(gw: SignInGateway, ada: Jar) -> None:
    response = get(gw, session_of(ada))
    assert response.status_code == 302
    assert response.headers["cache-control"] == "private, no-store"
    assert "Cookie" in response.headers.get_list("vary")
    as_json = get(gw, session_of(ada), "/v1/datasets/ml/objects/tiny.png?format=json")
    assert as_json.status_code == 200 and as_json.headers["cache-control"] == "private, no-store"
    head = httpx.head(gw.url + OBJECT, headers={**SAME_ORIGIN, "Cookie": session_of(ada)})
    assert head.status_code == 302


@pytest.mark.parametrize("index", [0, 3, 10, 20, 40, -1])
def test_a_tampered_session_cookie_is_401(gw: SignInGateway, ada: Jar, index: int) -> None:
    assert ada.session
    unauthenticated(get(gw, f"{COOKIE}={flip(ada.session, index)}"))


def test_truncated_junk_and_oversized_session_cookies_are_401(gw: SignInGateway, ada: Jar) -> None:
    assert ada.session
    for value in (ada.session[:-1], ada.session[:40], ada.session[:5], "", "%%%", "not-base64!", "A" * 6000,
                  ada.session + "AAAA", '"' + ada.session):
        unauthenticated(get(gw, f"{COOKIE}={value}"))


def test_a_login_transaction_swapped_in_as_the_session_is_401(gw: SignInGateway) -> None:
    jar = Jar()
    start_login(gw.url, jar)
    [tx] = jar.tx().values()
    unauthenticated(get(gw, f"{COOKIE}={tx}"), "was changed")


def test_two_session_cookies_are_refused(gw: SignInGateway, ada: Jar) -> None:
    other = sign_in(gw.url, "bob")
    unauthenticated(get(gw, f"{session_of(ada)}; {session_of(other)}"), "more than one session cookie")


def test_a_planted_gateway_session_without_the_host_prefix_is_ignored(gw: SignInGateway, ada: Jar) -> None:
    # A sibling subdomain can set `gateway_session` for .acme.example; only __Host- is ever read.
    planted = f"gateway_session={ada.session}"
    response = get(gw, planted)
    body = assert_error(response, 401, "unauthenticated")
    assert "sign in at /v1/auth/login" in body["detail"]
    assert get(gw, planted, "/v1/datasets/open/objects/tiny.png").status_code == 302  # simply anonymous


def test_an_expired_and_an_idle_session_are_401(gw: SignInGateway, clock: MovableClock) -> None:
    jar = sign_in(gw.url, "ada")
    clock.offset = 60 * 29  # 29 minutes idle: still fine (idle_ttl 30m); the idle clock moves on
    response = get(gw, session_of(jar))
    assert response.status_code == 302
    renewed = [c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")]
    assert renewed and renewed[0].endswith("; Secure; HttpOnly; SameSite=None")
    clock.offset = 60 * 29 + 60 * 30 + 30  # 30.5 minutes after the last use, 59.5 after sign-in
    unauthenticated(get(gw, session_of(jar)), "idle")
    jar.take(response)  # the renewed cookie was last used as long ago
    unauthenticated(get(gw, session_of(jar)), "idle")
    clock.offset = 0
    fresh = sign_in(gw.url, "ada")
    for step in range(1, 6):  # used every 15 minutes: never idle, but the 1 h limit holds
        clock.offset = step * 15 * 60 - 60
        response = get(gw, session_of(fresh))
        fresh.take(response)
        assert response.status_code == (302 if step < 5 else 401), (step, response.text)
    unauthenticated(get(gw, session_of(fresh)), "expired")


def test_a_cookie_under_a_retired_key_is_401_and_rotation_keeps_sessions(gw: SignInGateway, port_pool: object,
                                                                         ada: Jar) -> None:
    new = session_key()
    port = next(port_pool)  # type: ignore[call-overload]
    with serve_app(gateway_app(port, gw.policy, keys=[new, *gw.keys]), port) as rotated:
        response = httpx.get(rotated.url + OBJECT, headers={**SAME_ORIGIN, "Cookie": session_of(ada)})
        assert response.status_code == 302  # the old key still opens
    port = next(port_pool)  # type: ignore[call-overload]
    with serve_app(gateway_app(port, gw.policy, keys=[new]), port) as retired:
        response = httpx.get(retired.url + OBJECT, headers={**SAME_ORIGIN, "Cookie": session_of(ada)})
        body = assert_error(response, 401, "unauthenticated")
        assert "no longer has" in body["detail"]


def test_logout_ends_the_session_and_clears_the_cookie(gw: SignInGateway) -> None:
    jar = sign_in(gw.url, "ada")
    old = session_of(jar)
    response = httpx.post(f"{gw.url}/v1/auth/logout", headers={"Cookie": old, "Origin": gw.url})
    assert response.status_code == 200 and response.json()["signed_in"] is False
    assert response.headers.get_list("set-cookie") == [
        f"{COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=None"]
    unauthenticated(get(gw, old), "signed out")  # replay after logout
    status = httpx.get(f"{gw.url}/v1/auth/session", headers={**SAME_ORIGIN, "Cookie": old}).json()
    assert status["signed_in"] is False and status["reason"] == "revoked"
    form = httpx.post(f"{gw.url}/v1/auth/logout", headers={"Cookie": old, "Origin": gw.url,
                                                            "Sec-Fetch-Mode": "navigate"})
    assert form.status_code == 303 and form.headers["location"] == f"{gw.url}/v1/auth/"


def test_logout_can_continue_to_the_issuers_end_session(gw: SignInGateway, provider: Provider) -> None:
    jar = sign_in(gw.url, "ada")
    response = httpx.post(f"{gw.url}/v1/auth/logout", content="end_session=1", headers={
        "Cookie": session_of(jar), "Origin": gw.url, "Sec-Fetch-Mode": "navigate",
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(provider.issuer + "/session/end?")
    assert query_of(location) == {"client_id": "gateway", "post_logout_redirect_uri": f"{gw.url}/v1/auth/"}
    assert httpx.get(location).status_code == 200  # the issuer accepts it (and asks to confirm)
    unauthenticated(get(gw, session_of(jar)))


@pytest.mark.parametrize("origin", [None, "null", "https://evil.test", "https://app.vendor.example.evil.test",
                                    "http://app.vendor.example"])
def test_logout_csrf_is_refused_and_the_session_lives_on(gw: SignInGateway, ada: Jar, origin: str | None) -> None:
    headers = {"Cookie": session_of(ada), **({"Origin": origin} if origin else {})}
    assert_error(httpx.post(f"{gw.url}/v1/auth/logout", headers=headers), 403, "cross_site_refused")
    assert get(gw, session_of(ada)).status_code == 302


def test_an_embedder_may_sign_the_browser_out(gw: SignInGateway) -> None:
    jar = sign_in(gw.url, "ada")
    response = httpx.post(f"{gw.url}/v1/auth/logout", headers={"Cookie": session_of(jar), "Origin": EMBEDDER})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == EMBEDDER
    assert response.headers["access-control-allow-credentials"] == "true"
    unauthenticated(get(gw, session_of(jar)))


@pytest.mark.parametrize(("headers", "allowed"), [
    ({"Sec-Fetch-Site": "same-origin"}, True),
    ({"Sec-Fetch-Site": "none"}, True),  # typed in the address bar, a bookmark
    ({**IMAGE, "Referer": EMBEDDER + "/labels"}, True),
    ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Origin": EMBEDDER}, True),
    ({**IMAGE, "Referer": "https://evil.test/page"}, False),
    ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Origin": "https://evil.test"}, False),
    ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test", "Referer": EMBEDDER + "/"}, False),
    ({"Sec-Fetch-Site": "cross-site", "Origin": "null", "Referer": "https://evil.test/"}, False),
    (IMAGE, False),  # a stripped Referer (referrerpolicy=no-referrer): fail closed
    ({"Sec-Fetch-Site": "same-site", "Referer": "https://wiki.acme.example/"}, False),
    ({"Referer": "https://evil.test/"}, False),  # no Fetch Metadata: Referer decides
    ({"Referer": EMBEDDER + "/x"}, True),
    ({}, False),  # says nothing at all about where it comes from
])
def test_cross_site_use_of_a_session_only_from_embedders(gw: SignInGateway, ada: Jar, headers: dict[str, str],
                                                         allowed: bool) -> None:
    sent = {"Cookie": session_of(ada), **headers}
    response = httpx.get(gw.url + OBJECT, headers=sent, follow_redirects=False)
    if allowed:
        assert response.status_code == 302, response.text
        return
    assert_error(response, 403, "cross_site_refused")
    # The same answer whatever is asked for: no existence oracle for a foreign page.
    for path in ("/v1/datasets/ml/objects/no-such-key.png", "/v1/datasets/no-such-dataset/objects/a.png"):
        assert_error(httpx.get(gw.url + path, headers=sent), 403, "cross_site_refused")


def test_a_navigation_without_a_session_is_sent_to_sign_in_a_subresource_gets_401(gw: SignInGateway,
                                                                                 ada: Jar) -> None:
    navigate = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    response = httpx.get(gw.url + OBJECT + "?v=1", headers=navigate, follow_redirects=False)
    assert response.status_code == 303 and response.headers["cache-control"] == "no-store"
    assert response.headers["location"] == (f"{gw.url}/v1/auth/login?return_to=" +
                                            httpx.QueryParams({"x": f"{gw.url}{OBJECT}?v=1"})["x"].replace(":", "%3A")
                                            .replace("/", "%2F").replace("?", "%3F").replace("=", "%3D"))
    assert "Cookie" in response.headers.get_list("vary")
    expired = {**navigate, "Cookie": f"{COOKIE}={(ada.session or '')[:-2]}"}
    assert httpx.get(gw.url + OBJECT, headers=expired).status_code == 303
    for headers in (IMAGE, {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
                    {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, {}):
        response = httpx.get(gw.url + OBJECT, headers=headers, follow_redirects=False)
        assert_error(response, 401, "unauthenticated")
        assert "Cookie" in response.headers.get_list("vary")
    # A dataset open to this network needs no sign-in, navigation or not.
    assert httpx.get(gw.url + "/v1/datasets/open/objects/tiny.png", headers=navigate).status_code == 302


def test_a_cross_site_navigation_with_a_session_goes_through_the_gateways_page(gw: SignInGateway, ada: Jar) -> None:
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Referer": "https://chat.example/", "Cookie": session_of(ada)}
    response = httpx.get(gw.url + OBJECT, headers=link, follow_redirects=False)
    assert response.status_code == 303  # the session is not used for the foreign site's navigation
    assert response.headers["location"] == f"{gw.url}/v1/auth/?next=%2Fv1%2Fdatasets%2Fml%2Fobjects%2Ftiny.png"
    page = httpx.get(response.headers["location"], headers={"Cookie": session_of(ada)})
    assert f'href="{gw.url}{OBJECT}"' in page.text  # a first-party link the user follows
    for target in ("//evil.test/x", "https://evil.test/", "/v1/auth/logout", "javascript:alert(1)",
                   "/v1/datasets/a\"onmouseover=\"x"):
        page = httpx.get(f"{gw.url}/v1/auth/", params={"next": target}, headers={"Cookie": session_of(ada)})
        assert 'id="continue"' not in page.text and "evil" not in page.text and "onmouseover" not in page.text


def test_a_session_plus_another_credential_is_ambiguous(gw: SignInGateway, ada: Jar) -> None:
    bearer = get(gw, session_of(ada), Authorization="Bearer a.b.c")
    assert_error(bearer, 401, "ambiguous_credentials")
    signed = sign_request("GET", gw.url + OBJECT, key_id=VENDOR_KEY, secret=VENDOR_SECRET)
    assert_error(get(gw, session_of(ada), **signed), 401, "ambiguous_credentials")


def test_a_session_is_not_accepted_beyond_object_reads(gw: SignInGateway, ada: Jar) -> None:
    response = httpx.post(f"{gw.url}/v1/sign", json={"dataset": "ml", "keys": ["tiny.png"]},
                          headers={**SAME_ORIGIN, "Cookie": session_of(ada)})
    body = assert_error(response, 401, "unauthenticated")
    assert "only on GET and HEAD" in body["detail"]


def test_preflights_never_authenticate_or_redirect(gw: SignInGateway, ada: Jar) -> None:
    response = httpx.options(gw.url + OBJECT, headers={
        "Origin": EMBEDDER, "Access-Control-Request-Method": "GET", "Cookie": session_of(ada)})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == EMBEDDER
    assert response.headers["access-control-allow-credentials"] == "true"
    other = httpx.options(gw.url + OBJECT, headers={"Origin": "https://evil.test",
                                                     "Access-Control-Request-Method": "GET"})
    assert other.status_code == 403 and "access-control-allow-credentials" not in other.headers


def test_the_session_endpoint_for_embedders_only(gw: SignInGateway, ada: Jar) -> None:
    mine = httpx.get(f"{gw.url}/v1/auth/session", headers={**SAME_ORIGIN, "Cookie": session_of(ada)})
    body = mine.json()
    assert body["signed_in"] is True and body["subject"] == "ada" and body["email"] == "ada@acme.test"
    assert "ml-team" in body["groups"] and body["expires_at"].endswith("Z")
    assert mine.headers["cache-control"] == "no-store" and "Cookie" in mine.headers.get_list("vary")
    vendor = httpx.get(f"{gw.url}/v1/auth/session", headers={
        "Cookie": session_of(ada), "Origin": EMBEDDER, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})
    assert vendor.json()["signed_in"] is True
    assert vendor.headers["access-control-allow-origin"] == EMBEDDER
    assert vendor.headers["access-control-allow-credentials"] == "true"
    evil = httpx.get(f"{gw.url}/v1/auth/session", headers={
        "Cookie": session_of(ada), "Origin": "https://evil.test", "Sec-Fetch-Site": "cross-site"})
    assert_error(evil, 403, "cross_site_refused")
    assert "access-control-allow-origin" not in evil.headers
    head = httpx.head(f"{gw.url}/v1/auth/session", headers={**SAME_ORIGIN, "Cookie": session_of(ada)})
    assert head.status_code == 200 and head.content == b""
    nobody = httpx.get(f"{gw.url}/v1/auth/session", headers={"Origin": EMBEDDER})
    assert nobody.json() == {"signed_in": False, "reason": "no_session", "login_url": f"{gw.url}/v1/auth/login"}


def test_the_page_shows_who_is_signed_in_and_runs_no_script(gw: SignInGateway, ada: Jar) -> None:
    page = httpx.get(f"{gw.url}/v1/auth/", headers={"Cookie": session_of(ada)})
    assert page.status_code == 200 and "ada@acme.test" in page.text and "/v1/auth/logout" in page.text
    assert "<script" not in page.text and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    anonymous = httpx.get(f"{gw.url}/v1/auth/")
    assert "Sign in" in anonymous.text and "/v1/auth/login" in anonymous.text
    # The redirect is built from GATEWAY_PUBLIC_URL, never from Host: another name the gateway
    # answers (loopback's) still gets the public URL, and a name it does not serve is refused.
    bare = httpx.get(f"{gw.url}/v1/auth", headers={"Host": f"localhost:{gw.port}"}, follow_redirects=False)
    assert bare.status_code == 308 and bare.headers["location"] == f"{gw.url}/v1/auth/"
    assert httpx.get(f"{gw.url}/v1/auth", headers={"Host": "evil.test"}).status_code == 421
