"""Unknown key ids over HTTP, against the gateway on a real socket and a real identity provider: a
stranger's flood is 401 and counted as ``unknown_kid``, never a 5xx; only the issuer's outage is."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support import RunningGateway

from .support import Idp, SigningKey, claims_for

pytestmark = pytest.mark.anyio
INTERVAL = 1.0  # jwks_refetch_interval, short so that the flood spans several
JWKS = "/v1/keys"
POLICY = """
version: 1
auth:
  oidc:
    - {{name: okta, issuer: "{issuer}", audience: "api://default", jwks_refetch_interval: {interval}s}}
datasets:
  team:
    backend: {{kind: local, path: "{root}"}}
    rules: [{{name: ml-team, issuers: [okta], groups: [ml-team]}}]
"""
OBJECT = "/v1/datasets/team/objects/scan.png"


@pytest.fixture
def gateway(tmp_path: Path, idp: Idp, keys: dict[str, SigningKey],
            gateway_server: Callable[..., RunningGateway]) -> RunningGateway:
    idp.keys = [keys["k1"].jwk()]
    root = tmp_path / "objects"
    root.mkdir()
    (root / "scan.png").write_bytes(b"\x89PNG")
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY.format(issuer=idp.issuer, interval=INTERVAL, root=root))
    return gateway_server(config=config)


def token(idp: Idp, key: SigningKey) -> dict[str, str]:
    return {"Authorization": "Bearer " + key.sign(claims_for(idp, time.time, groups=["ml-team"]))}


def counted(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_flood_of_unknown_kids_is_401_and_never_moves_the_5xx_rate(
        gateway: RunningGateway, idp: Idp, keys: dict[str, SigningKey]) -> None:
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=10) as http:
        assert (await http.get(OBJECT, headers=token(idp, keys["k1"]))).status_code == 302
        assert idp.hits[JWKS] == 1
        strangers = [SigningKey(secrets.token_urlsafe(12), "RS256", keys["k3"].private) for _ in range(200)]
        started = time.monotonic()
        answers = await asyncio.gather(*(http.get(OBJECT, headers=token(idp, key)) for key in strangers))
        took = time.monotonic() - started
        fetches = idp.hits[JWKS] - 1
        assert [a.status_code for a in answers] == [401] * 200
        for answer in answers:
            assert answer.json()["detail"] == "the token is signed with a key the issuer 'okta' does not publish"
            assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
        # At most one fetch per interval, however many strangers ask.
        assert fetches <= took / INTERVAL + 1, (fetches, took)
        metrics = (await http.get("/metrics")).text
    assert counted(metrics, "gateway_auth_failures_total", method="bearer", reason="unknown_kid") == 200
    assert not re.search(r'^gateway_requests_total\{[^}]*status="5\d\d"[^}]*\} [1-9]', metrics, re.M)


async def test_with_the_issuer_down_an_unknown_kid_is_503_and_known_keys_still_work(
        gateway: RunningGateway, idp: Idp, keys: dict[str, SigningKey]) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await http.get(OBJECT, headers=token(idp, keys["k1"]))).status_code == 302
        idp.down = True
        await asyncio.sleep(INTERVAL)  # the next unknown kid may ask, and finds the issuer down
        answer = await http.get(OBJECT, headers=token(idp, keys["k2"]))
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "unavailable"
        assert 1 <= int(answer.headers["Retry-After"]) <= INTERVAL
        assert (await http.get(OBJECT, headers=token(idp, keys["k1"]))).status_code == 302
        idp.down = False
        await asyncio.sleep(INTERVAL)
        assert (await http.get(OBJECT, headers=token(idp, keys["k2"]))).status_code == 401  # reachable again
