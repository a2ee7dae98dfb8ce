"""Development mode: a fixed principal, refused unless explicitly enabled and on loopback only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.settings import Settings
from tests.support import RunningGateway


def policy(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(b"png")
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\ndatasets:\n  team:\n    backend: {{kind: local, path: '{tmp_path / 'd'}'}}\n"
                    "    rules: [{name: ml, groups: [ml-team]}]\n")
    return path


@pytest.mark.parametrize(("settings", "problem"), [
    ({"dev_principal": "ada@acme.example"}, "GATEWAY_DEV_MODE=true"),
    ({"dev_principal": "ada@acme.example", "dev_mode": True, "host": "0.0.0.0"}, "loopback only"),
    ({"dev_principal": "ada@acme.example", "dev_mode": True, "host": "10.1.2.3"}, "loopback only"),
])
def test_development_mode_is_refused_unless_explicit_and_loopback(
    tmp_path: Path, settings: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app(Settings(config=policy(tmp_path), signing_key="k" * 32, **settings))  # type: ignore[arg-type]
    assert any(problem in p for p in refused.value.problems)


def test_development_principal_passes_rules_but_real_credentials_are_still_checked(
    tmp_path: Path, gateway_server: Callable[..., RunningGateway]
) -> None:
    gw = gateway_server(config=policy(tmp_path), dev_mode=True, dev_principal="ada@acme.example",
                        dev_groups=["ml-team"])
    url = f"{gw.url}/v1/datasets/team/objects/a.png"
    assert httpx.get(url).status_code == 302
    assert httpx.get(url, headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_without_development_mode_the_same_request_is_denied(
    tmp_path: Path, gateway_server: Callable[..., RunningGateway]
) -> None:
    gw = gateway_server(config=policy(tmp_path))
    assert httpx.get(f"{gw.url}/v1/datasets/team/objects/a.png").status_code == 401  # a credential is needed
