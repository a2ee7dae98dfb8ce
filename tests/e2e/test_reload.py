"""Hot reload through a live server: good edits apply within a second, bad edits never replace
the policy in force and show up in /readyz and in a metric until they are fixed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.conftest import make_data_dir
from tests.e2e.helpers import assert_error, local_policy, metric_samples
from tests.support import RunningGateway

EXTRA = """  extra:
    backend: {{kind: local, path: {path}}}
    rules:
      - {{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}
"""


def wait_until(check: Callable[[], bool], timeout: float = 1.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def reload_errors(client: httpx.Client) -> float:
    samples = metric_samples(client.get("/metrics").text)
    return sum(v for name, labels, v in samples
               if name == "gateway_policy_reloads_total" and labels.get("result") == "error")


def test_reload_good_bad_fixed(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_data_dir(tmp_path)
    policy = local_policy(tmp_path / "policy.yaml", data)
    gw: RunningGateway = gateway_server(config=policy, reload_interval=0.2)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        first = client.get("/readyz").json()
        assert first["status"] == "ready" and first["last_reload_error"] is None
        assert_error(client.get("/v1/datasets/extra/objects/a.bin"), 401, "unauthenticated")
        assert reload_errors(client) == 0

        # A good edit: a dataset appears, within a second, and the version changes.
        local_policy(policy, data, extra_datasets=EXTRA.format(path=json.dumps(str(data))))
        started = time.monotonic()
        assert wait_until(lambda: client.get("/v1/datasets/extra/objects/a.bin").status_code == 302, 1.0)
        assert time.monotonic() - started < 1.0
        second = client.get("/readyz").json()
        assert second["policy_version"] != first["policy_version"]
        assert second["status"] == "ready" and second["last_reload_error"] is None

        # A bad edit: the old policy stays in force; readiness and metrics say why.
        text = policy.read_text()
        policy.write_text(text.replace("networks: [127.0.0.0/8]", "networks: [127.0.0.0/8], bogus_key: 1"))
        assert wait_until(lambda: client.get("/readyz").json()["last_reload_error"] is not None)
        degraded = client.get("/readyz")
        assert degraded.status_code == 200
        body = degraded.json()
        assert body["status"] == "degraded"
        assert body["policy_version"] == second["policy_version"]
        assert "bogus_key" in body["last_reload_error"]
        assert client.get("/v1/datasets/extra/objects/a.bin").status_code == 302
        assert client.get("/v1/datasets/local/objects/a.bin").status_code == 302
        assert reload_errors(client) >= 1

        # Invalid YAML and a dataset whose rules would open it to the world are refused too.
        policy.write_text("version: 1\ndatasets:\n  local: [unclosed\n")
        assert wait_until(lambda: "YAML" in (client.get("/readyz").json()["last_reload_error"] or ""))
        policy.write_text(
            f"version: 1\ndatasets:\n  local:\n    backend: {{kind: local, path: {json.dumps(str(data))}}}\n"
            "    rules: [{name: open, anonymous: true}]\n")
        assert wait_until(lambda: "networks" in (client.get("/readyz").json()["last_reload_error"] or ""))
        assert client.get("/readyz").json()["policy_version"] == second["policy_version"]
        assert client.get("/v1/datasets/extra/objects/a.bin").status_code == 302
        assert reload_errors(client) >= 3

        # Fixing it clears the error and applies the fix.
        local_policy(policy, data)
        assert wait_until(lambda: client.get("/readyz").json()["last_reload_error"] is None)
        fixed = client.get("/readyz").json()
        assert fixed["status"] == "ready"
        assert fixed["policy_version"] == first["policy_version"]  # the same bytes as the first file
        assert_error(client.get("/v1/datasets/extra/objects/a.bin"), 401, "unauthenticated")
        successes = sum(v for name, labels, v in metric_samples(client.get("/metrics").text)
                        if name == "gateway_policy_reloads_total" and labels.get("result") == "success")
        assert successes >= 2


def test_deleted_policy_file_keeps_serving(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_data_dir(tmp_path)
    policy = local_policy(tmp_path / "policy.yaml", data)
    gw: RunningGateway = gateway_server(config=policy, reload_interval=0.2)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        policy.unlink()
        assert wait_until(lambda: client.get("/readyz").json()["last_reload_error"] is not None)
        body = client.get("/readyz").json()
        assert body["status"] == "degraded" and "cannot read" in body["last_reload_error"]
        assert client.get("/v1/datasets/local/objects/a.bin").status_code == 302
        assert reload_errors(client) >= 1


def test_restoring_the_same_policy_file_clears_the_error(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_data_dir(tmp_path)
    policy = local_policy(tmp_path / "policy.yaml", data)
    gw: RunningGateway = gateway_server(config=policy, reload_interval=0.2)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        moved = policy.rename(tmp_path / "policy.yaml.bak")  # e.g. a ConfigMap symlink swap caught mid-way
        assert wait_until(lambda: client.get("/readyz").json()["last_reload_error"] is not None)
        moved.rename(policy)
        assert wait_until(lambda: client.get("/readyz").json()["status"] == "ready", 1.0)
        assert client.get("/readyz").json()["last_reload_error"] is None


def test_cors_origins_follow_a_reload(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_data_dir(tmp_path)
    policy = local_policy(tmp_path / "policy.yaml", data)
    gw: RunningGateway = gateway_server(config=policy, reload_interval=0.2)
    origin = "http://labeler.example.test"
    preflight = {"Origin": origin, "Access-Control-Request-Method": "GET"}
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        assert client.options("/v1/datasets/local/objects/a.bin", headers=preflight).status_code == 403
        local_policy(policy, data, cors=[origin])
        assert wait_until(
            lambda: client.options("/v1/datasets/local/objects/a.bin", headers=preflight).status_code == 204)
        response = client.get("/v1/datasets/local/objects/a.bin", headers={"Origin": origin})
        assert response.headers["access-control-allow-origin"] == origin
