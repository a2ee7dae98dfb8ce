"""Proxy delivery against real servers: s3rver (checks SigV4 signatures) with hostile keys, and a
gateway on a real socket whose dataset ``vision`` is ``delivery: proxy``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.e2e.helpers import png_2x2
from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client
from tests.support import RunningGateway, free_port, serve_app

BUCKET = "acme-raw-zq7"  # a name that appears nowhere else, so a scan for it finds only leaks
PREFIX = "vault/"
BIG = os.urandom(300_000)
OBJECTS: dict[str, bytes] = {
    "images/frame 0001.jpg": b"\xff\xd8\xff\xe0 jpeg bytes",
    "images/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png": "unicode \u00e9".encode(),
    "images/a+b~c.bin": bytes(range(256)),
    "images/100%/x=1&y=2.txt": b"percent and query characters",
    "pointclouds/scan.pcd": b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nPOINTS 1\nDATA ascii\n1 2 3\n",
    "big.bin": BIG,
    "tiny.png": png_2x2(),
    "empty.bin": b"",
}
TYPES = {"tiny.png": "image/png", "pointclouds/scan.pcd": "application/x-pcd"}


@dataclass
class ProxySetup:
    gateway: RunningGateway
    endpoint: str  # s3rver's http://127.0.0.1:PORT
    origin: str  # a CORS origin the policy allows
    audit: Path  # the audit file sink

    @property
    def port(self) -> str:
        return self.endpoint.rsplit(":", 1)[1]


@pytest.fixture(scope="session")
def s3_store() -> Iterator[str]:
    with running_s3rver() as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        for key, body in OBJECTS.items():
            kind = TYPES.get(key, "application/octet-stream")
            client.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=body, ContentType=kind)
        yield endpoint


def proxy_policy(path: Path, endpoint: str, *, origin: str, extra: str = "") -> Path:
    path.write_text(f"""version: 1
cors: {{allow_origins: ["{origin}"]}}
datasets:
  vision:
    delivery: proxy
    backend: {{kind: s3, bucket: {BUCKET}, prefix: {PREFIX}, endpoint_url: "{endpoint}", addressing_style: path}}
    rules:
      - {{name: lab, anonymous: true, networks: [127.0.0.0/8]}}
    allow_keys: ["images/**", "pointclouds/**", "big.bin", "tiny.png", "empty.bin", "missing/**"]
  typed:
    delivery: proxy
    backend: {{kind: s3, bucket: {BUCKET}, prefix: {PREFIX}, endpoint_url: "{endpoint}", addressing_style: path,
              response_content_type: application/x-test, response_content_disposition: attachment}}
    rules:
      - {{name: lab, anonymous: true, networks: [127.0.0.0/8]}}
  elsewhere:
    delivery: proxy
    backend: {{kind: s3, bucket: {BUCKET}, prefix: {PREFIX}, endpoint_url: "{endpoint}", addressing_style: path}}
    rules:
      - {{name: far, anonymous: true, networks: [10.99.0.0/16]}}
{extra}""")
    return path


@pytest.fixture(scope="session")
def s3_env() -> Iterator[None]:
    """s3rver's account as the gateway's ambient AWS credentials (boto3's chain reads them)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def proxy(s3_store: str, s3_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxySetup]:
    origin = "http://app.example.test:3000"
    root = tmp_path_factory.mktemp("proxy")
    policy = proxy_policy(root / "policy.yaml", s3_store, origin=origin)
    port = free_port()
    audit = root / "audit.jsonl"
    sink = f"version: 1\naudit: {{sinks: [{{kind: file, path: '{audit}'}}]}}\n"
    policy.write_text(policy.read_text().replace("version: 1\n", sink))
    app = create_app(Settings(port=port, config=policy, signing_key="p" * 32))
    with serve_app(app, port) as gateway:
        yield ProxySetup(gateway, s3_store, origin, audit)
