"""``gateway sign-request`` signs a body: its headers verify at the real authenticator, and the body
it signed is the only one ``check_body`` lets through. Run as a vendor runs it, in a subprocess."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import AuthRequest
from gateway.auth.replay import MemoryReplayStore
from gateway.auth.vendor import VendorAuthenticator, check_body
from gateway.config import Vendor
from gateway.errors import Unauthenticated

pytestmark = pytest.mark.anyio
SECRET = "cli-test-secret-0123456789abcdef"
URL = "https://gw.example/v1/sign"
# Not UTF-8, and ending in a newline: the file's bytes are signed exactly as they are.
RAW = b'{"dataset":"team","keys":["images/\xff.png"]}\n'


def sign_request(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "sign-request", "--key-id", "aq-1", "--secret-env", "VENDOR_SECRET", *args],
        input=stdin, capture_output=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "VENDOR_SECRET": SECRET},
    )


def headers_of(result: subprocess.CompletedProcess[bytes]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return {name.lower(): value for name, value in
            (line.split(": ", 1) for line in result.stdout.decode().splitlines())}


async def verify(method: str, headers: dict[str, str], body: bytes) -> None:
    """Authenticate as the gateway does (real clock, real secret), then check the body."""
    vendors = [Vendor.model_validate({"name": "aquarium", "keys": [{"id": "aq-1", "secret_env": "S"}]})]
    auth = VendorAuthenticator(vendors, replay=MemoryReplayStore(), environ={"S": SECRET})
    request = AuthRequest(method, "/v1/sign", "", headers, ipaddress.ip_address("203.0.113.9"))
    principal = await auth.authenticate(request)
    assert principal is not None and principal.key_id == "aq-1"
    check_body(headers, body)


async def test_data_is_signed_as_utf8_text() -> None:
    body = '{"dataset":"team","keys":["images/caf\u00e9.png"]}'
    headers = headers_of(sign_request("--data", body, "POST", URL))
    assert headers["x-gateway-signature-version"] == "2"
    await verify("POST", headers, body.encode("utf-8"))
    with pytest.raises(Unauthenticated) as caught:
        check_body(headers, body.encode("utf-8") + b"\n")
    assert caught.value.reason == "body_mismatch"


async def test_data_file_and_stdin_are_signed_byte_for_byte(tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(RAW)
    from_file = headers_of(sign_request("--data-file", str(tmp_path / "body.json"), "POST", URL))
    from_stdin = headers_of(sign_request("--data-file", "-", "POST", URL, stdin=RAW))
    assert from_file["x-gateway-content-sha256"] == from_stdin["x-gateway-content-sha256"]
    await verify("POST", from_file, RAW)
    await verify("POST", from_stdin, RAW)
    with pytest.raises(Unauthenticated):
        check_body(from_file, RAW.rstrip(b"\n"))  # the final newline is part of the body


async def test_no_data_signs_the_empty_body() -> None:
    headers = headers_of(sign_request("GET", URL))
    await verify("GET", headers, b"")


def test_bad_body_options_are_clear_errors(tmp_path: Path) -> None:
    missing = sign_request("--data-file", str(tmp_path / "nope.json"), "POST", URL)
    assert missing.returncode == 1
    assert b"--data-file: cannot read" in missing.stderr and b"Traceback" not in missing.stderr
    both = sign_request("--data", "{}", "--data-file", "-", "POST", URL)
    assert both.returncode == 2 and b"not allowed with argument" in both.stderr
