"""The browser matrix: which loader reads an object through the gateway, per auth mode and delivery.

One definition serves the test (tests/browsers/test_matrix.py, which asserts every cell against
``EXPECTED``) and the documentation (docs/browsers.md, whose tables ``render`` writes from a run):

    scripts/browser-matrix          # runs the matrix in the three browsers, rewrites docs/browsers.md

Rows are an auth mode and a delivery, each a dataset of its own; columns are the loaders vendors'
pages use. A cell is True when the loader got the right bytes (or pixel) in that browser.
"""

from __future__ import annotations

import json
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

AUTHS = ("network", "bearer", "session", "capability")
DELIVERIES = ("local", "s3-any", "s3-vendor", "proxy", "auto", "auto-local")
LOADERS = ("img", "canvas-anonymous", "canvas-credentials", "fetch", "fetch-credentials", "range", "bearer", "gltf")
APPLICABLE: dict[str, tuple[str, ...]] = {
    "network": LOADERS,
    "bearer": ("bearer",),  # a token travels only in a header: the one loader that sets one
    "session": tuple(loader for loader in LOADERS if loader != "bearer"),
    "capability": LOADERS,
}
AUTH_TEXT = {
    "network": "allowed network",
    "bearer": "`Authorization: Bearer` (OIDC JWT)",
    "session": "browser session cookie",
    "capability": "capability (`/v1/sdk/gateway.js`)",
}
DELIVERY_TEXT = {
    "local": "redirect to `/v1/local`",
    "s3-any": "redirect to S3, bucket CORS `*`",
    "s3-vendor": "redirect to S3, bucket CORS = vendor origin",
    "proxy": "`delivery: proxy`",
    "auto": "`delivery: auto` (S3, CORS = vendor origin)",
    "auto-local": "`delivery: auto` (local files)",
}
LOADER_TEXT = {
    "img": "`<img>`",
    "canvas-anonymous": "`<img crossorigin=anonymous>` + canvas",
    "canvas-credentials": "`<img crossorigin=use-credentials>` + canvas",
    "fetch": "`fetch(url)`",
    "fetch-credentials": "`fetch(url, {credentials: \"include\"})`",
    "range": "`fetch` + `Range`",
    "bearer": "`fetch` + `Authorization: Bearer`",
    "gltf": "`.gltf` + relative `.bin` + texture",
}
BROWSERS = ("chromium", "firefox", "webkit")


def dataset(auth: str, delivery: str) -> str:
    return f"{auth}-{delivery}"


