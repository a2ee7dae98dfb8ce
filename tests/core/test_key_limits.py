"""The 1024-byte key limit is the storage's, for the whole stored key: the dataset's prefix counts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.app.runtime import Runtime
from gateway.errors import InvalidKey
from gateway.service.delivery import ReadRequest
from tests.calls import Caller


def CALLER(runtime: Runtime) -> Caller:  # noqa: N802 - reads like the constant it replaced
    return Caller(runtime, client_ip="10.1.2.3")
POLICY = """
version: 1
audit: {sinks: [{kind: file, path: "%s"}]}
datasets:
  tenant:
    backend: {kind: s3, bucket: acme-raw, prefix: tenant-a/, region: us-west-2, endpoint_url: "http://127.0.0.1:9/"}
    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]
  streamed:
    backend: {kind: s3, bucket: acme-raw, prefix: tenant-a/, region: us-west-2, endpoint_url: "http://127.0.0.1:9/"}
    delivery: proxy
    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]
"""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_runtime: Callable[..., Runtime],
            write_policy: Callable[..., Path]) -> Runtime:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return make_runtime(write_policy(POLICY % (tmp_path / "audit.jsonl")))


def test_the_prefix_counts_toward_the_limit_on_every_path(runtime: Runtime) -> None:
    fits = "k" * (1024 - len("tenant-a/"))
    url = CALLER(runtime).redirect(fits, "tenant")
    assert "/tenant-a/" + fits + "?" in url.url
    with pytest.raises(InvalidKey, match="1024-byte limit"):
        CALLER(runtime).redirect(fits + "k", "tenant")
    results = CALLER(runtime).batch([fits, fits + "k"], "tenant")
    assert results[0].url is not None
    assert results[1].error == "invalid_key" and "1024-byte limit" in (results[1].detail or "")


def test_the_prefix_counts_on_the_proxy_path_too(runtime: Runtime, tmp_path: Path) -> None:
    """A streamed read of a key that cannot exist is the client's 400, before any upstream request
    (the storage at 127.0.0.1:9 would make it a 503), and audited as such."""
    fits = "k" * (1024 - len("tenant-a/"))
    with pytest.raises(InvalidKey, match="1024-byte limit"):
        asyncio.run(CALLER(runtime).call("proxy", lambda ctx: runtime.use.proxy.read(ctx, "streamed", fits + "k",
                                                                                    ReadRequest()), 200))
    runtime.audit.close()
    last = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])
    assert (last["action"], last["decision"], last["reason"], last["status"]) == ("proxy", "deny", "invalid_key", 400)
