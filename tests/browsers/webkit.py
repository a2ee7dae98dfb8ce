"""WebKitGTK's MiniBrowser through ``WebKitWebDriver`` (Debian ``webkit2gtk-driver``), a W3C WebDriver
server spoken to with plain HTTP calls, on an ``Xvfb`` display this module starts (MiniBrowser has no
headless mode).

Trusting the test CA: WebKitGTK's TLS (glib-networking, GnuTLS) trusts the system bundle
``/etc/ssl/certs/ca-certificates.crt``, which is where a company installs its CA
(``update-ca-certificates``). The driver runs in a private mount namespace (``unshare``) in which that
file is the system bundle plus the test CA, so the browser trusts it exactly like a company CA while the
machine's own bundle is never touched. As root that is ``unshare --mount``; otherwise an unprivileged
user namespace (``--user --map-root-user``). The alternatives are weaker: the capability
``webkitgtk:browserOptions.certificates`` accepts only the exact leaf of each host (a per-host
exception, and every site must exist before the session), and ``acceptInsecureCerts`` ignores errors.

MiniBrowser's defaults are kept: cookie policy ``no-third-party``, Intelligent Tracking Prevention off,
no web process sandbox. This is Safari's engine, not Safari: Safari has ITP on and its own cookie rules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.browsers.base import Browser, BrowserError, Page, loads
from tests.browsers.tls import TestCA
from tests.support import free_port, need, wait_for_port

DRIVER = "WebKitWebDriver"
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


def _start_xvfb(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Xvfb on a display number it picks itself (``-displayfd``), so parallel runs never collide."""
    xvfb = shutil.which("Xvfb")
    need(xvfb is not None, "Xvfb is not installed (apt-get install xvfb)")
    read, write = os.pipe()
    with log.open("w") as stderr:
        proc = subprocess.Popen([str(xvfb), "-displayfd", str(write), "-screen", "0", "1280x800x24",  # noqa: S603
                                 "-nolisten", "tcp"], pass_fds=(write,), stderr=stderr, start_new_session=True)
    os.close(write)
    with os.fdopen(read) as pipe:
        display = pipe.readline().strip()  # written once the server is ready; empty if it failed
    if not display:
        proc.kill()
        raise BrowserError(f"Xvfb did not start: {log.read_text()[-1000:]}")
    return proc, f":{display}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group this module started, by its id."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class WebKitPage(Page):
    def __init__(self, browser: WebKitBrowser, handle: str) -> None:
        self._browser, self.handle = browser, handle

    def _focus(self) -> None:
        self._browser.focus(self.handle)

    def evaluate(self, js: str) -> Any:
        self._focus()
        # A returned promise is awaited by the driver (W3C WebDriver "execute script").
        return loads(self._browser.call("POST", "/execute/sync", {
            "script": f"return (async () => JSON.stringify(await ({js})))()", "args": []}))

    def click(self, selector: str, *, timeout: float = 10) -> None:
        self._focus()
        deadline = time.monotonic() + timeout
        while True:
            try:
                element = self._browser.call("POST", "/element", {"using": "css selector", "value": selector})
                break
            except BrowserError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # Element Click dispatches real mouse events from the UI process: a user activation.
        self._browser.call("POST", f"/element/{element[ELEMENT]}/click", {})

    def popup(self, *, timeout: float = 10) -> Page:
        deadline = time.monotonic() + timeout
        while True:
            fresh = [h for h in self._browser.call("GET", "/window/handles") if h not in self._browser.known]
            if fresh:
                self._browser.known.update(fresh)
                popup = WebKitPage(self._browser, fresh[0])
                # A popup starts at about:blank; wait (within the timeout) until it shows what was opened.
                while popup.url == "about:blank" and time.monotonic() < deadline:
                    time.sleep(0.05)
                return popup
            if time.monotonic() > deadline:
                raise BrowserError(f"webkit: no popup opened within {timeout}s")
            time.sleep(0.05)

    @property
    def url(self) -> str | None:
        if self.handle not in self._browser.call("GET", "/window/handles"):
            return None
        try:
            self._focus()
            url: str = self._browser.call("GET", "/url")
        except BrowserError as exc:
            if "no such window" not in str(exc):
                raise
            return None  # it closed between the two calls (a popup that closes itself)
        return url

    def console(self) -> list[str]:
        return []  # WebDriver classic has no console log for WebKitGTK

    def close(self) -> None:
        if self.handle in self._browser.call("GET", "/window/handles"):
            self._focus()
            self._browser.call("DELETE", "/window")
            self._browser.current = None
        self._browser.focus(self._browser.home)  # WebDriver needs a current window to open the next one


