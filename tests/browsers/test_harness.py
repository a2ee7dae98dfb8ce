"""Smoke tests of the browser harness, in Chromium, Firefox and WebKitGTK.

A vendor page on site A (``https://localhost``) loads from a storage on site B (``https://127.0.0.2``,
CORS ``*``) with the loaders vendors use; a click opens a popup on B that ``postMessage``s back; and
the engine's default third-party cookie policy is pinned. Each check has a negative twin (a missing
CORS header, a script without a gesture, a certificate from another CA), so a harness that ignored
errors, clicked without a user activation or skipped the page would fail here.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.browsers.harness import Browser, BrowserError
from tests.browsers.sites import CORS_ANY, Request, Response, Site, https_site, page, static
from tests.browsers.tls import TestCA

pytestmark = pytest.mark.browser

BLOB = bytes(range(256))
# Does a cookie that site B set in a top-level visit travel on an <img> from a page on site A?
# Observed with default profiles: Debian Chromium blocks third-party cookies in a fresh profile,
# Firefox partitions them (Total Cookie Protection), MiniBrowser's "no-third-party" policy only
# stops third parties from *setting* cookies, and its ITP is off.
THIRD_PARTY_COOKIE_SENT = {"chromium": False, "firefox": False, "webkit": True}


def png(width: int, height: int, rgba: tuple[int, int, int, int]) -> bytes:
    """A PNG of one colour (no dependency, a few lines of zlib)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgba) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


RED = png(2, 2, (255, 0, 0, 255))


@dataclass
class Sites:
    vendor: Site  # site A: the page
    storage: Site  # site B: the data, CORS *
    stranger: Site  # served with a certificate from another CA


def _cookie_page(request: Request) -> Response:
    """B's top-level page: sets a cross-site-capable cookie named in the query, reports what it sees."""
    name = request.query.split("=", 1)[1]
    body = f"<script>window.__result = document.cookie.split('; ').includes('{name}=1')</script>"
    return Response(200, {"Content-Type": "text/html", "Cache-Control": "no-store",
                          "Set-Cookie": f"{name}=1; Path=/; Secure; SameSite=None; Max-Age=600"}, body.encode())


