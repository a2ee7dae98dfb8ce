"""Run panva's ``oidc-provider`` (a real OpenID Provider) on loopback for the sign-in tests.

It is installed from the project's package-lock.json by ``scripts/npm-ci`` (scripts/test runs it up
front). Version 9 says it wants Node 22; it runs on the Node 20 that CI has, with a warning, which is
why package.json keeps it to 9.x. Without node/npm the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import need, node_package, stop_process, wait_for_line

PACKAGE = "oidc-provider"
MAJOR = "9"
SCRIPT = Path(__file__).with_name("provider.mjs")
HOST = "127.0.0.2"  # another site than the gateway (127.0.0.1) and the vendor page (localhost)
_READY = re.compile(r"^OIDC READY (.+)")


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
                    issuer = wait_for_line(proc, _READY, timeout, "oidc-provider")
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}\n{log.read_text()[-2000:]}") from None
                yield Provider(issuer, clients, accounts, log)
            finally:
                stop_process(proc)
