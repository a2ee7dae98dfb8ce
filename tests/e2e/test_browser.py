"""A real browser (headless Chromium): a page on an allowed origin fetches a point cloud through the
gateway's redirect and shows an image; a page on another origin is refused by CORS."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.e2e.conftest import make_data_dir
from tests.e2e.helpers import local_policy
from tests.support import CHROMIUM, CHROMIUM_ARGS, RunningGateway, free_port, need, page_server, serve_app

pytestmark = pytest.mark.browser
PAGE = "<!doctype html><html><head><meta charset=utf-8><title>origin</title></head><body></body></html>"

FETCH_JS = """async (url) => {
  try {
    const r = await fetch(url);
    const bytes = new Uint8Array(await r.arrayBuffer());
    return {ok: true, status: r.status, redirected: r.redirected, url: r.url,
            type: r.headers.get('content-type'), bytes: Array.from(bytes)};
  } catch (e) {
    return {ok: false, error: e.name + ': ' + e.message};
  }
}"""
NO_CORS_JS = """async (url) => { const r = await fetch(url, {mode: 'no-cors'}); return r.type; }"""
IMG_JS = """(url) => new Promise((resolve) => {
  const img = new Image();
  img.onload = () => resolve(img.naturalWidth);
  img.onerror = () => resolve(-1);
  img.src = url;
  document.body.appendChild(img);
})"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, RunningGateway, Path]]:
    root = tmp_path_factory.mktemp("browser")
    data = make_data_dir(root)
    with page_server(lambda: PAGE) as origin_a, page_server(lambda: PAGE) as origin_b:
        port = free_port()
        policy = local_policy(root / "policy.yaml", data, cors=[origin_a])
        app = create_app(Settings(port=port, config=policy, signing_key="b" * 32))
        with serve_app(app, port) as gw:
            yield origin_a, origin_b, gw, data


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need(os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def test_allowed_origin_fetches_and_shows_objects(browser, setup) -> None:  # type: ignore[no-untyped-def]
    origin_a, _, gw, data = setup
    page = browser.new_page()
    try:
        page.goto(origin_a + "/")
        result = page.evaluate(FETCH_JS, f"{gw.url}/v1/datasets/local/objects/cloud.pcd")
        assert result["ok"], result
        assert result["status"] == 200 and result["redirected"] is True
        assert result["url"].startswith(f"{gw.url}/v1/local/local/cloud.pcd?")
        assert result["type"] == "application/x-pcd"
        expected = (data / "cloud.pcd").read_bytes()
        assert len(result["bytes"]) == len(expected) and bytes(result["bytes"]) == expected
        assert page.evaluate(IMG_JS, f"{gw.url}/v1/datasets/local/objects/tiny.png") == 2
        assert page.evaluate(IMG_JS, f"{gw.url}/v1/datasets/local/objects/no-such.png") == -1
    finally:
        page.close()


def test_other_origin_is_refused_by_cors(browser, setup) -> None:  # type: ignore[no-untyped-def]
    _, origin_b, gw, _ = setup
    page = browser.new_page()
    try:
        page.goto(origin_b + "/")
        result = page.evaluate(FETCH_JS, f"{gw.url}/v1/datasets/local/objects/cloud.pcd")
        assert result["ok"] is False, result
        assert result["error"].startswith("TypeError"), result
        # The gateway itself was reachable: an opaque no-cors request succeeds, it just cannot be read.
        assert page.evaluate(NO_CORS_JS, f"{gw.url}/v1/datasets/local/objects/cloud.pcd") == "opaque"
    finally:
        page.close()
