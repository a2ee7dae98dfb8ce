"""GCS V4 signing against Google's conformance vectors (tests/fixtures/gcs-v4, Apache-2.0)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gateway.backends.gcs_v4 import HMAC, RSA, HmacSigner, V4Builder, finish, rsa_signer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gcs-v4"
SERVICE_ACCOUNT = json.loads((FIXTURES / "test_service_account.not-a-test.json").read_text())
VECTORS: list[dict[str, Any]] = json.loads((FIXTURES / "v4_signatures.json").read_text())["signingV4Tests"]
# The vectors' other section, postPolicyV4Tests, covers browser POST upload forms: the gateway only
# hands out download URLs, so there is nothing of ours to check against them.


def _unsupported(vector: dict[str, Any]) -> str | None:
    """Why a vector exercises an option the gateway does not offer, or None when it applies."""
    if vector.get("urlStyle") == "VIRTUAL_HOSTED_STYLE":
        return "virtual-hosted style: the gateway signs path-style URLs only (any bucket name works)"
    if vector.get("urlStyle") == "BUCKET_BOUND_HOSTNAME":
        return "bucket-bound hostnames (a CNAME per bucket) are not a backend option"
    if "object" not in vector:
        return "bucket-level URLs (List Objects): the gateway signs object URLs only"
    return None


def _endpoint(vector: dict[str, Any]) -> str:
    """The client libraries' precedence (hostname > client endpoint > emulator > universe domain),
    expressed as the single ``endpoint`` our config has."""
    scheme = vector.get("scheme", "https")
    if "hostname" in vector:
        return f"{scheme}://{vector['hostname']}"
    if "clientEndpoint" in vector:
        endpoint = str(vector["clientEndpoint"])
        return endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
    if "emulatorHostname" in vector:
        return str(vector["emulatorHostname"])
    return f"{scheme}://storage.{vector.get('universeDomain', 'googleapis.com')}"


def _unix(timestamp: str) -> int:
    return int(datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


SUPPORTED = [v for v in VECTORS if _unsupported(v) is None]


def test_the_filter_keeps_most_vectors() -> None:
    skipped = sorted(v["description"] for v in VECTORS if _unsupported(v))
    assert len(SUPPORTED) >= 23, skipped
    assert all("virtual" in d.lower() or "Bucket Bound" in d or d == "List Objects" for d in skipped)


def _port_in_host(vector: dict[str, Any]) -> str | None:
    """The ``host:port`` a vector's endpoint names when it has an explicit port: those vectors sign
    the host without it, but a client sends the port in ``Host`` (and google-cloud-storage's own
    ``generate_signed_url`` signs it: see test_an_endpoint_with_a_port_signs_the_host_clients_send)."""
    scheme, _, netloc = _endpoint(vector).partition("://")
    default = {"http": ":80", "https": ":443"}[scheme]
    return netloc if ":" in netloc and not netloc.endswith(default) else None


@pytest.mark.parametrize("vector", SUPPORTED, ids=[v["description"] for v in SUPPORTED])
def test_conformance_vector(vector: dict[str, Any]) -> None:
    builder = V4Builder(
        algorithm=RSA, credential_id=SERVICE_ACCOUNT["client_email"], endpoint=_endpoint(vector)
    )
    with_port = _port_in_host(vector)
    prepared = builder.prepare(
        vector["bucket"],
        vector["object"],
        signed_at=_unix(vector["timestamp"]),
        expires=vector["expiration"],
        method=vector["method"],
        headers=vector.get("headers"),
        query=vector.get("queryParameters"),
    )
    if with_port is not None:
        # Everything as the vector says, except that the signed host keeps the endpoint's port.
        host = with_port.split(":")[0]
        assert prepared.canonical_request == vector["expectedCanonicalRequest"].replace(
            f"\nhost:{host}\n", f"\nhost:{with_port}\n")
        assert prepared.url == vector["expectedUrl"].rsplit("&X-Goog-Signature=", 1)[0]
        return
    assert prepared.canonical_request == vector["expectedCanonicalRequest"]
    assert prepared.string_to_sign.decode() == vector["expectedStringToSign"]
    assert (
        finish(prepared, rsa_signer(SERVICE_ACCOUNT["private_key"])(prepared.string_to_sign))
        == (vector["expectedUrl"])
    )


def test_the_vectors_with_a_port_are_the_three_known_ones() -> None:
    assert sorted(v["description"] for v in SUPPORTED if _port_in_host(v)) == [
        "Endpoint on client takes precedence over emulator", "Endpoint on client with scheme",
        "Simple GET with non-default hostname"]


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9023", "https://gcs.example.test:8443",
                                      "https://storage.googleapis.com"])
def test_an_endpoint_with_a_port_signs_the_host_clients_send(endpoint: str) -> None:
    """google-cloud-storage's own signer is the reference: the same URL, byte for byte."""
    from google.cloud.storage._signing import generate_signed_url_v4
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(SERVICE_ACCOUNT)
    stamp = datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.UTC)
    # Blob.generate_signed_url quotes the object name the same way before calling this.
    theirs = generate_signed_url_v4(credentials, "/bucket-a/" + quote("dir/caf\u00e9.png", safe="/~"), expiration=300,
                                    api_access_endpoint=endpoint, _request_timestamp=stamp.strftime("%Y%m%dT%H%M%SZ"))
    builder = V4Builder(algorithm=RSA, credential_id=SERVICE_ACCOUNT["client_email"], endpoint=endpoint)
    prepared = builder.prepare("bucket-a", "dir/caf\u00e9.png", signed_at=int(stamp.timestamp()), expires=300)
    ours = finish(prepared, rsa_signer(SERVICE_ACCOUNT["private_key"])(prepared.string_to_sign))
    assert ours == theirs
    if endpoint.endswith(":9023"):
        assert "\nhost:127.0.0.1:9023\n" in prepared.canonical_request


