"""The vendor web app's own pattern, in headless Chromium.

A page on origin A holds a bearer token, calls POST /v1/sign (a preflighted request, because of
the Authorization header), and shows the returned URLs in <img> tags. The same page served from an
origin that is not allowed is stopped by CORS.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.auth.support import Idp, SigningKey
from tests.support import CHROMIUM, CHROMIUM_ARGS, RunningGateway, need, page_server

pytestmark = pytest.mark.browser

PAGE = """<!doctype html><html><body><script>
window.result = (async () => {
  try {
    const response = await fetch(GATEWAY + "/v1/sign", {
      method: "POST",
      headers: {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"},
      body: JSON.stringify({dataset: "team", keys: ["a.png", "b.png"]}),
    });
    const body = await response.json();
    const widths = await Promise.all(body.results.map(r => new Promise((resolve) => {
      const img = document.createElement("img");
      img.onload = () => resolve(img.naturalWidth);
      img.onerror = () => resolve(-1);
      img.src = r.url;
      document.body.appendChild(img);
    })));
    return {status: response.status, widths};
  } catch (err) {
    return {error: String(err)};
  }
})();
</script></body></html>"""


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def run_page(url: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            result: dict[str, Any] = page.evaluate("window.result")
            return result
        finally:
            browser.close()


def test_vendor_page_signs_with_bearer_and_shows_images_only_on_allowed_origin(
    tmp_path: Path, idp: Idp, idp_key: SigningKey, gateway_server: Callable[..., RunningGateway]
) -> None:
    need(Path(CHROMIUM).exists(), "Debian chromium is not installed (apt-get install chromium)")
    root = tmp_path / "objects"
    root.mkdir()
    (root / "a.png").write_bytes(png(3, 2))
    (root / "b.png").write_bytes(png(5, 4))
    now = int(time.time())
    token = idp_key.sign({"iss": idp.issuer, "aud": "api://default", "sub": "00u1ada", "groups": ["ml-team"],
                          "iat": now, "exp": now + 600})
    page = {"html": ""}
    with page_server(lambda: page["html"]) as allowed, page_server(lambda: page["html"]) as refused:
        config = tmp_path / "policy.yaml"
        config.write_text(
            f"version: 1\ncors: {{allow_origins: ['{allowed}']}}\n"
            f"auth:\n  oidc:\n    - {{name: okta, issuer: '{idp.issuer}', audience: 'api://default'}}\n"
            f"datasets:\n  team:\n    backend: {{kind: local, path: '{root}'}}\n"
            "    rules: [{name: ml-team, groups: [ml-team], issuers: [okta]}]\n"
        )
        gw = gateway_server(config=config)
        page["html"] = PAGE.replace("GATEWAY", repr(gw.url)).replace("TOKEN", repr(token))
        good = run_page(allowed + "/")
        bad = run_page(refused + "/")
    assert good == {"status": 200, "widths": [3, 5]}
    assert "error" in bad and "Failed to fetch" in bad["error"]
