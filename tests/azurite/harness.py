"""Run Azurite's blob service (npm ``azurite``, pinned in package-lock.json) for tests that need a real
Azure Blob Storage that checks signatures.

Azurite checks SharedKey signatures, service SAS signatures (account key and user delegation key),
SAS expiry and ``spr``; it does not enforce ``sip`` (its IP check is a stub), though ``sip`` is part
of the signed string. ``--skipApiVersionCheck`` lets the current SDK's newer ``x-ms-version`` through
(only that header check is skipped, not authentication). With ``tls`` it serves HTTPS with
``--oauth basic``: Entra bearer tokens are then accepted (Azurite reads their issuer, audience and
lifetime, not their signature) and ``get_user_delegation_key`` works. Usage::

    with running_azurite() as azurite:          # azurite.endpoint: http://127.0.0.1:PORT/devstoreaccount1
        azurite.service().create_container("media")

Without node the caller's test is skipped with a reason (an error under ``CI=true``).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import need, node_package, stop_process, wait_for_line

PACKAGE = "azurite"
VERSION = "3.35.0"  # the last release that runs on Node 20
ACCOUNT = "devstoreaccount1"  # Azurite's well-known development account, published by Microsoft
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_READY = re.compile(r"successfully listens on (https?://\S+)")


@dataclass(frozen=True)
class Tls:
    """A self-signed certificate for 127.0.0.1; ``cert`` is also the trust anchor to verify with."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Azurite:
    endpoint: str  # the account's blob endpoint: scheme://127.0.0.1:PORT/devstoreaccount1
    tls: Tls | None

    @property
    def ca(self) -> str | bool:
        """What azure-core's requests transport verifies with (``connection_verify``, ``REQUESTS_CA_BUNDLE``)."""
        return str(self.tls.cert) if self.tls else True

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx verifies with."""
        return ssl.create_default_context(cafile=str(self.tls.cert)) if self.tls else True

    def service(self) -> BlobServiceClient:
        """A client with the account key, for setting up containers and blobs."""
        return BlobServiceClient(self.endpoint, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY},
                                 connection_verify=self.ca)


def make_tls(folder: Path) -> Tls:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    tls = Tls(folder / "azurite-cert.pem", folder / "azurite-key.pem")
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return tls


def _main_js() -> Path:
    folder = node_package(PACKAGE)
    if json.loads((folder / "package.json").read_text()).get("version") != VERSION:
        raise AssertionError(f"package-lock.json pins {PACKAGE} at another version than {VERSION}")
    return folder / "dist" / "src" / "blob" / "main.js"


@contextmanager
def running_azurite(*, tls: Tls | None = None, timeout: float = 30.0) -> Iterator[Azurite]:
    """Start Azurite's blob service on a free loopback port, with a fresh temporary workspace; the
    process is stopped by its PID."""
    main = _main_js()
    node = shutil.which("node")
    need(node is not None, "node is needed to run Azurite")
    assert node is not None
    with tempfile.TemporaryDirectory(prefix="azurite-") as data, tempfile.TemporaryFile("w+") as log:
        argv = [node, str(main), "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", data,
                "--skipApiVersionCheck", "--disableTelemetry", "--silent"]
        if tls is not None:
            argv += ["--cert", str(tls.cert), "--key", str(tls.key), "--oauth", "basic"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True,  # noqa: S603 - fixed argv
                                env={k: v for k, v in os.environ.items() if k != "AZURITE_ACCOUNTS"})
        try:
            try:
                base = wait_for_line(proc, _READY, timeout, "Azurite")
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}\n{log.read()[-2000:]}") from None
            yield Azurite(f"{base}/{ACCOUNT}", tls)
        finally:
            stop_process(proc)
