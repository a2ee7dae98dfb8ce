"""``gateway urls --list`` goes through the dataset's backend (the composition root builds it: the CLI
holds no storage client), page by page, and works on the embedded default as ``gateway serve`` runs
it; the URLs it writes open on a gateway serving that same policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client
from tests.support import RunningGateway


def run_urls(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "gateway", "urls", *args], capture_output=True, text=True,
                          timeout=120, env={**environ, **(env or {})}, check=False, stdin=subprocess.DEVNULL)


def test_the_embedded_default_lists_its_folder(tmp_path: Path, gateway_server: Callable[..., RunningGateway]) -> None:
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    (data / "img" / "a b.png").write_bytes(b"png bytes")
    (data / "scan.pcd").write_bytes(b"VERSION .7\n")
    (data / "bad\\name.png").write_bytes(b"a name the gateway refuses")
    gw = gateway_server(local_dir=data)  # no policy file: the embedded default
    listed = run_urls("local", "--list", "--format", "labelbox", "--base-url", gw.url,
                      env={"GATEWAY_LOCAL_DIR": str(data)})
    assert listed.returncode == 1  # the backslash name is reported, the others written
    assert "bad\\\\name.png" in listed.stderr and "backslash" in listed.stderr
    rows = json.loads(listed.stdout)
    assert [row["global_key"] for row in rows] == ["img/a b.png", "scan.pcd"]
    with httpx.Client() as client:
        for row in rows:
            answer = client.get(row["row_data"], follow_redirects=True)
            assert answer.status_code == 200
            assert answer.content == (data / row["global_key"]).read_bytes()
    # Without --base-url, the address `gateway serve` would listen on (GATEWAY_HOST, GATEWAY_PORT).
    plain = run_urls("local", "--list", "--local-dir", str(data), "--prefix", "img/",
                     env={"GATEWAY_PORT": "9123"})
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ["http://127.0.0.1:9123/v1/datasets/local/objects/img/a%20b.png"]


def test_a_listing_walks_every_page_of_a_bucket(tmp_path: Path) -> None:
    with running_s3rver() as endpoint:
        bucket = f"b{uuid.uuid4().hex[:12]}"
        client = s3_client(endpoint)
        client.create_bucket(Bucket=bucket)
        keys = [f"frames/{i:05d}.jpg" for i in range(2001)]  # three pages: 1000, 1000 and 1
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=f"ds/{key}", Body=b"j"), keys))
        client.put_object(Bucket=bucket, Key="elsewhere.jpg", Body=b"not the dataset's")
        policy = tmp_path / "policy.yaml"
        policy.write_text(
            "version: 1\ndatasets:\n  drive:\n"
            f"    backend: {{kind: s3, bucket: {bucket}, prefix: ds/, endpoint_url: '{endpoint}', "
            "addressing_style: path}\n    rules: [{name: lo, anonymous: true, networks: [127.0.0.0/8]}]\n")
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "AWS_EC2_METADATA_DISABLED": "true"}
        listed = run_urls("drive", "--config", str(policy), "--base-url", "https://gw.example", "--list",
                          "--format", "scale", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = listed.stdout.splitlines()
        assert rows[0] == "attachment_url" and len(rows) == 1 + len(keys)
        assert sorted(rows[1:]) == [f"https://gw.example/v1/datasets/drive/objects/{key}" for key in keys]
        # The storage refusing the gateway's credentials is said in the gateway's words, without its host.
        refused = run_urls("drive", "--config", str(policy), "--base-url", "https://gw.example", "--list",
                           env={**env, "AWS_SECRET_ACCESS_KEY": "wrong"})
        assert refused.returncode == 1 and refused.stdout == ""
        assert "refused to list" in refused.stderr and "127.0.0.1" not in refused.stderr


def test_a_config_without_a_base_url_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\ndatasets:\n  ds:\n    backend: {{kind: local, path: '{tmp_path / 'd'}'}}\n")
    result = run_urls("ds", "--config", str(policy))
    assert result.returncode == 1 and "--base-url" in result.stderr
    unknown = run_urls("nope", "--config", str(policy), "--base-url", "https://gw.example")
    assert unknown.returncode == 1 and "no dataset 'nope'" in unknown.stderr
