"""The two metrics the alerts need beyond the others: signing errors per backend, and a refused policy file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.app.runtime import Runtime
from gateway.errors import Unavailable
from tests.calls import Caller
from tests.core.conftest import Clock

AWS_SOURCES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
               "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def _policy(data: Path, *, rule: str = "loopback") -> str:
    return f"""\
version: 1
audit: {{sinks: [{{kind: file, path: "{data.parent / 'audit.jsonl'}"}}]}}
datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: {rule}, anonymous: true, networks: [127.0.0.0/8]}}]
  s3-no-credentials:
    backend: {{kind: s3, bucket: acme-raw, region: us-west-2}}
    rules: [{{name: {rule}, anonymous: true, networks: [127.0.0.0/8]}}]
  gcs-no-key:
    backend: {{kind: gcs, bucket: acme-med, signer: hmac, hmac_access_id_env: GW_UNSET_ID,
              hmac_secret_env: GW_UNSET_SECRET}}
    rules: [{{name: {rule}, anonymous: true, networks: [127.0.0.0/8]}}]
"""


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_runtime: Callable[..., Runtime],
            clock: Clock) -> tuple[Runtime, Path, CollectorRegistry]:
    # No credential source boto3 could find on this machine: S3 signing fails the way it does in a
    # pod whose IRSA role is missing.
    for name in AWS_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(b"a")
    path = tmp_path / "policy.yaml"
    path.write_text(_policy(data))
    registry = CollectorRegistry()
    return make_runtime(path, clock=clock, registry=registry, environ={}), path, registry


def _errors(registry: CollectorRegistry, backend: str) -> float:
    return registry.get_sample_value("gateway_sign_errors_total", {"backend": backend}) or 0.0


def _signed(registry: CollectorRegistry, backend: str) -> float:
    return registry.get_sample_value("gateway_sign_seconds_count", {"backend": backend}) or 0.0


def test_signing_errors_are_counted_per_backend(runtime: tuple[Runtime, Path, CollectorRegistry]) -> None:
    rt, _, registry = runtime
    caller = Caller(rt)
    for dataset in ("s3-no-credentials", "gcs-no-key"):
        with pytest.raises(Unavailable):
            caller.redirect("a.png", dataset)
    with pytest.raises(Unavailable):
        caller.batch(["a.png", "b.png"], "gcs-no-key")
    caller.redirect("a.png", "local")
    rt.metrics.tally.flush()
    # One per failed signing call (a batch is one call), by backend kind; a success is not an error.
    assert (_errors(registry, "s3"), _errors(registry, "gcs"), _errors(registry, "local")) == (1, 2, 0)
    assert (_signed(registry, "s3"), _signed(registry, "gcs"), _signed(registry, "local")) == (0, 0, 1)


def test_a_refused_policy_file_shows_until_a_good_one_is_back(
        runtime: tuple[Runtime, Path, CollectorRegistry]) -> None:
    rt, path, registry = runtime
    assert rt.reloader is not None

    def failing() -> float | None:
        return registry.get_sample_value("gateway_policy_reload_failing")

    good = path.read_text()
    assert failing() == 0
    path.write_text("version: 1\ndatasets: {broken: {backend: {kind: nowhere}}}\n")
    rt.reloader.check_once()
    assert failing() == 1
    rt.reloader.check_once()  # the same bad file, polled again: still refused, still shown
    assert failing() == 1
    path.write_text(good)  # the file in force comes back: nothing to load, nothing refused
    rt.reloader.check_once()
    assert failing() == 0
    path.write_text("version: [1\n")
    rt.reloader.check_once()
    assert failing() == 1
    path.write_text(good.replace("loopback", "fixed"))  # a new, valid file
    assert rt.reloader.check_once() is True
    assert failing() == 0
    assert registry.get_sample_value("gateway_policy_reloads_total", {"result": "error"}) == 2
