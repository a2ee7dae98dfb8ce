"""The suites ``gateway serve --tls-cert --tls-key`` agrees to, by real handshakes: TLS 1.3 whenever the
client speaks it; on TLS 1.2 only AEAD suites with forward secrecy (ECDHE with AES-GCM or
ChaCha20-Poly1305), never CBC and never a static-RSA key exchange; for RSA and for ECDSA certificates."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import make_data_dir
from tests.support import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def self_signed(kind: str, cert_path: Path, key_path: Path) -> None:
    """A certificate for 127.0.0.1 with an RSA or an ECDSA key (the key decides which suites apply)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else (
        ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class TlsGateway:
    port: int
    cert: Path
    auth: str  # "RSA" or "ECDSA", as OpenSSL names suites


@pytest.fixture(scope="module", params=["rsa", "ecdsa"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsGateway]:
    folder = tmp_path_factory.mktemp(f"tls-{request.param}")
    cert, key = folder / "tls.crt", folder / "tls.key"
    self_signed(request.param, cert, key)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--local-dir", str(make_data_dir(folder)),
                             "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        wait_for_port(port, timeout=30)
        yield TlsGateway(port, cert, request.param.upper())
    finally:
        proc.terminate()
        proc.wait(20)


def client(gw: TlsGateway, *, tls12_only: bool = False, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(gw.cert))
    if tls12_only:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def handshake(gw: TlsGateway, context: ssl.SSLContext) -> tuple[str | None, str]:
    """The version and suite agreed, after one HTTP request over the connection."""
    with socket.create_connection(("127.0.0.1", gw.port), 5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 200 ")
        suite = sock.cipher()
        assert suite is not None
        return sock.version(), suite[0]


def test_a_default_client_gets_tls_1_3(gateway: TlsGateway) -> None:
    assert handshake(gateway, client(gateway))[0] == "TLSv1.3"


@pytest.mark.parametrize("suite", ["ECDHE-{auth}-AES128-GCM-SHA256", "ECDHE-{auth}-AES256-GCM-SHA384",
                                   "ECDHE-{auth}-CHACHA20-POLY1305"])
def test_tls_1_2_with_an_aead_suite_is_served(gateway: TlsGateway, suite: str) -> None:
    name = suite.format(auth=gateway.auth)
    assert handshake(gateway, client(gateway, tls12_only=True, ciphers=name)) == ("TLSv1.2", name)


@pytest.mark.parametrize("suite", [
    "ECDHE-{auth}-AES128-SHA256",  # CBC: what the gateway offered before
    "ECDHE-{auth}-AES256-SHA384",  # CBC
    "ECDHE-{auth}-AES128-SHA",  # CBC, SHA-1
    "AES128-GCM-SHA256",  # AEAD but a static-RSA key exchange: no forward secrecy
])
def test_tls_1_2_with_any_other_suite_is_refused(gateway: TlsGateway, suite: str) -> None:
    name = suite.format(auth=gateway.auth)
    context = client(gateway, tls12_only=True, ciphers=name)
    assert [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"] == [name]  # offered
    # The server ends the handshake (an alert, or asyncio closing the connection): no suite in common.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(gateway, context)


def test_a_tls_1_2_client_offering_everything_gets_an_aead_suite(gateway: TlsGateway) -> None:
    context = client(gateway, tls12_only=True, ciphers="ALL:@SECLEVEL=0")
    offered = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert f"ECDHE-{gateway.auth}-AES128-SHA256" in offered
    version, suite = handshake(gateway, context)
    assert version == "TLSv1.2"
    assert suite.startswith("ECDHE-") and ("-GCM-" in suite or "CHACHA20-POLY1305" in suite), suite
