"""GCS round trip: the gateway's 302 to a V4 URL, served by gcp-storage-emulator.

The emulator checks no signatures (the conformance vectors in tests/backends do that); this proves the
URL the gateway builds for an ``endpoint`` reaches the right object, byte for byte.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support import FIXTURES, RunningGateway, free_port, wait_for_port

KEYS = ["scans/a.png", "scans/with space+plus~.pcd", "scans/caf\u00e9.bin"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_gateway_redirects_to_gcs_urls_that_fetch_the_exact_bytes(
    tmp_path: Path, emulator: str, gateway_server: Callable[..., RunningGateway]
) -> None:
    bucket = f"b{uuid.uuid4().hex[:10]}"
    with httpx.Client() as client:
        assert client.post(f"{emulator}/storage/v1/b", json={"name": bucket}).status_code == 200
        for key in KEYS:
            upload = client.put(f"{emulator}/{bucket}/med/{quote(key)}", content=f"gcs {key}".encode())
            assert upload.status_code == 200, upload.text
    policy = tmp_path / "policy.yaml"
    account = FIXTURES / "gcs-v4" / "test_service_account.not-a-test.json"
    policy.write_text(
        "version: 1\ndatasets:\n  med:\n"
        f"    backend: {{kind: gcs, bucket: {bucket}, prefix: med/, signer: key, credentials_file: '{account}', "
        f"endpoint: '{emulator}'}}\n"
        "    rules: [{name: lo, anonymous: true, networks: [127.0.0.0/8]}]\n"
    )
    gw = gateway_server(config=policy)
    with httpx.Client() as client:
        for key in KEYS:
            redirect = client.get(f"{gw.url}/v1/datasets/med/objects/{quote(key)}")
            assert redirect.status_code == 302
            location = redirect.headers["location"]
            assert location.startswith(f"{emulator}/{bucket}/med/")
            assert "X-Goog-Algorithm=GOOG4-RSA-SHA256" in location and "X-Goog-Signature=" in location
            fetched = client.get(location)
            assert fetched.status_code == 200, (key, fetched.text[:200])
            assert fetched.content == f"gcs {key}".encode()
        ready = client.get(f"{gw.url}/readyz").json()
        assert ready["backends"]["med"]["ok"] is True
