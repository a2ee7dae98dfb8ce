"""``gateway doctor`` against gateways on real sockets, configured right and wrong: S3 (s3rver, which
answers CORS as S3 does) with bucket CORS that allows ``Origin: null`` and with CORS that names only
the vendor, a proxied dataset, the gateway's own CORS missing the vendor, a vendor key, a refused
caller; each failure comes with its fix, and no signed URL or secret is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client
from tests.support import RunningGateway

VENDOR = "https://app.vendor.example"
SECRET = "doctor-test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with running_s3rver() as endpoint:
        yield endpoint


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bucket_with(s3: str, cors_origins: list[str]) -> str:
    name = f"b{uuid.uuid4().hex[:12]}"
    client = s3_client(s3)
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="ds/img/a.png", Body=b"\x89PNG doctor bytes", ContentType="image/png")
    client.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": cors_origins, "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"]}]})
    return name


def policy(path: Path, s3: str, bucket: str, *, delivery: str = "redirect", cors: list[str] | None = None,
           rule: str = "{name: lo, anonymous: true, networks: [127.0.0.0/8]}") -> Path:
    path.write_text(
        f"version: 1\ncors: {{allow_origins: {json.dumps(cors if cors is not None else [VENDOR])}}}\n"
        "auth: {vendors: [{name: acme, keys: [{id: acme-1, secret_env: DOCTOR_VENDOR_SECRET}]}]}\n"
        "datasets:\n  ds:\n"
        f"    delivery: {delivery}\n"
        f"    backend: {{kind: s3, bucket: {bucket}, prefix: ds/, endpoint_url: '{s3}', addressing_style: path}}\n"
        f"    rules: [{rule}]\n")
    return path


def doctor(gw: RunningGateway, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run([sys.executable, "-m", "gateway", "doctor", "--json", "--vendor-origin", VENDOR, *args,
                           f"{gw.url}/v1/datasets/ds/objects/img/a.png"], capture_output=True, text=True, timeout=60,
                          env={**environ, **(env or {})}, check=False)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert "X-Amz-Signature" not in done.stdout and SECRET not in done.stdout  # never a signed URL, never a secret
    return done.returncode, {check["name"]: check for check in report["checks"]}


@pytest.fixture
def gateway(gateway_server: Callable[..., RunningGateway], aws: None) -> Callable[[Path], RunningGateway]:
    def start(config: Path) -> RunningGateway:
        return gateway_server(config=config, environ={"DOCTOR_VENDOR_SECRET": SECRET})
    return start


def test_a_bucket_that_allows_origin_null_passes_but_head(tmp_path: Path, s3: str,
                                                          gateway: Callable[[Path], RunningGateway]) -> None:
    gw = gateway(policy(tmp_path / "p.yaml", s3, bucket_with(s3, ["*"])))
    code, checks = doctor(gw)
    assert code == 1
    assert {name: c["status"] for name, c in checks.items()} == {
        "preflight": "skip", "get": "pass", "cors": "pass", "redirect-cors": "pass", "range": "pass",
        "head": "fail", "expiry": "pass"}
    assert "127.0.0.1" in checks["get"]["detail"]  # the storage's origin, never its signed URL
    assert "delivery: proxy" in checks["head"]["fix"]  # S3 refuses HEAD on a URL presigned for GET


def test_a_bucket_that_names_only_the_vendor_fails_after_the_redirect(
        tmp_path: Path, s3: str, gateway: Callable[[Path], RunningGateway]) -> None:
    gw = gateway(policy(tmp_path / "p.yaml", s3, bucket_with(s3, [VENDOR])))
    code, checks = doctor(gw)
    assert code == 1 and checks["cors"]["status"] == "pass"
    failed = checks["redirect-cors"]
    assert failed["status"] == "fail" and "Origin: null" in failed["detail"]
    assert "allow Origin null" in failed["fix"] and "delivery: proxy/auto" in failed["fix"]


def test_the_gateway_without_the_vendors_origin_fails_cors(tmp_path: Path, s3: str,
                                                          gateway: Callable[[Path], RunningGateway]) -> None:
    gw = gateway(policy(tmp_path / "p.yaml", s3, bucket_with(s3, ["*"]), cors=["https://someone.else"]))
    code, checks = doctor(gw)
    assert code == 1 and checks["get"]["status"] == "pass"
    assert checks["cors"]["status"] == "fail"
    assert checks["cors"]["fix"].startswith(f"add {VENDOR} to cors.allow_origins")


def test_a_proxied_dataset_passes_every_check(tmp_path: Path, s3: str,
                                              gateway: Callable[[Path], RunningGateway]) -> None:
    gw = gateway(policy(tmp_path / "p.yaml", s3, bucket_with(s3, [VENDOR]), delivery="proxy"))
    code, checks = doctor(gw)
    assert code == 0, checks
    assert checks["redirect-cors"]["status"] == "skip" and checks["head"]["status"] == "pass"
    assert checks["range"]["detail"] == "206, bytes 0-1/17"


def test_a_vendor_key_is_preflighted_and_signed_per_request(tmp_path: Path, s3: str,
                                                            gateway: Callable[[Path], RunningGateway]) -> None:
    gw = gateway(policy(tmp_path / "p.yaml", s3, bucket_with(s3, ["*"]), delivery="proxy",
                        rule="{name: vendor, vendors: [acme]}"))
    code, checks = doctor(gw, "--key-id", "acme-1", "--secret-env", "DOCTOR_SECRET",
                          env={"DOCTOR_SECRET": SECRET})
    assert code == 0, checks
    assert checks["preflight"]["status"] == "pass" and "x-gateway-signature" in checks["preflight"]["detail"]
    # Without the credential the same gateway refuses, and says what to give.
    code, checks = doctor(gw)
    assert code == 1 and checks["get"]["status"] == "fail" and "--key-id" in checks["get"]["fix"]
    assert {checks[name]["status"] for name in ("range", "head", "expiry")} == {"skip"}
    # A wrong secret is a refused credential, not a pass.
    code, checks = doctor(gw, "--key-id", "acme-1", "--secret-env", "DOCTOR_SECRET", env={"DOCTOR_SECRET": "wrong"})
    assert code == 1 and checks["get"]["detail"] == "GET answered 401"


def test_bad_input_exits_2(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "doctor", *args], capture_output=True, text=True,
                              timeout=30, check=False, env={k: v for k, v in os.environ.items() if k != "EMPTY_VAR"})

    assert run("--vendor-origin", "https://app.example/path", "http://127.0.0.1:1/x").returncode == 2
    assert run("--vendor-origin", VENDOR, "not a url").returncode == 2
    assert run("--vendor-origin", VENDOR, "--bearer-env", "EMPTY_VAR", "http://127.0.0.1:1/x").returncode == 2
    assert run("--vendor-origin", VENDOR, "--key-id", "k", "http://127.0.0.1:1/x").returncode == 2
    unreachable = run("--vendor-origin", VENDOR, "--json", "http://127.0.0.1:1/v1/datasets/d/objects/k")
    assert unreachable.returncode == 1
    assert json.loads(unreachable.stdout)["checks"][-1]["name"] == "reach"


def test_a_local_dataset_keeps_the_vendors_origin_through_its_same_origin_redirect(
        tmp_path: Path, gateway_server: Callable[..., RunningGateway]) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"\x89PNG local")
    gw = gateway_server(local_dir=tmp_path, cors_origins=[VENDOR])  # the embedded default
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run([sys.executable, "-m", "gateway", "doctor", "--vendor-origin", VENDOR,
                           f"{gw.url}/v1/datasets/local/objects/img/a.png"], capture_output=True, text=True,
                          timeout=60, env=environ, check=False)
    assert done.returncode == 0, done.stdout
    # The redirect stays on the gateway's origin, so the browser keeps sending the vendor's Origin.
    assert f"allows Origin: {VENDOR}" in done.stdout and "every check passed" in done.stdout
    assert "sig=" not in done.stdout
