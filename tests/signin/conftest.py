"""Fixtures for the browser sign-in tests: one real oidc-provider for the whole run, and gateway
ports registered with it in advance (an issuer only sends browsers back to registered URIs)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import make_data_dir
from tests.oidc.harness import Provider, running_provider
from tests.signin.support import (
    ACCOUNTS,
    CLIENT_ID,
    CLIENT_SECRET,
    MovableClock,
    gateway_app,
    session_key,
    write_policy,
)
from tests.support import RunningGateway, free_port, serve_app

GATEWAY_PORTS = 8


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def gateway_ports() -> list[int]:
    return [free_port() for _ in range(GATEWAY_PORTS)]


@pytest.fixture(scope="session")
def provider(gateway_ports: list[int]) -> Iterator[Provider]:
    gateways = [f"http://127.0.0.1:{port}" for port in gateway_ports]
    clients = [{
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{gw}/v1/auth/callback" for gw in gateways],
        "post_logout_redirect_uris": [f"{gw}/v1/auth/" for gw in gateways],
        "response_types": ["code"], "grant_types": ["authorization_code"],
    }]
    with running_provider(free_port(), clients, ACCOUNTS) as running:
        yield running


@pytest.fixture(scope="session")
def port_pool(gateway_ports: list[int]) -> Iterator[int]:
    """The next registered gateway port (round robin: no test holds more than a few at once)."""
    return itertools.cycle(gateway_ports)


@dataclass
class SignInGateway:
    """A gateway with browser sign-in against the real provider, its clock and its audit file."""

    url: str
    port: int
    clock: MovableClock
    audit: Path
    policy: Path
    keys: list[str]
    server: RunningGateway

    def audit_records(self) -> list[dict[str, Any]]:
        time.sleep(0.2)  # the audit writer drains its queue every 25 ms
        return [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]


EMBEDDER = "https://app.vendor.example"


@pytest.fixture(scope="module")
def gw(provider: Provider, port_pool: Iterator[int], data: Path,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInGateway]:
    """One gateway per module; its clock follows real time unless a test moves it (and back)."""
    root = tmp_path_factory.mktemp("gw")
    audit = root / "audit.jsonl"
    policy = write_policy(root / "policy.yaml", data, provider.issuer, embedders=[EMBEDDER], audit=audit)
    clock = MovableClock()
    port = next(port_pool)
    keys = [session_key()]
    app = gateway_app(port, policy, keys=keys, clock=clock)
    with serve_app(app, port) as server:
        yield SignInGateway(server.url, port, clock, audit, policy, keys, server)


@pytest.fixture
def clock(gw: SignInGateway) -> Iterator[MovableClock]:
    """The module gateway's clock, for a test to move; back to real time afterwards."""
    gw.clock.offset = 0.0
    yield gw.clock
    gw.clock.offset = 0.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("signin"))