def png(width: int, height: int, rgba: tuple[int, int, int, int]) -> bytes:
    """A PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgba) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


CLOUD = b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\n" + bytes(range(256))  # a point cloud's first bytes
BUFFER = bytes(range(255, -1, -1)) * 2  # a glTF's external buffer
GLTF = json.dumps({  # what three.js GLTFLoader resolves: buffer and image URIs relative to the .gltf
    "asset": {"version": "2.0"},
    "buffers": [{"uri": "model.bin", "byteLength": len(BUFFER)}],
    "images": [{"uri": "textures/albedo.png"}],
}).encode()
OBJECTS = {
    "tiny.png": png(2, 2, (255, 0, 0, 255)),
    "cloud.pcd": CLOUD,
    "scene/model.gltf": GLTF,
    "scene/model.bin": BUFFER,
    "scene/textures/albedo.png": png(1, 1, (0, 255, 0, 255)),
}

# The vendor page's loaders: each takes url(key) (plain or capability URL) and the bearer token and
# resolves to {ok, detail, exposed} ("exposed": the page's JavaScript saw a storage URL).
PAGE_SCRIPT = """
const RED = [255, 0, 0, 255], GREEN = [0, 255, 0, 255];
const CLOUD = %(cloud)s, BUFFER = %(buffer)s;
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const load = (src, cors) => new Promise((resolve) => {
  const img = new Image();
  if (cors) img.crossOrigin = cors;
  img.onload = () => resolve(img); img.onerror = () => resolve(null); img.src = src;
});
const pixel = (img) => {
  if (!img) return 'not loaded';
  const canvas = document.createElement('canvas'); canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d'); context.drawImage(img, 0, 0);
  try { return Array.from(context.getImageData(0, 0, 1, 1).data); } catch (e) { return e.name; }
};
const bytesOf = async (r) => Array.from(new Uint8Array(await r.arrayBuffer()));
const exposed = (r) => r.url !== '' && new URL(r.url).origin !== GW;
const read = async (request, expected, status = 200) => {
  const r = await request;
  const body = await bytesOf(r);
  return {ok: r.status === status && same(body, expected), detail: r.status, exposed: exposed(r)};
};
const LOADERS = {
  img: async (url) => { const i = await load(url('tiny.png')); return {ok: i !== null && i.naturalWidth === 2}; },
  'canvas-anonymous': async (url) => {
    const p = pixel(await load(url('tiny.png'), 'anonymous'));
    return {ok: same(p, RED), detail: p};
  },
  'canvas-credentials': async (url) => {
    const p = pixel(await load(url('tiny.png'), 'use-credentials'));
    return {ok: same(p, RED), detail: p};
  },
  fetch: (url) => read(fetch(url('cloud.pcd')), CLOUD),
  'fetch-credentials': (url) => read(fetch(url('cloud.pcd'), {credentials: 'include'}), CLOUD),
  range: (url) => read(fetch(url('cloud.pcd'), {headers: {Range: 'bytes=10-19'}}), CLOUD.slice(10, 20), 206),
  bearer: (url, plain, token) => read(fetch(plain('cloud.pcd'), {headers: {Authorization: 'Bearer ' + token}}), CLOUD),
  gltf: async (url) => {
    const base = url('scene/model.gltf');
    const r = await fetch(base);
    const gltf = await r.json();
    const buffer = await read(fetch(new URL(gltf.buffers[0].uri, base).href), BUFFER);
    const texture = pixel(await load(new URL(gltf.images[0].uri, base).href, 'anonymous'));
    return {ok: buffer.ok && same(texture, GREEN), detail: [r.status, buffer.detail, texture],
            exposed: exposed(r) || buffer.exposed};
  },
};
window.plainUrl = (dataset) => (key) => `${GW}/v1/datasets/${dataset}/objects/${key}`;
window.runRow = async (dataset, loaders, token, capability) => {
  const plain = window.plainUrl(dataset);
  const url = capability ? (key) => window.connection.url(dataset, key) : plain;
  const results = {};
  for (const name of loaders) {
    try { results[name] = await LOADERS[name](url, plain, token); }
    catch (e) { results[name] = {ok: false, detail: e.name + ': ' + e.message}; }
  }
  return results;
};
"""


def page_script(gateway: str) -> str:
    return f"const GW = {json.dumps(gateway)};" + PAGE_SCRIPT % {
        "cloud": json.dumps(list(CLOUD)), "buffer": json.dumps(list(BUFFER))}


# ---------------------------------------------------------------------------------------------------
# What each browser does, with default settings. Every cell is asserted by the test; a browser that
# changes shows up as a failure naming the cell. Why each cell fails is in docs/browsers.md.

ALL = frozenset(LOADERS)
_CORS_MODE = frozenset({"canvas-anonymous", "canvas-credentials", "fetch", "fetch-credentials", "range", "gltf"})


def _expected() -> dict[str, dict[str, frozenset[str]]]:
    common: dict[str, frozenset[str]] = {}
    for delivery in DELIVERIES:
        common[dataset("network", delivery)] = ALL
        common[dataset("capability", delivery)] = ALL
        common[dataset("bearer", delivery)] = frozenset({"bearer"})
    # After a cross-origin redirect the storage sees "Origin: null": a bucket that names the vendor's
    # origin fails every CORS-mode loader; a "*" bucket fails only the credentialed ones.
    common[dataset("network", "s3-any")] = ALL - {"canvas-credentials", "fetch-credentials"}
    common[dataset("network", "s3-vendor")] = ALL - _CORS_MODE - {"bearer"}
    common[dataset("capability", "s3-any")] = ALL - {"canvas-credentials", "fetch-credentials"}
    common[dataset("capability", "s3-vendor")] = ALL - _CORS_MODE - {"bearer"}
    common[dataset("bearer", "s3-vendor")] = frozenset()
    # The session cookie is a third-party cookie on the vendor's page. Chromium (blocked by default
    # in Debian's build) and Firefox (Total Cookie Protection) never send it; WebKitGTK does, with
    # the three loaders that send credentials at all, and after a redirect to the storage only
    # <img> survives (credentialed CORS with "Origin: null" fails).
    no_cookie = {dataset("session", delivery): frozenset() for delivery in DELIVERIES}
    credentialed = frozenset({"img", "canvas-credentials", "fetch-credentials"})
    webkit = {dataset("session", delivery): credentialed for delivery in ("local", "proxy", "auto", "auto-local")}
    webkit |= {dataset("session", delivery): frozenset({"img"}) for delivery in ("s3-any", "s3-vendor")}
    return {
        "chromium": {**common, **no_cookie},
        "firefox": {**common, **no_cookie},
        "webkit": {**common, **webkit},
    }


EXPECTED = _expected()


# ---------------------------------------------------------------------------------------------------
# docs/browsers.md: the tables between the markers are written by ``render`` from a run.

START, END = "<!-- browser-matrix:start (scripts/browser-matrix writes this part) -->", "<!-- browser-matrix:end -->"


def render(cells: dict[str, dict[str, dict[str, bool]]], versions: dict[str, str]) -> str:
    """The markdown tables of a run: ``cells[browser][dataset][loader]``."""
    lines = [START, "", "Measured by `scripts/browser-matrix` in " +
             ", ".join(f"{name} {versions.get(name, '?')}" for name in BROWSERS) +
             ", default profiles. ✅ loads, ❌ does not, · not applicable.", ""]
    lines += ["| auth / delivery | " + " | ".join(BROWSERS) + " |", "|---|" + "---|" * len(BROWSERS)]
    for auth in AUTHS:
        for delivery in DELIVERIES:
            name = dataset(auth, delivery)
            counts = [f"{sum(cells[b][name].values())}/{len(APPLICABLE[auth])}" for b in BROWSERS]
            lines.append(f"| {AUTH_TEXT[auth]}, {DELIVERY_TEXT[delivery]} | " + " | ".join(counts) + " |")
    for browser in BROWSERS:
        lines += ["", f"#### {browser} {versions.get(browser, '')}".rstrip(), "",
                  "| auth | delivery | " + " | ".join(LOADER_TEXT[loader] for loader in LOADERS) + " |",
                  "|---|---|" + "---|" * len(LOADERS)]
        for auth in AUTHS:
            for delivery in DELIVERIES:
                row = cells[browser][dataset(auth, delivery)]
                marks = ["·" if loader not in APPLICABLE[auth] else ("✅" if row[loader] else "❌")
                         for loader in LOADERS]
                lines.append(f"| {auth} | {delivery} | " + " | ".join(marks) + " |")
    return "\n".join([*lines, "", END])


def expected_cells(browser: str) -> dict[str, dict[str, bool]]:
    return {dataset(a, d): {loader: loader in EXPECTED[browser][dataset(a, d)] for loader in APPLICABLE[a]}
            for a in AUTHS for d in DELIVERIES}


def tables_of(markdown: str) -> str:
    """The generated part of docs/browsers.md without its versions line (compared with ``EXPECTED``)."""
    match = re.search(re.escape(START) + r"(.*?)" + re.escape(END), markdown, re.DOTALL)
    if match is None:
        raise ValueError(f"no generated matrix between {START!r} and {END!r}")
    return "\n".join(line for line in match.group(1).splitlines()
                     if not line.startswith("Measured by") and not line.startswith("#### "))


def rewrite(doc: Path, report: Path) -> None:
    """Replace the generated part of ``doc`` with the tables of the run in ``report`` (JSON lines)."""
    cells: dict[str, dict[str, dict[str, bool]]] = {}
    versions: dict[str, str] = {}
    for line in report.read_text().splitlines():
        entry: dict[str, Any] = json.loads(line)
        versions[entry["browser"]] = entry["version"]
        cells.setdefault(entry["browser"], {})[entry["dataset"]] = {k: bool(v) for k, v in entry["cells"].items()}
    missing = [f"{b}/{dataset(a, d)}" for b in BROWSERS for a in AUTHS for d in DELIVERIES
               if dataset(a, d) not in cells.get(b, {})]
    if missing:
        raise SystemExit(f"the run in {report} lacks {len(missing)} rows (first: {missing[0]}); was it complete?")
    text = doc.read_text()
    start, end = text.index(START), text.index(END) + len(END)
    doc.write_text(text[:start] + render(cells, versions) + text[end:])


if __name__ == "__main__":  # python -m tests.browsers.matrix REPORT.jsonl docs/browsers.md
    rewrite(Path(sys.argv[2]), Path(sys.argv[1]))
