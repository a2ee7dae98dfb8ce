"""Run panva's ``oidc-provider`` (a real OpenID Provider) on loopback for the sign-in tests.

``npm install`` puts the pinned version into ``<repo>/.cache/oidc-provider`` once (scripts/test does
it up front, like s3rver's). Version 9 says it wants Node 22; it runs on the Node 20 that CI has,
with a warning, which is why the version is pinned. Without node/npm the tests skip locally and
fail under ``CI=true``.
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

from tests.support import need

PACKAGE = "oidc-provider"
VERSION = "9.13.3"
REPO = Path(__file__).resolve().parents[2]
PREFIX = REPO / ".cache" / "oidc-provider"
SCRIPT = Path(__file__).with_name("provider.mjs")
HOST = "127.0.0.2"  # another site than the gateway (127.0.0.1) and the vendor page (localhost)
_READY = "OIDC READY "


def install() -> Path:
    """The provider's entry module, installed once; skips (fails under CI) when it cannot be."""
    entry = PREFIX / "node_modules" / PACKAGE / "lib" / "index.js"
    manifest = PREFIX / "node_modules" / PACKAGE / "package.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("version") == VERSION:
        return entry
    npm = shutil.which("npm")
    need(npm is not None and shutil.which("node") is not None, "node and npm are needed to run oidc-provider")
    assert npm is not None
    PREFIX.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX), f"{PACKAGE}@{VERSION}"],
        capture_output=True, text=True, timeout=300, check=False)
    need(result.returncode == 0 and manifest.is_file(),
         f"npm install {PACKAGE}@{VERSION} failed: {result.stderr.strip()[-500:]}")
    return entry


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
