"""docker-compose.yml, checked against the gateway's settings and its own policy (no daemon here)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import S3Backend, load_policy
from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for each published port."""
    out = []
    for spec in service.get("ports", []):
        match = re.fullmatch(r"(?P<ip>[\d.]+):(?P<host>\d+):(?P<container>\d+)(/tcp)?", str(spec))
        assert match, f"{spec!r}: publish as ADDRESS:HOST:CONTAINER"
        out.append((match["ip"], int(match["host"]), int(match["container"])))
    return out


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path, for bind mounts."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target, *_ = str(spec).split(":")
        mounts[target] = (REPO / source).resolve()
    return mounts


def test_the_trial_services_exist(compose: dict[str, Any]) -> None:
    assert {"gateway", "redis", "s3", "s3-init"} <= set(compose["services"])


def test_every_published_port_binds_loopback(compose: dict[str, Any]) -> None:
    published = [p for s in compose["services"].values() for p in _ports(s)]
    assert published
    assert all(ip == "127.0.0.1" for ip, _, _ in published), published


def test_gateway_settings_match_the_ports(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    env = {k: str(v) for k, v in gateway["environment"].items()}
    settings = Settings.model_validate({k.removeprefix("GATEWAY_").lower(): v for k, v in env.items()
                                        if k.startswith("GATEWAY_")})
    assert settings.host == "0.0.0.0"
    assert [c for _, _, c in _ports(gateway)] == [settings.port] == [8080]
    assert urlsplit(settings.redis_url or "").hostname in compose["services"]
    fields = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("GATEWAY_")} <= fields


def test_policy_is_mounted_as_a_directory_and_valid(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    config = PurePosixPath(gateway["environment"]["GATEWAY_CONFIG"])
    mounts = _mounts(gateway)
    host_dir = mounts[str(config.parent)]
    assert host_dir.is_dir(), "mount the policy's folder, not the file: a replaced file must be seen"
    policy, _ = load_policy(host_dir / config.name)
    assert any(str(v).endswith(":ro") for v in gateway["volumes"])
    # The S3 dataset points at the store's published port, in the bucket s3-init creates and seeds.
    store_ports = {host: container for _, host, container in _ports(compose["services"]["s3"])}
    init_script = "\n".join(compose["services"]["s3-init"]["command"])
    datasets = [d for d in policy.datasets.values() if isinstance(d.backend, S3Backend)]
    assert datasets
    for dataset in datasets:
        backend = dataset.backend
        assert isinstance(backend, S3Backend)
        endpoint = urlsplit(backend.endpoint_url or "")
        assert endpoint.hostname == "127.0.0.1" and endpoint.port in store_ports
        assert backend.addressing_style == "path"
        assert f"mb --ignore-existing trial/{backend.bucket}" in init_script
        assert f"trial/{backend.bucket}/{backend.prefix}sample.png" in init_script
    seed = _mounts(compose["services"]["s3-init"])["/seed"]
    assert (seed / "sample.png").is_file()


def test_anonymous_rule_covers_the_trial_network_only(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    config = PurePosixPath(gateway["environment"]["GATEWAY_CONFIG"])
    policy, _ = load_policy(_mounts(gateway)[str(config.parent)] / config.name)
    [subnet] = [ipaddress.ip_network(c["subnet"]) for c in compose["networks"]["trial"]["ipam"]["config"]]
    networks = {n for d in policy.datasets.values() for r in d.rules if r.anonymous for n in r.networks or []}
    assert subnet in networks
    # Requests from the host arrive from the network's gateway address, which the rule covers.
    assert any(next(subnet.hosts()) in n for n in networks)
    for network in networks:
        assert network == subnet or network.is_loopback, f"{network} is wider than the trial needs"


def test_gateway_container_is_hardened(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["read_only"] is True
    assert any(str(t).startswith("/tmp") for t in gateway["tmpfs"])
    uid, _, gid = str(gateway["user"]).partition(":")
    assert int(uid) > 0 and int(gid) > 0
    assert gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert gateway["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"
    assert gateway["build"] == "."
