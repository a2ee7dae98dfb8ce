"""``delivery: auto``: a redirect for what a page cannot read (``<img>``, navigations, servers), the
object itself for what it can (CORS fetches and images), on S3 (s3rver) and on a local folder; and the
CORS of the answers a credentialed loader reads (``/v1/local`` included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.delivery.conftest import BIG, BUCKET, PREFIX
from tests.e2e.conftest import A_BIN, make_data_dir
from tests.e2e.helpers import assert_error
from tests.support import RunningGateway

ORIGIN = "https://app.vendor.example"


@pytest.fixture(scope="module")
def gw(s3_store: str, s3_env: None, tmp_path_factory: pytest.TempPathFactory,
       ) -> Iterator[RunningGateway]:
    from gateway.app import create_app
    from gateway.settings import Settings
    from tests.support import free_port, serve_app

    root = tmp_path_factory.mktemp("auto")
    data = make_data_dir(root)
    policy = root / "policy.yaml"
    policy.write_text(f"""version: 1
cors: {{allow_origins: ["{ORIGIN}"]}}
datasets:
  scans:
    delivery: auto
    backend: {{kind: s3, bucket: {BUCKET}, prefix: {PREFIX}, endpoint_url: "{s3_store}", addressing_style: path}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
  files:
    delivery: auto
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
  plain:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
  office:
    delivery: auto
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
""")
    port = free_port()
    with serve_app(create_app(Settings(port=port, config=policy, signing_key="a" * 32)), port) as running:
        yield running


def get(gw: RunningGateway, path: str, mode: str | None, **headers: str) -> httpx.Response:
    if mode is not None:
        headers["sec-fetch-mode"] = mode
    return httpx.get(gw.url + path, headers=headers, follow_redirects=False, timeout=10)


@pytest.mark.parametrize("mode", ["no-cors", "navigate", None])
def test_what_a_page_cannot_read_is_redirected(gw: RunningGateway, s3_store: str, mode: str | None) -> None:
    response = get(gw, "/v1/datasets/scans/objects/big.bin", mode)
    assert response.status_code == 302
    assert response.headers["location"].startswith(f"{s3_store}/{BUCKET}/{PREFIX}big.bin?")
    assert "Sec-Fetch-Mode" in response.headers["vary"]  # no cache hands this redirect to a CORS fetch
    local = get(gw, "/v1/datasets/files/objects/a.bin", mode)
    assert local.status_code == 302 and "/v1/local/files/a.bin?" in local.headers["location"]


@pytest.mark.parametrize("mode", ["cors", "same-origin"])
def test_what_a_page_can_read_is_streamed_without_a_storage_url(gw: RunningGateway, s3_store: str,
                                                                mode: str) -> None:
    response = get(gw, "/v1/datasets/scans/objects/big.bin", mode, origin=ORIGIN)
    assert response.status_code == 200 and response.content == BIG
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "Sec-Fetch-Mode" in response.headers["vary"]
    assert s3_store.split("//")[1] not in response.text and BUCKET not in str(response.headers)
    ranged = get(gw, "/v1/datasets/scans/objects/big.bin", mode, origin=ORIGIN, range="bytes=10-19")
    assert ranged.status_code == 206 and ranged.content == BIG[10:20]
    local = get(gw, "/v1/datasets/files/objects/a.bin", mode, origin=ORIGIN, range="bytes=0-9")
    assert local.status_code == 206 and local.content == A_BIN[:10] and "Sec-Fetch-Mode" in local.headers["vary"]


def test_strangers_hear_the_same_whatever_the_fetch_mode(gw: RunningGateway) -> None:
    bodies = []
    for path in ("/v1/datasets/office/objects/a.bin", "/v1/datasets/nope/objects/a.bin"):
        for mode in ("cors", "no-cors", None):
            bodies.append(assert_error(get(gw, path, mode), 401, "unauthenticated")["detail"])
    assert len(set(bodies)) == 1


def test_a_json_answer_stays_a_url(gw: RunningGateway) -> None:
    response = get(gw, "/v1/datasets/scans/objects/big.bin?format=json", "cors", origin=ORIGIN)
    assert response.status_code == 200 and set(response.json()) == {"url", "expires_at"}


def test_local_answers_let_credentialed_loaders_read_them(gw: RunningGateway) -> None:
    """fetch(url, {credentials: "include"}) follows the redirect to /v1/local: that answer must
    allow credentials for the page's origin, as the object route's does (it reads no cookie)."""
    location = get(gw, "/v1/datasets/plain/objects/a.bin", "cors", origin=ORIGIN).headers["location"]
    response = httpx.get(location, headers={"origin": ORIGIN}, timeout=10)
    assert response.status_code == 200 and response.content == A_BIN
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]
    other = httpx.get(location, headers={"origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in other.headers


def test_auto_is_a_delivery_check_config_accepts(tmp_path: Path, gateway_server: Callable[..., RunningGateway],
                                                 ) -> None:
    import subprocess
    import sys

    policy = tmp_path / "p.yaml"
    policy.write_text("""version: 1
datasets:
  d:
    delivery: auto
    backend: {kind: s3, bucket: abc, network_binding: {role_arn: "arn:aws:iam::123456789012:role/r",
                                                        source_ips: [10.0.0.0/8]}}
    rules: [{name: r, anonymous: true, networks: [10.0.0.0/8]}]
""")
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(policy)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr  # auto's redirects are bound; its streams read unbound
    policy.write_text(policy.read_text().replace("delivery: auto", "delivery: proxy"))
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(policy)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1 and "network_binding applies to delivery: redirect and auto" in result.stderr
