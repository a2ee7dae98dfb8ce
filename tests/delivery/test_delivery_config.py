"""The delivery of each dataset as configured, checked and shown: schema errors, the warnings of
``check-config`` and startup, ``explain`` and ``/readyz``."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.config import parse_policy
from gateway.errors import ConfigError
from tests.support import RunningGateway

ROLE = "arn:aws:iam::111122223333:role/gateway-bound-urls"
POLICY = f"""version: 1
datasets:
  open-s3:
    backend: {{kind: s3, bucket: acme-raw, endpoint_url: "http://127.0.0.1:9/"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
  bound-s3:
    backend: {{kind: s3, bucket: acme-raw, network_binding: {{role_arn: "{ROLE}", source_ips: [203.0.113.0/28]}}}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
  proxied:
    delivery: proxy
    backend: {{kind: s3, bucket: acme-raw, endpoint_url: "http://127.0.0.1:9/"}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8, 127.0.0.0/8]}}]
  signed-in:
    backend: {{kind: s3, bucket: acme-raw, endpoint_url: "http://127.0.0.1:9/"}}
    rules: [{{name: anyone-with-a-key, vendors: [aq]}}]
auth:
  vendors: [{{name: aq, keys: [{{id: aq-1, secret_env: AQ_SECRET}}]}}]
"""
LEAK_WARNING = "the network is checked at the gateway only; a leaked URL works from anywhere until it expires"


def test_warnings_name_only_unbound_redirect_datasets_with_anonymous_network_rules() -> None:
    warnings = parse_policy(POLICY).warnings()
    assert len(warnings) == 1 and warnings[0].startswith("datasets.open-s3: ") and LEAK_WARNING in warnings[0]
    gcs = parse_policy("version: 1\ndatasets:\n  med:\n    backend: {kind: gcs, bucket: acme-med}\n"
                       "    rules: [{name: lab, vendors: [x]}]\nauth: {oidc: [{name: x, issuer: 'https://i.example', "
                       "audience: a}]}\n").warnings()
    assert gcs == ["datasets.med: redirect delivery on GCS is not network-bound: V4 URLs cannot carry a network; use "
                   "bucket IP filtering on the bucket, or delivery: proxy"]


@pytest.mark.parametrize(("dataset", "message"), [
    ("{delivery: proxy, backend: {kind: local, path: /srv}}", "the local backend always serves its own bytes"),
    (f"{{delivery: proxy, backend: {{kind: s3, bucket: abc, network_binding: {{role_arn: '{ROLE}', "
     "vpc_endpoints: [vpce-11112222]}}}", "network_binding applies to delivery: redirect"),
    ("{delivery: stream, backend: {kind: s3, bucket: abc}}", "delivery"),
])
def test_delivery_that_cannot_work_is_refused(dataset: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(f"version: 1\ndatasets:\n  d: {dataset}\n")
    assert any(message in p for p in caught.value.problems), caught.value.problems


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_check_config_warns_but_passes_and_explain_shows_delivery(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    checked = _cli("check-config", str(policy))
    assert checked.returncode == 0, checked.stderr
    assert f"warning: datasets.open-s3: rules office admit anonymous callers by network, but delivery is redirect " \
           f"without network_binding: {LEAK_WARNING}" in checked.stdout
    lines = {name: _cli("explain", "--config", str(policy), "--dataset", name, "--key", "a.jpg", "--ip", "10.1.2.3")
             for name in ("open-s3", "bound-s3", "proxied")}
    assert "delivery: redirect (a presigned URL; any network rule is checked at the gateway only)" in lines[
        "open-s3"].stdout
    assert "delivery: redirect, bound to the network by an STS session policy" in lines["bound-s3"].stdout
    assert "delivery: proxy (the gateway streams the object" in lines["proxied"].stdout


def test_startup_warns_and_readyz_shows_each_delivery(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                      gateway_server: Callable[..., RunningGateway],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AQ_SECRET", "s" * 32)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        gw = gateway_server(config=policy)
    assert any(LEAK_WARNING in r.getMessage() and "open-s3" in r.getMessage() for r in caplog.records)
    ready = httpx.get(f"{gw.url}/readyz", timeout=10).json()
    assert ready["datasets"] == {
        "open-s3": {"delivery": "redirect", "network_binding": False},
        "bound-s3": {"delivery": "redirect", "network_binding": True},
        "proxied": {"delivery": "proxy", "network_binding": False},
        "signed-in": {"delivery": "redirect", "network_binding": False},
    }
    assert ROLE not in httpx.get(f"{gw.url}/readyz", timeout=10).text


def test_explain_names_auto_delivery_and_azure_binding(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("""version: 1
datasets:
  lidar:
    delivery: auto
    backend: {kind: s3, bucket: acme-raw}
    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]
  blobs:
    backend: {kind: azure, account: acmedata, container: raw, network_binding: {source_ips: [203.0.113.0/28]}}
    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]
  files:
    delivery: auto
    backend: {kind: local, path: /srv}
    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]
""")
    lines = {name: _cli("explain", "--config", str(policy), "--dataset", name, "--key", "a.jpg", "--ip", "10.1.2.3")
             for name in ("lidar", "blobs", "files")}
    assert ("delivery: auto (streamed to a page that reads the answer, Sec-Fetch-Mode cors; otherwise redirect "
            "(a presigned URL; any network rule is checked at the gateway only))") in lines["lidar"].stdout
    assert "delivery: redirect, bound to the network by the sip of each SAS" in lines["blobs"].stdout
    assert "delivery: auto, local (" in lines["files"].stdout