@pytest.fixture(scope="module")
def sites(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    other_ca = TestCA.create(tmp_path_factory.mktemp("other-ca"))
    with https_site(ca, "localhost") as vendor, https_site(ca, "127.0.0.2") as storage, \
            https_site(other_ca, "127.0.0.3", {"/blob.bin": static(BLOB, "application/octet-stream",
                                                                   cors=CORS_ANY)}) as stranger:
        storage.routes.update({
            "/tiny.png": static(RED, "image/png", cors=CORS_ANY),
            "/plain.png": static(RED, "image/png"),  # no CORS headers at all
            "/blob.bin": static(BLOB, "application/octet-stream", cors=CORS_ANY),
            "/plain.bin": static(BLOB, "application/octet-stream"),
            "/seen.png": static(RED, "image/png"),
            "/set-cookie": _cookie_page,
            # Posts to its opener, then closes itself when the opener answers "done".
            "/popup.html": page(lambda: "<script>opener.postMessage({from: 'B', secure: isSecureContext}, "
                                        f"'{vendor.origin}'); addEventListener('message', (e) => "
                                        f"e.origin === '{vendor.origin}' && e.data === 'done' && window.close())"
                                        "</script>"),
        })
        yield Sites(vendor, storage, stranger)


def serve_script(site: Site, path: str, script: str) -> str:
    """Put a page at ``path`` on ``site`` that runs ``script`` (which sets ``window.__result``)."""
    site.routes[path] = page(f"<!doctype html><meta charset=utf-8><body><script>{script}</script></body>")
    return site.url(path)


HELPERS = """
const load = (src, crossOrigin) => new Promise((resolve) => {
  const img = new Image();
  if (crossOrigin) img.crossOrigin = crossOrigin;
  img.onload = () => resolve(img); img.onerror = () => resolve(null); img.src = src;
});
const pixel = (img) => {
  const canvas = document.createElement('canvas'); canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d'); context.drawImage(img, 0, 0);
  try { return Array.from(context.getImageData(0, 0, 1, 1).data); } catch (e) { return e.name; }
};
const bytes = async (response) => Array.from(new Uint8Array(await response.arrayBuffer()));
const failure = (promise) => promise.then((r) => r.status, (e) => e.name);
const report = (work) => work().then((v) => { window.__result = v; }, (e) => { window.__result = {error: String(e)}; });
"""

LOADERS = {
    "img": ("report(async () => ({width: (await load(B + '/tiny.png'))?.naturalWidth ?? -1,"
            " missing: (await load(B + '/none.png')) === null}))",
            {"width": 2, "missing": True}),
    "canvas": ("report(async () => ({cors: pixel(await load(B + '/tiny.png', 'anonymous')),"
               " tainted: pixel(await load(B + '/plain.png')),"
               " refused: (await load(B + '/plain.png?cors', 'anonymous')) === null}))",
               {"cors": [255, 0, 0, 255], "tainted": "SecurityError", "refused": True}),
    "fetch": ("report(async () => ({bytes: await bytes(await fetch(B + '/blob.bin')),"
              " refused: await failure(fetch(B + '/plain.bin'))}))",
              {"bytes": list(BLOB), "refused": "TypeError"}),
    "range": ("report(async () => { const r = await fetch(B + '/blob.bin?range', {headers: {Range: 'bytes=10-19'}});"
              " return {status: r.status, range: r.headers.get('content-range'), bytes: await bytes(r)}; })",
              {"status": 206, "range": "bytes 10-19/256", "bytes": list(range(10, 20))}),
}


def test_the_test_ca_is_trusted_and_nothing_else(browser: Browser, sites: Sites) -> None:
    """Pages under the test CA are secure contexts; a certificate from another CA is refused, so the
    browser trusts the CA for real and does not ignore certificate errors."""
    url = serve_script(sites.vendor, "/trust.html", HELPERS + f"""
      report(async () => ({{secure: isSecureContext, subtle: typeof crypto.subtle,
        trusted: await failure(fetch('{sites.storage.url('/blob.bin')}')),
        stranger: await failure(fetch('{sites.stranger.url('/blob.bin')}'))}}));""")
    assert browser.run(url) == {"secure": True, "subtle": "object", "trusted": 200, "stranger": "TypeError"}
    with pytest.raises(BrowserError):
        browser.open(sites.stranger.url("/blob.bin"), timeout=10)


@pytest.mark.parametrize("loader", LOADERS)
def test_a_page_on_site_a_loads_from_site_b(browser: Browser, sites: Sites, loader: str) -> None:
    script, expected = LOADERS[loader]
    before = len(sites.storage.requests)
    url = serve_script(sites.vendor, f"/{loader}.html", f"const B = '{sites.storage.origin}';" + HELPERS + script)
    assert browser.run(url) == expected
    seen = sites.storage.requests[before:]
    if loader == "range":
        ranged = [r for r in seen if r.path == "/blob.bin" and r.query == "range"]
        # A single range is CORS-safelisted: no preflight, and the header reaches the storage as sent.
        assert [(r.method, r.headers.get("range")) for r in ranged] == [("GET", "bytes=10-19")]
    if loader in ("canvas", "fetch", "range"):  # CORS-mode requests name the page's origin
        assert {r.headers.get("origin") for r in seen if r.path in ("/tiny.png", "/blob.bin")} == \
            {sites.vendor.origin}


def test_a_click_opens_a_popup_that_posts_back(browser: Browser, sites: Sites) -> None:
    """The capability flow's shape: ``window.open`` from a click; the popup ``postMessage``s to its
    opener and closes itself. The same ``window.open`` run by a script alone is blocked."""
    popup_url = sites.storage.url("/popup.html")
    sites.vendor.routes["/connect.html"] = page(f"""<!doctype html><button id=connect
      onclick="window.connected = window.open('{popup_url}', 'connect', 'popup')">Connect</button>
      <script>addEventListener('message', (e) => {{ window.__result = {{data: e.data, origin: e.origin}}; }});
      window.__unprompted = window.open('{popup_url}?unprompted', 'unprompted') !== null;</script>""")
    tab = browser.open(sites.vendor.url("/connect.html"))
    try:
        assert tab.evaluate("window.__unprompted") is False  # the popup blocker is on
        tab.click("#connect")
        popup = tab.popup()
        assert popup.url == popup_url
        assert tab.result() == {"data": {"from": "B", "secure": True}, "origin": sites.storage.origin}
        assert popup.url == popup_url
        tab.evaluate(f"window.connected.postMessage('done', '{sites.storage.origin}')")
        deadline = time.monotonic() + 10
        while popup.url is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert popup.url is None  # the popup closed itself, and the harness can tell
    finally:
        tab.close()
    assert sites.storage.seen("/popup.html") and all(r.query != "unprompted" for r in sites.storage.requests)


def test_third_party_cookie_default(browser: Browser, sites: Sites) -> None:
    """Pins each engine's default: is B's cookie sent on an ``<img>`` that a page on A loads from B?"""
    name = f"tp_{browser.name}"
    assert browser.run(sites.storage.url(f"/set-cookie?name={name}")) is True  # set, first party
    for site, tag in ((sites.storage, "first"), (sites.vendor, "third")):
        url = serve_script(site, f"/embed-{tag}.html", HELPERS + f"""
          report(async () => (await load('{sites.storage.url('/seen.png')}?{name}-{tag}')) !== null);""")
        assert browser.run(url) is True
    sent = {r.query.rsplit("-", 1)[1]: f"{name}=1" in r.headers.get("cookie", "")
            for r in sites.storage.seen("/seen.png") if r.query.startswith(f"{name}-")}
    assert sent == {"first": True, "third": THIRD_PARTY_COOKIE_SENT[browser.name]}


def test_a_page_that_never_reports_times_out(browser: Browser, sites: Sites) -> None:
    url = serve_script(sites.vendor, "/silent.html", "window.__other = 1;")
    with pytest.raises(TimeoutError, match="__result"):
        browser.run(url, timeout=1)


def test_start_up_and_page_times(browser: Browser, sites: Sites,
                                 record_property: Callable[[str, object], None]) -> None:
    """The matrix runs about 15 pages per browser: a start and 15 pages must stay well under a minute."""
    url = serve_script(sites.vendor, "/quick.html", "window.__result = 1;")
    times = []
    for _ in range(5):
        started = time.monotonic()
        assert browser.run(url) == 1
        times.append(time.monotonic() - started)
    per_page = sorted(times)[len(times) // 2]
    record_property("start_seconds", round(browser.started_in, 2))
    record_property("page_seconds", round(per_page, 2))
    print(f"{browser.name} {browser.version}: start {browser.started_in:.2f}s, "
          f"page {per_page:.2f}s (median of {[round(t, 2) for t in times]})")
    assert browser.started_in + 15 * per_page < 60
