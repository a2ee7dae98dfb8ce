"""Private Network Access: a public web app reading a gateway on loopback or a private address.

Chromium (104 to about 140) sends a preflight with ``Access-Control-Request-Private-Network: true``
before such a request, and goes on only when the answer holds ``Access-Control-Allow-Private-Network:
true``; the gateway says so for allowed origins only. Newer Chromium asks the user instead (Local
Network Access) and sends no such header: the browser test runs the page as a public site with the
permission granted, and checks the header's handling whenever the browser does send it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from gateway.settings import Settings
from tests.e2e.conftest import make_data_dir
from tests.e2e.helpers import local_policy
from tests.support import CHROMIUM, CHROMIUM_ARGS, RunningGateway, free_port, need, page_server, serve_app

PAGE = "<!doctype html><html><head><meta charset=utf-8><title>public app</title></head><body></body></html>"
FETCH_JS = """async (url) => {
  try { const r = await fetch(url, {headers: {'X-Request-ID': 'public-app-1'}});
        return {status: r.status, body: await r.text()}; }
  catch (e) { return {error: String(e)}; }
}"""


class Recorder:
    """Wraps the gateway's ASGI app and keeps the headers of every preflight it is asked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.preflights: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            self.preflights.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RunningGateway, Recorder]]:
    root = tmp_path_factory.mktemp("pna")
    data = make_data_dir(root)
    with page_server(lambda: PAGE) as public_origin:
        port = free_port()
        policy = local_policy(root / "policy.yaml", data, cors=[public_origin])
        app = create_app(Settings(port=port, config=policy, signing_key="b" * 32))
        recorder = Recorder(app.asgi)
        app.asgi = recorder
        with serve_app(app, port) as gw:
            yield public_origin, gw, recorder


def _preflight(gw: RunningGateway, origin: str, **extra: str) -> httpx.Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers":
               "authorization", **extra}
    return httpx.options(f"{gw.url}/v1/datasets/local/objects/hello.txt", headers=headers, timeout=10)


def test_an_allowed_origin_may_reach_the_private_network(setup: tuple[str, RunningGateway, Recorder]) -> None:
    origin, gw, _ = setup
    response = _preflight(gw, origin, **{"Access-Control-Request-Private-Network": "true"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-private-network"] == "true"
    assert response.headers["access-control-allow-origin"] == origin


def test_no_private_network_grant_unasked_or_for_other_origins(setup: tuple[str, RunningGateway, Recorder]) -> None:
    origin, gw, _ = setup
    unasked = _preflight(gw, origin)
    assert unasked.status_code == 204 and "access-control-allow-private-network" not in unasked.headers
    other = _preflight(gw, "https://evil.example", **{"Access-Control-Request-Private-Network": "true"})
    assert other.status_code == 403
    assert not [h for h in other.headers if h.startswith("access-control-")]


@pytest.mark.browser
def test_a_public_page_reads_the_loopback_gateway_in_chromium(setup: tuple[str, RunningGateway, Recorder]) -> None:
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    origin, gw, recorder = setup
    page_port = origin.rsplit(":", 1)[1]
    # The page's address is treated as a public site's; the gateway stays on loopback.
    args = [*CHROMIUM_ARGS, f"--ip-address-space-overrides=127.0.0.1:{page_port}=public"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            context = browser.new_context()
            # Local Network Access (current Chromium): the user's "allow" is a permission.
            context.grant_permissions(["local-network-access"], origin=origin)
            page = context.new_page()
            page.goto(origin + "/")
            before = len(recorder.preflights)
            result: dict[str, Any] = page.evaluate(FETCH_JS, f"{gw.url}/v1/datasets/local/objects/hello.txt")
            assert result.get("status") == 200 and result.get("body") == "hello, gateway\n", result
            preflights = recorder.preflights[before:]
            assert preflights, "the cross-origin request with a custom header was not preflighted"
            # Where this Chromium still sends the Private Network Access header, the gateway allowed it
            # (the request above would have failed otherwise); where it does not, nothing depends on it.
            asked = [p for p in preflights if p.get("access-control-request-private-network")]
            if asked:
                assert _preflight(gw, origin, **{"Access-Control-Request-Private-Network": "true"}).headers[
                    "access-control-allow-private-network"] == "true"
        finally:
            browser.close()


def test_the_recorder_sees_what_it_wraps(tmp_path: Path) -> None:
    """The browser test's observation point must see preflights, or its check would prove nothing."""
    data = make_data_dir(tmp_path)
    app = create_app(Settings(config=local_policy(tmp_path / "p.yaml", data, cors=["http://a.example"]),
                              signing_key="b" * 32))
    recorder = Recorder(app.asgi)

    async def ask() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=recorder), base_url="http://127.0.0.1") as c:
            await c.options("/v1/datasets/local/objects/a.bin", headers={"Origin": "http://a.example",
                                                                          "Access-Control-Request-Method": "GET"})
        await app.runtime.aclose()

    asyncio.run(ask())
    assert recorder.preflights and recorder.preflights[0]["origin"] == "http://a.example"
