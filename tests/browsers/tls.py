"""A private test CA and its leaf certificates, made with ``cryptography`` for each test session.

The browsers must trust this CA the way a company trusts its own CA (an NSS database, a trust store),
not by ignoring certificate errors: Secure cookies, ``SameSite=None``, ``__Host-`` names and secure
contexts must behave as they do on a real HTTPS deployment. ``nss_database`` writes the CA into an NSS
database (Chromium reads ``$HOME/.pki/nssdb``, Firefox its profile's ``cert9.db``).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import need

CA_NICKNAME = "gateway-test-ca"


@dataclass(frozen=True)
class Leaf:
    """A server certificate (chain: leaf, then CA) and its key, as PEM files."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass
class TestCA:
    """A CA whose key lives only in this process; ``issue`` signs a leaf for some loopback hosts."""

    __test__ = False  # not a pytest class
    folder: Path
    cert: Path
    _key: ec.EllipticCurvePrivateKey
    _ca: x509.Certificate

    @classmethod
    def create(cls, folder: Path) -> TestCA:
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Gateway test CA (tests/browsers)")])
        now = datetime.datetime.now(datetime.UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        cert = folder / "ca.pem"
        cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        return cls(folder, cert, key, ca)

    @property
    def pem(self) -> str:
        return self.cert.read_text()

    def issue(self, *hosts: str) -> Leaf:
        """A leaf for these names and loopback addresses (``localhost``, ``127.0.0.2``, ...)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self._ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        stem = "-".join(hosts).replace(":", "_") + f"-{leaf.serial_number:x}"[:9]
        cert, key_file = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        pem = serialization.Encoding.PEM
        cert.write_bytes(leaf.public_bytes(pem) + self._ca.public_bytes(pem))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return Leaf(cert, key_file)

    def client_context(self) -> ssl.SSLContext:
        """What a Python client (httpx, urllib) uses to reach the test sites."""
        return ssl.create_default_context(cafile=str(self.cert))


def nss_database(folder: Path, ca: TestCA) -> Path:
    """An NSS database (``cert9.db``) in ``folder`` that trusts ``ca`` for TLS servers (``C,,``).

    This is how an administrator adds a company CA to Chromium on Linux (``~/.pki/nssdb``) and to a
    Firefox profile; it needs ``certutil`` (Debian ``libnss3-tools``).
    """
    certutil = shutil.which("certutil")
    need(certutil is not None, "certutil is not installed (apt-get install libnss3-tools)")
    assert certutil is not None
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sql:{folder}"
    if not (folder / "cert9.db").exists():
        subprocess.run([certutil, "-N", "-d", db, "--empty-password"], check=True, capture_output=True)  # noqa: S603
    subprocess.run([certutil, "-A", "-d", db, "-t", "C,,", "-n", CA_NICKNAME, "-i", str(ca.cert)],  # noqa: S603
                   check=True, capture_output=True)
    return folder
