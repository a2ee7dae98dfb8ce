"""Real headless Chromium, real oidc-provider: sign in at top level, then a vendor's page on another
site shows images that need the ml-team group; other sites, other users, blocked third-party
cookies, ``crossorigin`` images and signed-out browsers get nothing. The browser profile's cookie
setting is seeded explicitly, so no test depends on Chromium's default (measured in
``test_chromium_default_profile``, reported in docs/browser-sign-in.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.oidc.harness import Provider
from tests.signin.support import gateway_app, html_site, session_key, write_policy
from tests.support import CHROMIUM, CHROMIUM_ARGS, RunningGateway, need, serve_app

pytestmark = pytest.mark.browser
ALLOW, BLOCK = 0, 1  # Chromium's profile.cookie_controls_mode: 0 allows third-party cookies, 1 blocks them
VENDOR_PAGE = """<!doctype html><html><head><meta charset=utf-8><title>vendor</title></head><body><script>
window.img = (url, cors) => new Promise((resolve) => {
  const i = new Image(); if (cors) i.crossOrigin = cors;
  i.onload = () => resolve(i.naturalWidth); i.onerror = () => resolve(-1);
  i.src = url; document.body.appendChild(i);
});
window.imgs = (urls) => Promise.all(urls.map((u) => window.img(u)));
window.session = async (gw) => {
  try { const r = await fetch(gw + '/v1/auth/session', {credentials: 'include'}); return await r.json(); }
  catch (e) { return {error: String(e)}; }
};
window.logout = async (gw) => (await fetch(gw + '/v1/auth/logout', {method: 'POST', credentials: 'include'})).status;
</script></body></html>"""


@dataclass
class Sites:
    gw: RunningGateway
    vendor: str  # an embedder: http://localhost:<port>
    stranger: str  # not an embedder: http://127.0.0.3:<port>
    idp: str

    def image(self, dataset: str = "ml", key: str = "tiny.png") -> str:
        return f"{self.gw.url}/v1/datasets/{dataset}/objects/{key}"


@pytest.fixture(scope="module")
def sites(provider: Provider, port_pool: Iterator[int], data: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed (apt-get install chromium)")
    pages = {"/": VENDOR_PAGE}
    with html_site("127.0.0.1", pages, name="localhost") as vendor, html_site("127.0.0.3", pages) as stranger:
        policy = write_policy(tmp_path_factory.mktemp("browser") / "policy.yaml", data, provider.issuer,
                              embedders=[vendor])
        port = next(port_pool)
        with serve_app(gateway_app(port, policy, keys=[session_key()]), port) as gw:
            yield Sites(gw, vendor, stranger, provider.issuer)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def browser(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    """Factory: a fresh Chromium profile whose third-party cookie setting is seeded (or left alone)."""
    contexts: list[Any] = []

    def launch(third_party: int | None) -> Any:
        profile = tmp_path / f"profile-{len(contexts)}"
        if third_party is not None:
            (profile / "Default").mkdir(parents=True)
            preferences = {"profile": {"cookie_controls_mode": third_party}}
            (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        contexts.append(context)
        return context

    yield launch
    for context in contexts:
        context.close()


def sign_in(context: Any, sites: Sites, login: str = "ada") -> Any:
    """Top-level sign-in through the issuer's login form, back to the vendor's page."""
    page = context.new_page()
    page.goto(f"{sites.gw.url}/v1/auth/login?return_to={sites.vendor}/")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_url(sites.vendor + "/")
    return page


def test_an_embedder_shows_group_images_and_nobody_else_does(browser: Any, sites: Sites) -> None:
    context = browser(ALLOW)
    page = sign_in(context, sites, "ada")
    assert page.evaluate("(u) => img(u)", sites.image()) == 2  # the <img> carried the session
    status = page.evaluate("(gw) => session(gw)", sites.gw.url)
    assert status["signed_in"] is True and status["subject"] == "ada" and "ml-team" in status["groups"]
    # crossorigin=anonymous never sends cookies, whatever the browser allows (WebGL textures need it).
    assert page.evaluate("(u) => img(u, 'anonymous')", sites.image()) == -1
    # A page of a site that is not an embedder gets nothing, signed in or not.
    stranger = context.new_page()
    stranger.goto(sites.stranger + "/")
    assert stranger.evaluate("(u) => img(u)", sites.image()) == -1
    assert stranger.evaluate("(u) => img(u)", sites.image("staff")) == -1
    assert "error" in stranger.evaluate("(gw) => session(gw)", sites.gw.url)  # no CORS for it
    # Signed out from the vendor's page: the next images are refused, the same key included.
    assert page.evaluate("(gw) => logout(gw)", sites.gw.url) == 200
    assert page.evaluate("(u) => img(u)", sites.image()) == -1
    assert page.evaluate("(u) => img(u)", sites.image("ml", "a.bin")) == -1
    assert page.evaluate("(gw) => session(gw)", sites.gw.url)["signed_in"] is False


def test_a_user_without_the_group_gets_nothing(browser: Any, sites: Sites) -> None:
    page = sign_in(browser(ALLOW), sites, "bob")
    assert page.evaluate("(u) => img(u)", sites.image()) == -1
    assert page.evaluate("(u) => img(u)", sites.image("staff")) == 2  # bob's own group works


def test_with_third_party_cookies_blocked_the_image_fails_and_the_page_can_tell(browser: Any, sites: Sites) -> None:
    context = browser(BLOCK)
    page = sign_in(context, sites, "ada")  # a first-party sign-in works either way
    assert page.evaluate("(u) => img(u)", sites.image()) == -1
    status = page.evaluate("(gw) => session(gw)", sites.gw.url)
    assert status == {"signed_in": False, "reason": "no_session", "login_url": f"{sites.gw.url}/v1/auth/login"}
    own = context.new_page()  # while at top level on the gateway, the session is there
    own.goto(f"{sites.gw.url}/v1/auth/")
    assert "ada@acme.test" in own.content()


def test_a_page_of_images_without_a_session_starts_no_sign_in(browser: Any, sites: Sites) -> None:
    context = browser(ALLOW)
    authorize: list[str] = []
    context.on("request", lambda request: authorize.append(request.url) if request.url.startswith(sites.idp) else None)
    page = context.new_page()
    page.goto(sites.vendor + "/")
    urls = [sites.image("ml", f"k{i}.png") for i in range(50)]
    assert page.evaluate("(us) => imgs(us)", urls) == [-1] * 50
    assert authorize == []  # 50 subresources: 50 x 401, not one trip to the issuer


def test_opening_an_object_at_top_level_signs_in_and_lands_on_it(browser: Any, sites: Sites) -> None:
    page = browser(ALLOW).new_page()
    response = page.goto(sites.image())
    assert response is not None and page.url.startswith(sites.idp)  # sent to sign-in, at the issuer
    page.fill("input[name=login]", "ada")
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    # Back from the issuer the navigation is cross-site (its redirect chain passed through the
    # issuer), so the gateway's own page offers the object, and the click is first-party.
    page.wait_for_url(lambda url: "/v1/auth/?next=" in url)
    with page.expect_response(lambda r: "/v1/local/ml/tiny.png" in r.url) as landed:
        page.click("#continue")
    assert landed.value.status == 200 and landed.value.headers["content-type"] == "image/png"


def test_chromium_default_profile(browser: Any, sites: Sites) -> None:
    """Measures (and pins) what this Chromium does with an unseeded profile: it blocks third-party
    cookies, unlike Google Chrome's default. Reported in docs/browser-sign-in.md."""
    page = sign_in(browser(None), sites, "ada")
    assert page.evaluate("(u) => img(u)", sites.image()) == -1
