"""GATEWAY_MAX_CONCURRENCY over a real socket: beyond the limit, requests waiting on I/O are not
queued; the next ones get a quick 503 with Retry-After, and probes still answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.auth.support import Idp, SigningKey
from tests.support import RunningGateway

POLICY = """
version: 1
auth:
  oidc:
    - {{name: okta, issuer: "{issuer}", audience: "api://default"}}
datasets:
  team:
    backend: {{kind: local, path: "{root}"}}
    rules: [{{name: ml-team, groups: [ml-team], issuers: [okta]}}]
"""


def test_requests_beyond_the_limit_are_shed_at_once(tmp_path: Path, idp: Idp, idp_key: SigningKey,
                                                    gateway_server: Callable[..., RunningGateway]) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "a.png").write_bytes(b"png")
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY.format(issuer=idp.issuer, root=root))
    gw = gateway_server(config=config, max_concurrency=2)
    now = int(time.time())
    token = idp_key.sign({"iss": idp.issuer, "aud": "api://default", "sub": "u1", "groups": ["ml-team"],
                          "iat": now, "exp": now + 600})
    idp.delay = 1.5  # the first requests wait for discovery and JWKS: they are in flight meanwhile

    async def run() -> tuple[list[httpx.Response], list[float], int]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=20) as client:
            async def one(i: int) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                response = await client.get(f"/v1/datasets/team/objects/a.png?n={i}",
                                            headers={"Authorization": f"Bearer {token}"})
                return response, time.monotonic() - started

            first = [asyncio.create_task(one(i)) for i in range(2)]
            await asyncio.sleep(0.5)  # both are waiting on the identity provider now
            rest = await asyncio.gather(*(one(i) for i in range(2, 8)))
            probe = (await client.get("/healthz")).status_code
            done = [*(await asyncio.gather(*first)), *rest]
            return [r for r, _ in done], [t for _, t in rest], probe

    responses, shed_times, probe = asyncio.run(run())
    assert Counter(r.status_code for r in responses) == {302: 2, 503: 6}
    assert probe == 200  # probes are never shed
    for response in responses[2:]:
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "overloaded"
        assert response.json()["request_id"] == response.headers["x-request-id"]
    assert max(shed_times) < 1.0  # refused at once, not after the identity provider answered
