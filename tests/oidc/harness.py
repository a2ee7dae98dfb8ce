"""Run panva's ``oidc-provider`` (a real OpenID Provider) on loopback for the sign-in tests.

It is installed from the project's package-lock.json by ``scripts/npm-ci`` (scripts/test runs it up
front). Version 9 says it wants Node 22; it runs on the Node 20 that CI has, with a warning, which is
why package.json keeps it to 9.x. Without node/npm the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import need, node_package

PACKAGE = "oidc-provider"
MAJOR = "9"
SCRIPT = Path(__file__).with_name("provider.mjs")
HOST = "127.0.0.2"  # another site than the gateway (127.0.0.1) and the vendor page (localhost)
_READY = "OIDC READY "


def install() -> Path:
    """The provider's entry module, from package-lock.json (``npm ci``); skips (fails under CI) without Node."""
    folder = node_package(PACKAGE)
    version = json.loads((folder / "package.json").read_text()).get("version", "")
    if version.split(".")[0] != MAJOR:
        raise AssertionError(f"provider.mjs is written for {PACKAGE} {MAJOR}.x; package-lock.json has {version}")
    return folder / "lib" / "index.js"


@dataclass
class Provider:
    issuer: str
    clients: list[dict[str, Any]]
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: Path | None = None

    def client(self, client_id: str) -> dict[str, Any]:
        return next(c for c in self.clients if c["client_id"] == client_id)


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(_READY):
                return line[len(_READY):].strip()
    raise RuntimeError(f"oidc-provider did not become ready within {timeout:.0f}s (exit code {proc.poll()})")


@contextlib.contextmanager
def running_provider(port: int, clients: list[dict[str, Any]], accounts: dict[str, dict[str, Any]],
                     *, timeout: float = 30.0) -> Iterator[Provider]:
    """oidc-provider on ``http://127.0.0.2:<port>`` with these clients and accounts; stopped by PID."""
    entry = install()
    node = shutil.which("node")
    need(node is not None, "node is needed to run oidc-provider")
    assert node is not None
    with tempfile.TemporaryDirectory(prefix="oidc-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"host": HOST, "port": port, "clients": clients, "accounts": accounts}))
        log = Path(tmp) / "stderr.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [node, str(SCRIPT), str(config)], stdout=subprocess.PIPE, stderr=stderr, text=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OIDC_PROVIDER_ENTRY": str(entry)})
            try:
                try:
                    issuer = _wait_ready(proc, timeout)
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}\n{log.read_text()[-2000:]}") from None
                yield Provider(issuer, clients, accounts, log)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                if proc.stdout is not None:
                    proc.stdout.close()