def _reference_hmac(secret: str, string_to_sign: str, date: str) -> str:
    """Google's documented HMAC V4 key derivation, written out independently of the module."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = mac(mac(mac(mac(("GOOG4" + secret).encode(), date), "auto"), "storage"), "goog4_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def test_hmac_signing() -> None:
    secret = "bGoa+V7g/yqDXvKRqq+JTFn4uQZbPiQJo4pf9RzJ"
    builder = V4Builder(algorithm=HMAC, credential_id="GOOG1EXAMPLEACCESSID")
    signer = HmacSigner(secret)
    for signed_at in (_unix("2019-02-01T09:00:00Z"), _unix("2019-02-02T00:00:00Z")):
        prepared = builder.prepare("test-bucket", "dir/caf\u00e9 1+1~.txt", signed_at=signed_at, expires=600)
        url = finish(prepared, signer(prepared.string_to_sign))
        date = datetime.datetime.fromtimestamp(signed_at, datetime.UTC).strftime("%Y%m%d")
        assert url.startswith("https://storage.googleapis.com/test-bucket/dir/caf%C3%A9%201%2B1~.txt?")
        assert "X-Goog-Algorithm=GOOG4-HMAC-SHA256" in url
        assert f"X-Goog-Credential=GOOG1EXAMPLEACCESSID%2F{date}%2Fauto%2Fstorage%2Fgoog4_request" in url
        assert prepared.string_to_sign.startswith(b"GOOG4-HMAC-SHA256\n")
        expected = _reference_hmac(secret, prepared.string_to_sign.decode(), date)
        assert url.endswith(f"&X-Goog-Signature={expected}")


def test_hmac_signer_refuses_rsa_strings() -> None:
    builder = V4Builder(algorithm=RSA, credential_id="sa@example.iam.gserviceaccount.com")
    prepared = builder.prepare("b", "k", signed_at=0, expires=10)
    with pytest.raises(ValueError, match="HMAC"):
        HmacSigner("secret")(prepared.string_to_sign)


@pytest.mark.parametrize("expires", [0, 604_801])
def test_expiry_limits(expires: int) -> None:
    builder = V4Builder(algorithm=RSA, credential_id="sa@example.iam.gserviceaccount.com")
    with pytest.raises(ValueError, match="expires"):
        builder.prepare("b", "k", signed_at=0, expires=expires)
