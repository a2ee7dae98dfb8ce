"""Chromium and Firefox through one Node process running ``driver.mjs`` (puppeteer-core).

Why puppeteer-core for both: Firefox is driven over WebDriver BiDi and only puppeteer-core (pinned by
package-lock.json, no browser download) speaks it here; the same script drives Debian's chromium over
CDP, so the two engines share one driver, one protocol to Python and one set of page operations.

Profiles stay at their defaults except for trusting the test CA:

- Chromium: puppeteer's default flags are dropped (``ignoreDefaultArgs``): one of them,
  ``--disable-popup-blocking``, would let a popup open without a user gesture. The flags left are
  ``tests.support.CHROMIUM_ARGS`` (``--no-sandbox`` because the tests run as root) and ``--headless``.
  The CA is in the NSS database of the browser's own ``$HOME`` (``~/.pki/nssdb``).
- Firefox: puppeteer writes its test preferences into the profile; ``dom.disable_open_during_load`` is
  set back to Firefox's default (popup blocker on). Its ``cookieBehavior0`` lives in
  ``browser.contentblocking.features.standard``, a preference Firefox 153 no longer reads, so
  ``network.cookie.cookieBehavior`` keeps its default (5, Total Cookie Protection). The CA is in the
  profile's ``cert9.db``.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.browsers.base import Browser, BrowserError, Page, loads
from tests.browsers.tls import TestCA, nss_database
from tests.support import CHROMIUM, CHROMIUM_ARGS, need, node_package

FIREFOX = "/usr/bin/firefox-esr"
SCRIPT = Path(__file__).with_name("driver.mjs")
# Firefox's own default, undoing puppeteer's test preference that turns the popup blocker off.
FIREFOX_PREFS: dict[str, Any] = {"dom.disable_open_during_load": True}


class PuppeteerPage(Page):
    def __init__(self, browser: PuppeteerBrowser, page_id: str) -> None:
        self._browser, self.id = browser, page_id

    def evaluate(self, js: str) -> Any:
        return loads(self._browser.call("eval", page=self.id, js=js))

    def click(self, selector: str, *, timeout: float = 10) -> None:
        self._browser.call("click", page=self.id, selector=selector, timeout=timeout, wait=timeout + 5)

    def popup(self, *, timeout: float = 10) -> Page:
        return PuppeteerPage(self._browser, self._browser.call("popup", page=self.id, timeout=timeout,
                                                               wait=timeout + 5))

    @property
    def url(self) -> str | None:
        url: str | None = self._browser.call("url", page=self.id)
        return url

    def console(self) -> list[str]:
        log: list[str] = self._browser.call("log", page=self.id)
        return log

    def close(self) -> None:
        self._browser.call("close", page=self.id)


class PuppeteerBrowser(Browser):
    """One chromium or firefox-esr process, its fresh profile in a temporary folder."""

    def __init__(self, name: str, ca: TestCA, *, timeout: float = 60) -> None:
        if name not in ("chromium", "firefox"):
            raise ValueError(f"puppeteer drives chromium and firefox, not {name}")
        executable = CHROMIUM if name == "chromium" else FIREFOX
        need(os.access(executable, os.X_OK),
             f"{executable} is not installed (apt-get install {'chromium' if name == 'chromium' else 'firefox-esr'})")
        need(shutil.which("certutil") is not None, "certutil is not installed (apt-get install libnss3-tools)")
        need(shutil.which("node") is not None, "node is needed to drive chromium and firefox (apt-get install nodejs)")
        node_package("puppeteer-core")
        self.name = name
        self._tmp = tempfile.TemporaryDirectory(prefix=f"browser-{name}-")
        root = Path(self._tmp.name)
        env: dict[str, str] = {"HOME": str(root / "home")}
        if name == "chromium":
            nss_database(root / "home" / ".pki" / "nssdb", ca)
            config: dict[str, Any] = {
                "browser": "chrome", "executablePath": CHROMIUM, "ignoreDefaultArgs": True,
                "args": [*CHROMIUM_ARGS, "--headless", f"--user-data-dir={root / 'profile'}", "about:blank"]}
        else:
            (root / "home").mkdir()
            config = {"browser": "firefox", "executablePath": FIREFOX, "prefs": FIREFOX_PREFS,
                      "args": ["--profile", str(nss_database(root / "profile", ca))]}
        config.update(env=env, timeout=timeout)
        self._stderr = (root / "driver.log").open("w")
        started = time.monotonic()
        self._proc = subprocess.Popen(  # noqa: S603
            [str(shutil.which("node")), str(SCRIPT), json.dumps(config)], cwd=SCRIPT.parents[2],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
            start_new_session=True)  # its own process group: the browser goes with it on a kill
        self._lines: queue.Queue[str] = queue.Queue()
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()
        self._next = 0
        try:
            ready = json.loads(self._read(timeout, "start"))
        except BaseException:
            self.close()
            raise
        self.version = ready["version"]
        self.started_in = time.monotonic() - started

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)

    def _read(self, timeout: float, what: str) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            log = Path(self._stderr.name).read_text()[-2000:]
            raise BrowserError(f"{self.name}: no answer to {what} within {timeout}s "
                               f"(exit code {self._proc.poll()}); driver log: {log}") from None

    def call(self, op: str, *, wait: float = 30, **args: Any) -> Any:
        """Send one request to driver.mjs and wait up to ``wait`` seconds for its answer."""
        assert self._proc.stdin is not None
        self._next += 1
        self._proc.stdin.write(json.dumps({"id": self._next, "op": op, **args}) + "\n")
        self._proc.stdin.flush()
        deadline = time.monotonic() + wait
        while (answer := json.loads(self._read(max(deadline - time.monotonic(), 0.01), op))).get("id") != self._next:
            pass  # the late answer to a call that timed out earlier
        if "error" in answer:
            raise BrowserError(f"{self.name} {op}: {answer['error']}")
        return answer.get("value")

    def open(self, url: str, *, timeout: float = 20) -> Page:
        return PuppeteerPage(self, self.call("open", url=url, timeout=timeout, wait=timeout + 5))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self.call("quit", wait=15)
                self._proc.wait(15)
            except (BrowserError, OSError, subprocess.TimeoutExpired, ValueError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # the group of our own node child, by its id
                self._proc.wait(5)
        self._pumper.join(5)  # it ends at the pipe's end of file
        for stream in (self._proc.stdin, self._proc.stdout, self._stderr):
            if stream is not None:
                stream.close()
        self._tmp.cleanup()
