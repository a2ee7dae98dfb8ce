"""Fixtures for the Redis tests. Every Redis here is a private server (or topology) on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis.cluster_setup import ClusterSetup, start_cluster
from tests.redis.procs import RedisHolder
from tests.redis.sentinel_setup import SentinelSetup, start_sentinel
from tests.redis.servers import Standalone, start_standalone

# Every kind of Redis the stores run on: a mode, on Debian's redis-server or on Valkey.
REDIS_KINDS = ["redis", "sentinel", "cluster", "valkey", "valkey-sentinel", "valkey-cluster"]


@pytest.fixture
def private_redis() -> Iterator[RedisHolder]:
    """A redis-server of this test's own, which the test may kill and restart on the same port."""
    holder = RedisHolder()
    try:
        yield holder
    finally:
        holder.stop()


def _flavor_and_mode(kind: str) -> tuple[str, str]:
    flavor, _, mode = kind.partition("-")
    if flavor not in ("redis", "valkey"):
        flavor, mode = "redis", kind
    return flavor, mode or "standalone"


@pytest.fixture(scope="session")
def redis_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Topologies started on first use and kept for the session: a kind's name → its setup.
    Tests that break one (failover, SIGSTOP) leave it healthy again, or wait until it is."""
    started: dict[str, Standalone | SentinelSetup | ClusterSetup] = {}
    yield started  # type: ignore[misc]
    for topology in started.values():
        topology.stop()


def topology_for(kind: str, cache: dict[str, object], factory: pytest.TempPathFactory) -> object:
    if kind not in cache:
        flavor, mode = _flavor_and_mode(kind)
        root = factory.mktemp(kind)
        match mode:
            case "sentinel":
                cache[kind] = start_sentinel(flavor, root)
            case "cluster":
                cache[kind] = start_cluster(flavor, root)
            case _:
                cache[kind] = start_standalone(flavor, root)
    return cache[kind]


@pytest.fixture
def topology(request: pytest.FixtureRequest, redis_topology: dict[str, object],
             tmp_path_factory: pytest.TempPathFactory) -> object:
    """``@pytest.mark.parametrize("topology", [...], indirect=True)``: the setup of that kind, healthy."""
    found = topology_for(request.param, redis_topology, tmp_path_factory)
    if isinstance(found, SentinelSetup | ClusterSetup):
        found.wait_healthy()
    return found


@pytest.fixture
def sentinel_setup(redis_topology: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> SentinelSetup:
    found = topology_for("sentinel", redis_topology, tmp_path_factory)
    assert isinstance(found, SentinelSetup)
    found.wait_healthy()
    return found


@pytest.fixture
def cluster_setup(redis_topology: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> ClusterSetup:
    found = topology_for("cluster", redis_topology, tmp_path_factory)
    assert isinstance(found, ClusterSetup)
    found.wait_healthy()
    return found
