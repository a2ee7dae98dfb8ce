"""A real browser on another origin reads proxied objects: an ``<img crossorigin>`` drawn into a
canvas whose pixels it can read (CORS on the image itself, no tainted canvas), and a point cloud
read with ``fetch`` and ``Range``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.delivery.conftest import OBJECTS, proxy_policy
from tests.support import CHROMIUM, CHROMIUM_ARGS, RunningGateway, free_port, need, page_server, serve_app

pytestmark = pytest.mark.browser
PAGE = "<!doctype html><html><head><meta charset=utf-8><title>vendor</title></head><body></body></html>"
CANVAS_JS = """(url) => new Promise((resolve) => {
  const img = new Image();
  img.crossOrigin = 'anonymous';
  img.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    try { resolve({ok: true, width: img.naturalWidth, pixel: Array.from(ctx.getImageData(0, 0, 1, 1).data)}); }
    catch (e) { resolve({ok: false, error: e.name}); }
  };
  img.onerror = () => resolve({ok: false, error: 'load'});
  img.src = url;
})"""
RANGE_JS = """async (url) => {
  const r = await fetch(url, {headers: {Range: 'bytes=0-10'}});
  return {status: r.status, range: r.headers.get('content-range'), length: r.headers.get('content-length'),
          text: await r.text(), url: r.url};
}"""


@pytest.fixture(scope="module")
def setup(s3_store: str, s3_env: None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, RunningGateway]]:
    root: Path = tmp_path_factory.mktemp("proxy-browser")
    with page_server(lambda: PAGE) as origin:
        port = free_port()
        policy = proxy_policy(root / "policy.yaml", s3_store, origin=origin)
        with serve_app(create_app(Settings(port=port, config=policy, signing_key="c" * 32)), port) as gw:
            yield origin, gw


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


def test_canvas_pixels_and_a_range_read_from_another_origin(browser, setup) -> None:  # type: ignore[no-untyped-def]
    origin, gw = setup
    page = browser.new_page()
    try:
        page.goto(origin + "/")
        drawn = page.evaluate(CANVAS_JS, f"{gw.url}/v1/datasets/vision/objects/tiny.png")
        assert drawn == {"ok": True, "width": 2, "pixel": [255, 0, 0, 255]}, drawn
        cloud = OBJECTS["pointclouds/scan.pcd"]
        got = page.evaluate(RANGE_JS, f"{gw.url}/v1/datasets/vision/objects/pointclouds/scan.pcd")
        assert got["status"] == 206, got
        assert got["range"] == f"bytes 0-10/{len(cloud)}" and got["length"] == "11"
        assert got["text"] == cloud[:11].decode()
        assert got["url"].startswith(gw.url + "/v1/datasets/")  # no redirect: the URL vendor JS sees is ours
    finally:
        page.close()
