"""What a browser test sees of a browser, whichever engine and driver is behind it.

A page reports what it measured by setting ``window.__result`` (any JSON value); ``Page.result`` polls
for it. Scripts travel as JavaScript *expressions* (a promise is awaited) and values come back as JSON
text, so Chromium, Firefox and WebKit answer with exactly the same Python values.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from typing import Any

RESULT = "('__result' in window) ? {value: window.__result} : null"


class BrowserError(RuntimeError):
    """The browser or its driver refused or failed an operation (navigation, script, click, ...)."""


class Page(ABC):
    """One top-level window (a tab, or a popup some page opened)."""

    @abstractmethod
    def evaluate(self, js: str) -> Any:
        """The JSON value of the JavaScript expression ``js`` in this page (a promise is awaited)."""

    @abstractmethod
    def click(self, selector: str, *, timeout: float = 10) -> None:
        """Click the first element matching the CSS ``selector`` with real input events.

        Why real events: ``window.open`` from a click handler is allowed only with a user activation;
        ``element.click()`` from a script has none, so the popup blocker would refuse it.
        """

    @abstractmethod
    def popup(self, *, timeout: float = 10) -> Page:
        """The next window this page opened (``window.open``), waiting up to ``timeout`` seconds."""

    @property
    @abstractmethod
    def url(self) -> str | None:
        """The current URL, or None once the window is closed (a popup may close itself)."""

    @abstractmethod
    def console(self) -> list[str]:
        """What the page wrote to the console (where the driver can tell; WebKit's cannot)."""

    @abstractmethod
    def close(self) -> None: ...

    def wait_for(self, js: str, *, timeout: float = 20, interval: float = 0.05) -> Any:
        """Poll the expression ``js`` until it is neither null nor false; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(js)
            if value not in (None, False):
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{js!r} still {value!r} after {timeout}s on {self.url}; "
                                   f"console: {self.console()[-10:]}")
            time.sleep(interval)

    def result(self, *, timeout: float = 20) -> Any:
        """What the page put in ``window.__result``, waiting up to ``timeout`` seconds for it."""
        return self.wait_for(RESULT, timeout=timeout)["value"]


class Browser(ABC):
    """A running browser with its own fresh profile; pages opened in it share that profile's cookies."""

    name: str
    version: str
    started_in: float  # seconds from launch to ready

    @abstractmethod
    def open(self, url: str, *, timeout: float = 20) -> Page:
        """A new window showing ``url`` once its ``load`` event has fired."""

    @abstractmethod
    def close(self) -> None: ...

    def run(self, url: str, *, timeout: float = 20, click: str | None = None) -> Any:
        """Open ``url``, optionally click ``click`` (a CSS selector), return ``window.__result``, close."""
        page = self.open(url, timeout=timeout)
        try:
            if click is not None:
                page.click(click, timeout=timeout)
            return page.result(timeout=timeout)
        finally:
            page.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def loads(text: str | None) -> Any:
    """The value a driver returned as JSON text (``undefined`` arrives as None)."""
    return None if text is None else json.loads(text)
