"""Hot reload: a valid file swaps in, an invalid one never replaces a valid policy (invariant 9)."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.app.runtime import Runtime
from gateway.errors import Forbidden, Unauthenticated
from tests.calls import Caller
from tests.core.conftest import Clock


def policy_text(data: Path, *, networks: str = "[127.0.0.0/8]", rule: str = "loopback") -> str:
    return (
        "version: 1\n"
        "audit: {sinks: [{kind: file, path: " + str(data.parent / "audit.jsonl") + "}]}\n"
        "datasets:\n"
        "  raw:\n"
        f"    backend: {{kind: local, path: {data}}}\n"
        f"    rules: [{{name: {rule}, anonymous: true, networks: {networks}}}]\n"
    )


BROKEN = ("version: 1\ndatasets:\n  raw:\n    backend: {kind: local, path: /x}\n"
          "    rules: [{name: open, anonymous: true}]\n")


def readiness(runtime: Runtime) -> dict[str, Any]:
    """The /readyz body, whether Runtime.readiness is a plain or a coroutine function."""
    result = runtime.readiness()
    if inspect.isawaitable(result):
        async def wait() -> Any:
            return await result

        result = asyncio.run(wait())
    assert isinstance(result, dict)
    return result


def reloads(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("gateway_policy_reloads_total", {"result": result}) or 0.0


@pytest.fixture
def setup(tmp_path: Path, make_runtime: Callable[..., Runtime], clock: Clock
          ) -> tuple[Runtime, Path, CollectorRegistry]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.png").write_bytes(b"a")
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(data))
    registry = CollectorRegistry()
    runtime = make_runtime(path, clock=clock, registry=registry)
    return runtime, path, registry


def allowed(runtime: Runtime) -> bool:
    try:
        Caller(runtime).redirect("a.png", "raw")
    except (Forbidden, Unauthenticated):
        return False
    return True


def test_an_unchanged_file_is_not_reloaded(setup: tuple[Runtime, Path, CollectorRegistry]) -> None:
    runtime, _, registry = setup
    assert runtime.reloader is not None
    version = runtime.holder.current.version
    assert runtime.reloader.check_once() is False
    assert runtime.holder.current.version == version
    assert reloads(registry, "success") == reloads(registry, "error") == 0


def test_a_valid_change_is_swapped_in(setup: tuple[Runtime, Path, CollectorRegistry], tmp_path: Path) -> None:
    runtime, path, registry = setup
    assert runtime.reloader is not None
    before = runtime.holder.current
    assert allowed(runtime)
    path.write_text(policy_text(tmp_path / "data", networks="[10.0.0.0/8]", rule="office"))
    assert runtime.reloader.check_once() is True
    after = runtime.holder.current
    assert after.version != before.version
    assert [r.name for r in after.policy.source.datasets["raw"].rules] == ["office"]
    assert not allowed(runtime)  # the new rule is in force
    assert runtime.holder.last_reload_error is None
    assert reloads(registry, "success") == 1
    assert readiness(runtime)["policy_version"] == after.version


def test_an_invalid_change_keeps_the_old_policy(setup: tuple[Runtime, Path, CollectorRegistry]) -> None:
    runtime, path, registry = setup
    assert runtime.reloader is not None
    before = runtime.holder.current
    path.write_text(BROKEN)
    assert runtime.reloader.check_once() is False
    assert runtime.holder.current is before
    assert allowed(runtime)
    error = runtime.holder.last_reload_error
    assert error is not None
    assert str(path) in error
    assert "datasets.raw.rules.0" in error and "networks" in error
    assert reloads(registry, "error") == 1
    assert readiness(runtime)["status"] == "degraded"
    assert readiness(runtime)["last_reload_error"] == error
    # The same broken file is reported once, not at every poll.
    assert runtime.reloader.check_once() is False
    assert reloads(registry, "error") == 1


def test_invalid_yaml_keeps_the_old_policy(setup: tuple[Runtime, Path, CollectorRegistry]) -> None:
    runtime, path, registry = setup
    assert runtime.reloader is not None
    before = runtime.holder.current
    path.write_text("version: 1\n\tdatasets: {}\n")
    assert runtime.reloader.check_once() is False
    assert runtime.holder.current is before
    assert "line 2" in (runtime.holder.last_reload_error or "")
    assert reloads(registry, "error") == 1


def test_fixing_the_file_clears_the_error(setup: tuple[Runtime, Path, CollectorRegistry], tmp_path: Path) -> None:
    runtime, path, registry = setup
    assert runtime.reloader is not None
    path.write_text(BROKEN)
    runtime.reloader.check_once()
    assert runtime.holder.last_reload_error is not None
    path.write_text(policy_text(tmp_path / "data", rule="fixed"))
    assert runtime.reloader.check_once() is True
    assert runtime.holder.last_reload_error is None
    assert runtime.holder.current.policy.source.datasets["raw"].rules[0].name == "fixed"
    assert readiness(runtime)["status"] == "ready"
    assert (reloads(registry, "error"), reloads(registry, "success")) == (1, 1)


def test_a_file_that_disappears_and_comes_back_unchanged_clears_the_error(
    setup: tuple[Runtime, Path, CollectorRegistry]
) -> None:
    runtime, path, _ = setup
    assert runtime.reloader is not None
    good = path.read_bytes()
    path.unlink()  # e.g. caught in the middle of a ConfigMap swap
    assert runtime.reloader.check_once() is False
    assert runtime.holder.last_reload_error is not None
    path.write_bytes(good)
    runtime.reloader.check_once()
    assert runtime.holder.last_reload_error is None
    assert readiness(runtime)["status"] == "ready"


def test_a_configmap_symlink_swap_is_picked_up(tmp_path: Path, make_runtime: Callable[..., Runtime],
                                               clock: Clock) -> None:
    """Kubernetes mounts policy.yaml -> ..data/policy.yaml and ..data -> ..<timestamp>, then swaps ..data."""
    data = tmp_path / "data"
    data.mkdir()
    mount = tmp_path / "config"
    first = mount / "..2024_01_01_00_00_00.000000001"
    first.mkdir(parents=True)
    (first / "policy.yaml").write_text(policy_text(data, rule="first"))
    os.symlink(first.name, mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")
    runtime = make_runtime(mount / "policy.yaml", clock=clock)
    assert runtime.reloader is not None
    assert runtime.holder.current.policy.source.datasets["raw"].rules[0].name == "first"

    second = mount / "..2024_01_01_00_05_00.000000002"
    second.mkdir()
    (second / "policy.yaml").write_text(policy_text(data, rule="second"))
    os.symlink(second.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")  # the atomic swap the kubelet does
    for child in first.iterdir():
        child.unlink()
    first.rmdir()

    assert runtime.reloader.check_once() is True
    assert runtime.holder.current.policy.source.datasets["raw"].rules[0].name == "second"
    assert runtime.holder.last_reload_error is None
