"""Native HTTPS: ``gateway serve --tls-cert --tls-key`` as a real process (two workers), a rotated
certificate picked up by new connections without a restart while open ones carry on, and a bad
pair refused at startup with a clear message."""

from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import make_data_dir
from tests.support import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


class Authority:
    """A throwaway certificate authority, like a company's internal CA or mkcert's."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cert_path: Path, key_path: Path) -> int:
        """A leaf for localhost and 127.0.0.1, written the way cert-manager does (replace, not edit);
        returns its serial number."""
        import ipaddress

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        for path, data in ((key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())),
                           (cert_path, cert.public_bytes(serialization.Encoding.PEM))):
            tmp = path.with_suffix(".new")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return serial


def serial_of(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), 5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def tls_gateway(tmp_path: Path) -> Iterator[tuple[int, Authority, Path, Path, Path]]:
    authority = Authority()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(authority.pem())
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    authority.issue(cert, key)
    data = make_data_dir(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--local-dir", str(data), "--port", str(port),
                             "--workers", "2", "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        wait_for_port(port, timeout=30)
        yield port, authority, ca, cert, key
    finally:
        proc.terminate()
        proc.wait(20)


Gateway = tuple[int, Authority, Path, Path, Path]


def _serial(sock: ssl.SSLSocket | None) -> int:
    assert sock is not None
    return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True) or b"").serial_number


def test_https_and_a_rotated_certificate_without_a_restart(tls_gateway: Gateway) -> None:
    port, authority, ca, cert, key = tls_gateway
    context = ssl.create_default_context(cafile=str(ca))
    open_conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    open_conn.request("GET", "/v1/datasets/local/objects/a.bin")
    first = open_conn.getresponse()
    first.read()
    assert first.status == 302
    # The local backend's URLs are https too: the public URL follows the listener's scheme.
    assert first.getheader("Location", "").startswith(f"https://127.0.0.1:{port}/v1/local/local/a.bin?")
    old_serial = _serial(open_conn.sock)  # type: ignore[arg-type]

    new_serial = authority.issue(cert, key)
    deadline = time.monotonic() + 10
    # Every worker looks at the files at most once a second, on a handshake: within a few seconds,
    # every new connection, whichever worker accepts it, gets the new certificate.
    while {serial_of(port, ca) for _ in range(8)} != {new_serial}:
        assert time.monotonic() < deadline, "the rotated certificate was not used for new connections"
        time.sleep(0.3)

    # The connection opened before the rotation carries on, with the certificate it started with.
    open_conn.request("GET", "/healthz")
    again = open_conn.getresponse()
    assert again.status == 200 and again.read()
    assert _serial(open_conn.sock) == old_serial  # type: ignore[arg-type]
    open_conn.close()


def test_a_half_written_rotation_keeps_the_last_good_certificate(tls_gateway: Gateway) -> None:
    port, authority, ca, cert, key = tls_gateway
    serial = serial_of(port, ca)
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot yet\n-----END PRIVATE KEY-----\n")  # the key lags behind
    time.sleep(1.5)
    assert serial_of(port, ca) == serial  # still served, with the last pair that loaded


def _serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=30, cwd=cwd, env=env)


def test_a_bad_pair_is_a_clear_error_at_startup(tmp_path: Path) -> None:
    authority = Authority()
    data = make_data_dir(tmp_path)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    other_cert, other_key = tmp_path / "other.crt", tmp_path / "other.key"
    authority.issue(cert, key)
    authority.issue(other_cert, other_key)
    cases = {
        "the key does not belong to the certificate": ["--tls-cert", str(cert), "--tls-key", str(other_key)],
        "not a PEM certificate and private key": ["--tls-cert", str(data / "a.bin"), "--tls-key", str(key)],
        "cannot read it (no such file)": ["--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(key)],
        "GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together": ["--tls-cert", str(cert)],
    }
    for expected, args in cases.items():
        proc = _serve("--local-dir", str(data), *args, cwd=tmp_path)
        assert proc.returncode == 1, (expected, proc.stderr[-2000:])
        assert expected in proc.stderr, (expected, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        assert "BEGIN" not in proc.stderr  # never the key's contents
