"""``GATEWAY_FORWARDED_HEADER`` on ``gateway serve`` as a real process: behind a trusted proxy, exactly
one forwarding header names the client, and the other is ignored whatever it says.

The gateway trusts 127.0.0.1/32 (the test is the proxy) and the dataset's only rule admits anonymous
clients from 203.0.113.0/24, so a request is allowed exactly when the header the gateway reads puts
the client there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import make_data_dir
from tests.e2e.helpers import RawResponse, assert_error, raw_request
from tests.support import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
OBJECT = b"/v1/datasets/local/objects/a.bin?format=json"
INSIDE = b"203.0.113.7"  # in the rule's network
OUTSIDE = b"198.51.100.1"  # not in it


@dataclass
class Served:
    port: int
    audit: Path

    def get(self, *headers: tuple[bytes, bytes]) -> RawResponse:
        return raw_request(self.port, OBJECT, headers=list(headers))

    def client_ip_of(self, response: RawResponse) -> str:
        """The ``client_ip`` of the audit record of ``response`` (the writer flushes every 25 ms)."""
        request_id = response.header("x-request-id")
        deadline = time.monotonic() + 5
        while True:
            records = [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()] \
                if self.audit.exists() else []
            mine = [r for r in records if r.get("request_id") == request_id]
            if mine:
                assert len(mine) == 1, mine
                ip: str = mine[0]["client_ip"]
                return ip
            assert time.monotonic() < deadline, f"no audit record for {request_id}"
            time.sleep(0.05)


def _serve(tmp: Path, **settings: str) -> Iterator[Served]:
    data = make_data_dir(tmp)
    audit = tmp / "audit.jsonl"
    policy = tmp / "policy.yaml"
    policy.write_text(f"""
version: 1
audit: {{sinks: [{{kind: file, path: "{audit}"}}]}}
datasets:
  local:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: documentation-net, anonymous: true, networks: [203.0.113.0/24]}}]
""")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update({"GATEWAY_SIGNING_KEY": "f" * 32, "GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32", **settings})
    stderr = tmp / "stderr.log"
    with stderr.open("wb") as err:
        argv = [sys.executable, "-m", "gateway", "serve", "--config", str(policy), "--port", str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env)
    try:
        wait_for_port(port, timeout=30)
        yield Served(port, audit)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def forwarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("forwarded"), GATEWAY_FORWARDED_HEADER="forwarded")


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("xff"))  # GATEWAY_FORWARDED_HEADER unset: x-forwarded-for


def assert_allowed(response: RawResponse) -> None:
    assert response.status == 200, (response.status, response.body)
    assert "/v1/local/local/a.bin?" in json.loads(response.body)["url"]


# -- GATEWAY_FORWARDED_HEADER=forwarded -------------------------------------------------------------

def test_forwarded_for_inside_the_network_is_allowed(forwarded: Served) -> None:
    response = forwarded.get((b"Forwarded", b"for=" + INSIDE))
    assert_allowed(response)
    assert forwarded.client_ip_of(response) == INSIDE.decode()


@pytest.mark.parametrize("value", [
    b'for="203.0.113.7:4711";proto=https;by=10.0.0.1',  # quoted, with a port and other parameters
    b"For=203.0.113.7, for=127.0.0.1",  # the trusted proxy's own hop is skipped
])
def test_forwarded_is_read_as_rfc_7239(forwarded: Served, value: bytes) -> None:
    response = forwarded.get((b"Forwarded", value))
    assert_allowed(response)
    assert forwarded.client_ip_of(response) == INSIDE.decode()


def test_x_forwarded_for_is_ignored(forwarded: Served) -> None:
    response = forwarded.get((b"X-Forwarded-For", INSIDE))
    assert_error(response, 401, "unauthenticated")
    assert forwarded.client_ip_of(response) == "127.0.0.1"  # no Forwarded: the proxy itself


def test_x_forwarded_for_cannot_overrule_forwarded(forwarded: Served) -> None:
    assert_allowed(forwarded.get((b"Forwarded", b"for=" + INSIDE), (b"X-Forwarded-For", OUTSIDE)))
    response = forwarded.get((b"Forwarded", b"for=" + OUTSIDE), (b"X-Forwarded-For", INSIDE))
    assert_error(response, 401, "unauthenticated")
    assert forwarded.client_ip_of(response) == OUTSIDE.decode()


def test_forwarded_for_outside_the_network_is_refused(forwarded: Served) -> None:
    response = forwarded.get((b"Forwarded", b"for=" + OUTSIDE))
    assert_error(response, 401, "unauthenticated")
    assert forwarded.client_ip_of(response) == OUTSIDE.decode()


def test_a_client_cannot_prepend_its_own_forwarded_element(forwarded: Served) -> None:
    """Read right to left: the hop the trusted proxy appended is the client, not the one before it."""
    response = forwarded.get((b"Forwarded", b"for=" + INSIDE + b", for=" + OUTSIDE))
    assert_error(response, 401, "unauthenticated")
    assert forwarded.client_ip_of(response) == OUTSIDE.decode()


def test_an_element_naming_for_twice_is_400(forwarded: Served) -> None:
    assert_error(forwarded.get((b"Forwarded", b"for=" + INSIDE + b";for=" + OUTSIDE)), 400, "bad_request")


# -- the default, x-forwarded-for -------------------------------------------------------------------

def test_by_default_x_forwarded_for_is_read(default: Served) -> None:
    response = default.get((b"X-Forwarded-For", INSIDE))
    assert_allowed(response)
    assert default.client_ip_of(response) == INSIDE.decode()
    assert_error(default.get((b"X-Forwarded-For", OUTSIDE)), 401, "unauthenticated")


def test_by_default_forwarded_is_ignored(default: Served) -> None:
    response = default.get((b"Forwarded", b"for=" + INSIDE))
    assert_error(response, 401, "unauthenticated")
    assert default.client_ip_of(response) == "127.0.0.1"
    assert_error(default.get((b"Forwarded", b"for=" + INSIDE), (b"X-Forwarded-For", OUTSIDE)), 401, "unauthenticated")
    # Nor is a Forwarded element naming for= twice refused: the header is not read at all.
    assert_allowed(default.get((b"Forwarded", b"for=" + OUTSIDE + b";for=" + OUTSIDE), (b"X-Forwarded-For", INSIDE)))