class WebKitBrowser(Browser):
    """MiniBrowser in one WebDriver session; a blank home window keeps the session alive between pages."""

    def __init__(self, ca: TestCA, *, timeout: float = 60) -> None:
        driver = shutil.which(DRIVER)
        need(driver is not None, f"{DRIVER} is not installed (apt-get install webkit2gtk-driver)")
        unshare = shutil.which("unshare")
        need(unshare is not None, "unshare is not installed (util-linux)")
        assert driver is not None and unshare is not None
        self.name = "webkit"
        self._tmp = tempfile.TemporaryDirectory(prefix="browser-webkit-")
        root = Path(self._tmp.name)
        started = time.monotonic()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._http = httpx.Client(timeout=timeout)
        self._session: str | None = None
        try:
            xvfb, display = _start_xvfb(root / "xvfb.log")
            self._procs.append(xvfb)
            bundle = root / "ca-certificates.crt"
            bundle.write_text(SYSTEM_BUNDLE.read_text() + ca.pem)
            bundle.chmod(0o644)
            port = free_port()
            namespace = ["--mount", "--propagation", "private"] if os.geteuid() == 0 else \
                ["--user", "--map-root-user", "--mount"]
            (root / "home").mkdir()
            env = {**os.environ, "DISPLAY": display, "HOME": str(root / "home"), "NO_AT_BRIDGE": "1"}
            with (root / "driver.log").open("w") as log:
                self._procs.append(subprocess.Popen(  # noqa: S603
                    [unshare, *namespace, "sh", "-c", 'mount --bind "$0" "$1" && exec "$2" --host=127.0.0.1 "$3"',
                     str(bundle), str(SYSTEM_BUNDLE), driver, f"--port={port}"],
                    env=env, stdout=log, stderr=log, start_new_session=True))
            try:
                wait_for_port(port, timeout=10)
            except TimeoutError:
                log_text = (root / "driver.log").read_text()
                need("unshare:" not in log_text, "WebKitGTK trusts the test CA in a private mount namespace, which "
                     f"cannot be made here (root or unprivileged user namespaces are needed): {log_text.strip()}")
                raise
            self._base = f"http://127.0.0.1:{port}"
            answer = self._post_session()
            self._session = answer["sessionId"]
            self.version = f"WebKitGTK/{answer['capabilities']['browserVersion']}"
            self.home: str = self.call("GET", "/window")
            self.current: str | None = self.home
            self.known: set[str] = {self.home}
        except BaseException as exc:
            log_text = (root / "driver.log").read_text()[-1500:] if (root / "driver.log").exists() else ""
            self.close()
            if isinstance(exc, TimeoutError):
                raise BrowserError(f"webkit: {exc}; driver log: {log_text}") from exc
            raise
        self.started_in = time.monotonic() - started

    def _post_session(self) -> dict[str, Any]:
        response = self._http.post(f"{self._base}/session", json={"capabilities": {"alwaysMatch": {}}})
        value: dict[str, Any] = response.json()["value"]
        if "sessionId" not in value:
            raise BrowserError(f"webkit: no session: {value}")
        return value

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One WebDriver command in this session; a WebDriver error becomes a BrowserError."""
        response = self._http.request(method, f"{self._base}/session/{self._session}{path}", json=body)
        value = response.json()["value"]
        if response.status_code != 200:
            raise BrowserError(f"webkit {method} {path}: {value.get('error')}: {value.get('message')}")
        return value

    def focus(self, handle: str) -> None:
        """WebDriver addresses one window at a time: switch to ``handle`` unless it is already current."""
        if self.current != handle:
            self.call("POST", "/window", {"handle": handle})
            self.current = handle

    def open(self, url: str, *, timeout: float = 20) -> Page:
        # A window, not a tab: in a tab MiniBrowser creates for automation, window.open returns null.
        handle = self.call("POST", "/window/new", {"type": "window"})["handle"]
        self.known.add(handle)
        self.focus(handle)
        self.call("POST", "/timeouts", {"pageLoad": int(timeout * 1000)})
        page = WebKitPage(self, handle)
        try:
            self.call("POST", "/url", {"url": url})  # returns once the load event has fired
        except BrowserError:
            page.close()
            raise
        # A failed load (a TLS error) leaves the window's document at about:blank, sometimes behind an
        # error page for which WebDriver's /url already names the URL that failed: ask the document.
        if page.evaluate("location.href") == "about:blank" != url:
            page.close()
            raise BrowserError(f"webkit: could not load {url}")
        return page

    def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(httpx.HTTPError):
                self._http.delete(f"{self._base}/session/{self._session}", timeout=10)
            self._session = None
        self._http.close()
        for proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        self._tmp.cleanup()
