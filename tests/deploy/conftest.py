from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.helm import CHART, helm_binary, template

SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))


def scenario_file(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


@dataclass
class Rendered:
    """One `helm template` output, split into objects."""

    scenario: str
    values: dict[str, Any]
    text: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.scenario}: expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def gateway(self) -> dict[str, Any]:
        """The gateway's Deployment (not the bundled Redis)."""
        return self.one("Deployment", "gw-gateway")

    def container(self) -> dict[str, Any]:
        containers = self.gateway()["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == "gateway")

    def env(self) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in self.container().get("env", [])}


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return helm_binary()


@pytest.fixture(scope="session")
def rendered(helm_bin: Path) -> Iterator[dict[str, Rendered]]:
    """Every ci/*-values.yaml scenario, plus the chart's defaults as "default", rendered once."""
    out: dict[str, Rendered] = {}
    for name in ["default", *SCENARIOS]:
        args = [] if name == "default" else ["-f", str(scenario_file(name))]
        values = {} if name == "default" else yaml.safe_load(scenario_file(name).read_text())
        text = template(helm_bin, *args).stdout
        objects = [doc for doc in yaml.safe_load_all(text) if doc]
        out[name] = Rendered(name, values, text, objects)
    yield out
