"""A vendor's batch over a real socket: its version 2 signature covers the body, so a body changed on
the way (another dataset, other keys) is refused, and refused before it is used."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.vendor_signing import sign_request
from tests.support import RunningGateway, audit_records

SECRET = "vendor-secret-" + "x" * 32
POLICY = """
version: 1
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
auth:
  vendors:
    - name: aquarium
      keys: [{{id: aq-2026, secret_env: AQ_SECRET}}]
datasets:
  vendor-data:
    backend: {{kind: local, path: "{root}"}}
    rules: [{{name: vendor-servers, vendors: [aquarium]}}]
  crown-jewels:
    backend: {{kind: local, path: "{root}"}}
    rules: [{{name: vendor-servers-too, vendors: [aquarium]}}]
"""


@pytest.fixture
def gateway(tmp_path: Path, gateway_server: Callable[..., RunningGateway]) -> tuple[RunningGateway, Path]:
    root = tmp_path / "objects"
    root.mkdir()
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY.format(root=root, audit=audit))
    return gateway_server(config=config, environ={"AQ_SECRET": SECRET}), audit


def _post(gw: RunningGateway, signed_body: bytes, sent_body: bytes, rid: str, ago: int = 0) -> httpx.Response:
    headers = sign_request("POST", f"{gw.url}/v1/sign", key_id="aq-2026", secret=SECRET, body=signed_body,
                           timestamp=int(time.time()) - ago)
    return httpx.post(f"{gw.url}/v1/sign", content=sent_body, timeout=10,
                      headers={**headers, "Content-Type": "application/json", "X-Request-ID": rid})


def test_a_batch_body_is_held_to_the_vendors_signature(gateway: tuple[RunningGateway, Path]) -> None:
    gw, audit = gateway
    body = json.dumps({"dataset": "vendor-data", "keys": ["a.png"]}).encode()
    ok = _post(gw, body, body, "good")
    assert ok.status_code == 200 and ok.json()["results"][0]["key"] == "a.png"
    # Intercepted and rewritten on the way: the signature still verifies (it covers the digest
    # header), the body does not match that digest.
    forged = json.dumps({"dataset": "crown-jewels", "keys": ["secrets.png"]}).encode()
    refused = _post(gw, body, forged, "forged", ago=5)  # another capture: not a replay of the first
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "unauthenticated" and "crown-jewels" not in refused.text
    records = audit_records(audit, "good", "forged")
    assert (records["forged"]["decision"], records["forged"]["reason"], records["forged"]["status"]) == (
        "deny", "unauthenticated", 401)
    assert records["forged"]["dataset"] is None  # the forged body was never used
    gw.app.runtime.metrics.tally.flush()
    failures = gw.app.runtime.metrics.registry.get_sample_value(
        "gateway_auth_failures_total", {"method": "gateway-hmac", "reason": "body_mismatch"})
    assert failures == 1
