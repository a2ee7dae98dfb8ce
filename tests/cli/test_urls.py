"""``gateway urls`` and the S3 round trip through the gateway: keys → gateway URLs → 302 → bytes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client
from tests.support import RunningGateway

KEYS = ["images/a.png", "images/with space.png", "images/caf\u00e9+~.pcd", "other/x.bin"]


def run_urls(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "urls", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env=env, check=False)


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with running_s3rver() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3: str) -> str:
    name = f"b{uuid.uuid4().hex[:12]}"
    client = s3_client(s3)
    client.create_bucket(Bucket=name)
    for key in KEYS:
        client.put_object(Bucket=name, Key=f"datasets/drive/{key}", Body=f"bytes of {key}".encode())
    client.put_object(Bucket=name, Key="elsewhere/secret.bin", Body=b"not in the dataset")
    return name


def s3_policy(path: Path, endpoint: str, bucket: str) -> Path:
    path.write_text(
        "version: 1\ndatasets:\n  drive:\n"
        f"    backend: {{kind: s3, bucket: {bucket}, prefix: datasets/drive/, region: us-east-1, "
        f"endpoint_url: '{endpoint}', addressing_style: path}}\n"
        "    rules: [{name: lo, anonymous: true, networks: [127.0.0.0/8]}]\n"
    )
    return path


def aws_env(monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_EC2_METADATA_DISABLED="true")
    return env


def test_listed_keys_become_urls_that_redirect_to_the_exact_bytes(
    tmp_path: Path, s3: str, bucket: str, gateway_server: Callable[..., RunningGateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = aws_env()
    for name, value in env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    policy = s3_policy(tmp_path / "policy.yaml", s3, bucket)
    gw = gateway_server(config=policy)
    listed = run_urls("drive", "--config", str(policy), "--base-url", gw.url, "--list", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(row["key"] for row in rows) == sorted(KEYS)  # the prefix is stripped, nothing outside it
    with httpx.Client() as client:
        for row in rows:
            redirect = client.get(row["url"])
            assert redirect.status_code == 302, row
            location = redirect.headers["location"]
            assert location.startswith(f"{s3}/{bucket}/datasets/drive/")
            fetched = client.get(location)
            assert fetched.status_code == 200, (row, fetched.text[:200])
            assert fetched.content == f"bytes of {row['key']}".encode()
            # s3rver checks the signature: a tampered URL is refused.
            tampered = location.replace("X-Amz-Signature=", "X-Amz-Signature=0")
            assert client.get(tampered).status_code == 403


def test_keys_from_stdin_in_each_format(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\ndatasets:\n  ds:\n    backend: {{kind: local, path: '{tmp_path / 'd'}'}}\n"
                      "    rules: [{name: r, anonymous: true, networks: [127.0.0.0/8]}]\n")
    base = ["ds", "--config", str(policy), "--base-url", "https://gw.example"]
    lines = run_urls(*base, stdin="a b.png\nx/caf\u00e9+.pcd\n")
    assert lines.returncode == 0
    assert lines.stdout.splitlines() == ["https://gw.example/v1/datasets/ds/objects/a%20b.png",
                                         "https://gw.example/v1/datasets/ds/objects/x/caf%C3%A9%2B.pcd"]
    table = run_urls(*base, "--format", "csv", stdin="a.png\n")
    assert table.stdout.splitlines() == ["key,url", "a.png,https://gw.example/v1/datasets/ds/objects/a.png"]
    bad = run_urls(*base, stdin="good.png\n../escape\n")
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == ["https://gw.example/v1/datasets/ds/objects/good.png"]
    assert "../escape" in bad.stderr
    unknown = run_urls("nope", "--config", str(policy), "--base-url", "https://gw.example")
    assert unknown.returncode == 1 and "no dataset 'nope'" in unknown.stderr
    relative = run_urls("ds", "--config", str(policy), "--base-url", "gw.example")
    assert relative.returncode == 1 and "--base-url" in relative.stderr
