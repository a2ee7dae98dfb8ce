"""The one place that chooses a browser: ``open_browser("chromium" | "firefox" | "webkit", ca=...)``.

    with open_browser("firefox", ca=ca) as browser:
        result = browser.run(site.url("/page"), timeout=20)          # window.__result of that page
        page = browser.open(site.url("/connect"))
        page.click("#connect")                                        # a real user gesture
        popup = page.popup()                                          # the window.open it caused

Engines and drivers (see each module for why):

- ``chromium``: Debian's chromium over CDP, ``firefox``: Debian's firefox-esr over WebDriver BiDi, both
  through one Node process running ``driver.mjs`` with puppeteer-core (tests/browsers/puppeteer.py).
- ``webkit``: WebKitGTK's MiniBrowser through WebKitWebDriver, under Xvfb (tests/browsers/webkit.py).

Each browser gets a fresh profile that trusts the test CA and otherwise keeps the engine's defaults. A
missing browser skips the test with the reason (fails under ``CI=true``), through ``tests.support.need``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.browsers.base import Browser, BrowserError, Page
from tests.browsers.tls import TestCA

__all__ = ["BROWSERS", "Browser", "BrowserError", "Page", "launch", "open_browser"]

BROWSERS = ("chromium", "firefox", "webkit")


def launch(name: str, *, ca: TestCA, timeout: float = 60) -> Browser:
    """Start browser ``name`` with a fresh profile that trusts ``ca``; the caller closes it."""
    match name:
        case "chromium" | "firefox":
            from tests.browsers.puppeteer import PuppeteerBrowser

            return PuppeteerBrowser(name, ca, timeout=timeout)
        case "webkit":
            from tests.browsers.webkit import WebKitBrowser

            return WebKitBrowser(ca, timeout=timeout)
        case _:
            raise ValueError(f"unknown browser {name!r}; one of {BROWSERS}")


@contextlib.contextmanager
def open_browser(name: str, *, ca: TestCA, timeout: float = 60) -> Iterator[Browser]:
    """``launch`` as a context manager: the browser and everything it started stop on exit."""
    browser = launch(name, ca=ca, timeout=timeout)
    try:
        yield browser
    finally:
        browser.close()
