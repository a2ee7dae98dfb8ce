"""The browser matrix (docs/browsers.md): every loader vendors' pages use, in Chromium, Firefox and
WebKit with default settings, against every auth mode and delivery.

Three HTTPS sites, as in production: the vendor's page (``https://localhost``), the gateway
(``https://127.0.0.1``) and the storage (s3rver, ``https://127.0.0.3``, buckets with CORS ``*`` and
with the vendor's origin); the company's identity provider is oidc-provider. Each browser signs in
for real: the vendor page calls ``connect()`` from ``/v1/sdk/gateway.js`` on a click, the popup runs
the sign-in form and hands the page a capability. Every cell is asserted against
``tests.browsers.matrix.EXPECTED``, so a cell that breaks, or a browser that changes (third-party
cookies), fails here by name. ``GATEWAY_BROWSER_MATRIX=FILE`` also writes the measured cells to FILE
(JSON lines), which ``scripts/browser-matrix`` turns into docs/browsers.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.app import create_app
from gateway.settings import Settings
from tests.auth.support import SigningKey, running_idp
from tests.browsers.gateway import serve_https
from tests.browsers.harness import Browser, BrowserError, Page
from tests.browsers.matrix import (
    APPLICABLE,
    AUTHS,
    DELIVERIES,
    EXPECTED,
    OBJECTS,
    dataset,
    page_script,
)
from tests.browsers.sites import Request, Response, Site, https_site, page
from tests.browsers.storage import running_storage, storage_client
from tests.browsers.tls import TestCA
from tests.oidc.harness import running_provider
from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY
from tests.signin.support import ACCOUNTS, CLIENT_ID, CLIENT_SECRET, SECRET_ENV, session_key
from tests.support import free_port

pytestmark = pytest.mark.browser
REPORT = os.environ.get("GATEWAY_BROWSER_MATRIX")


@dataclass
class World:
    gateway: str
    vendor: Site
    storage: str
    token: str  # an OIDC access token (JWT) of ada, ml-team, from the API issuer
    audit: Path


def _backend(delivery: str, data: Path, storage: str, ca: TestCA) -> str:
    if delivery in ("local", "auto-local"):
        return f"{{kind: local, path: {json.dumps(str(data))}}}"
    bucket = "open" if delivery == "s3-any" else "vendor"
    return (f"{{kind: s3, bucket: {bucket}, endpoint_url: {json.dumps(storage)}, addressing_style: path, "
            f"ca_bundle: {json.dumps(str(ca.cert))}}}")


_DELIVERY = {"local": "redirect", "s3-any": "redirect", "s3-vendor": "redirect", "proxy": "proxy", "auto": "auto",
             "auto-local": "auto"}


def _policy(path: Path, *, data: Path, storage: str, ca: TestCA, issuer: str, api: str, vendor: str,
            audit: Path) -> Path:
    rules = {
        "network": "{name: office, anonymous: true, networks: [127.0.0.0/8]}",
        "bearer": "{name: api, issuers: [okta], groups: [ml-team]}",
        "session": "{name: corp, issuers: [corp], groups: [ml-team]}",
        "capability": "{name: corp, issuers: [corp], groups: [ml-team]}",
    }
    datasets = "".join(
        f"  {dataset(auth, delivery)}:\n"
        f"    delivery: {_DELIVERY[delivery]}\n"
        f"    backend: {_backend(delivery, data, storage, ca)}\n"
        f"    rules: [{rules[auth]}]\n"
        for auth in AUTHS for delivery in DELIVERIES)
    path.write_text(f"""version: 1
audit:
  sinks: [{{kind: file, path: {json.dumps(str(audit))}}}]
auth:
  oidc:
    - name: corp
      issuer: {json.dumps(issuer)}
      audience: api://gateway
      browser:
        client_id: {CLIENT_ID}
        client_secret_env: {SECRET_ENV}
        embedders: [{json.dumps(vendor)}]
        return_origins: [{json.dumps(vendor)}]
    - name: okta
      issuer: {json.dumps(api)}
      audience: api://gateway
datasets:
{datasets}""")
    return path


@pytest.fixture(scope="module")
def world(ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    data = root / "data"
    for key, body in OBJECTS.items():
        (data / key).parent.mkdir(parents=True, exist_ok=True)
        (data / key).write_bytes(body)
    port = free_port()
    gateway = f"https://127.0.0.1:{port}"
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{gateway}/v1/auth/callback"], "post_logout_redirect_uris": [f"{gateway}/v1/auth/"],
                "response_types": ["code"], "grant_types": ["authorization_code"]}]
    key = SigningKey("api-1", "ES256", ec.generate_private_key(ec.SECP256R1()))
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                            ("AWS_EC2_METADATA_DISABLED", "true")):  # what boto3's chain finds, as on a pod
            env.setenv(name, value)
        vendor = stack.enter_context(https_site(ca, "localhost"))
        provider = stack.enter_context(running_provider(free_port(), clients, ACCOUNTS))
        api = stack.enter_context(running_idp())
        api.keys = [key.jwk()]
        storage = stack.enter_context(running_storage(ca, "127.0.0.3", {"open": ["*"], "vendor": [vendor.origin]}))
        s3 = storage_client(storage, ca)
        for bucket in ("open", "vendor"):
            for name, body in OBJECTS.items():
                s3.put_object(Bucket=bucket, Key=name, Body=body)
        audit = root / "audit.jsonl"
        policy = _policy(root / "policy.yaml", data=data, storage=storage, ca=ca, issuer=provider.issuer,
                         api=api.issuer, vendor=vendor.origin, audit=audit)
        app = create_app(Settings(port=port, config=policy, public_url=gateway, session_keys=session_key(),
                                  signing_key="m" * 32, cors_origins=[vendor.origin]),
                         environ={SECRET_ENV: CLIENT_SECRET})
        stack.enter_context(serve_https(app, port, ca.issue("127.0.0.1")))
        now = int(time.time())
        token = key.sign({"iss": api.issuer, "aud": "api://gateway", "sub": "ada", "email": "ada@acme.test",
                          "groups": ["ml-team"], "iat": now, "exp": now + 3600, "jti": uuid.uuid4().hex})
        capabilities = [dataset("capability", d) for d in DELIVERIES]
        vendor.routes["/matrix.html"] = page(vendor_page(gateway, capabilities))
        for folder, header in (("/sw/", False), ("/sw-header/", True)):
            vendor.routes[folder + "index.html"] = page(vendor_page(gateway, capabilities, worker=True))
            vendor.routes[folder + "worker.js"] = _script(WORKER % (gateway, gateway, str(header).lower()))
        yield World(gateway, vendor, storage, token, audit)


# A vendor's service worker: the SDK's helper, plus taking over the page at once (as vendors do).
WORKER = """import { gatewayServiceWorker } from '%s/v1/sdk/gateway.js';
gatewayServiceWorker({ gateway: '%s', header: %s });
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
"""
# The page's side: register the worker (a new version on demand) and wait until it controls the page.
REGISTER = """
window.registerWorker = async (version) => {
  const workers = navigator.serviceWorker;
  const changed = new Promise((resolve) => workers.addEventListener('controllerchange', resolve, {once: true}));
  const registration = await navigator.serviceWorker.register('worker.js?v=' + version, {type: 'module'});
  const timeout = new Promise((resolve) => setTimeout(() => resolve('timeout'), 10000));
  if (!navigator.serviceWorker.controller || version > 1) {
    if (await Promise.race([changed, timeout]) === 'timeout') {
      const states = ['installing', 'waiting', 'active'].map(
        (k) => k + '=' + (registration[k] ? registration[k].scriptURL + ':' + registration[k].state : '-'));
      return 'timeout ' + states.join(' ') + ' controller=' + (navigator.serviceWorker.controller || {}).scriptURL;
    }
  }
  return navigator.serviceWorker.controller.scriptURL;
};
await window.registerWorker(1);
"""


def vendor_page(gateway: str, datasets: list[str], *, worker: bool = False) -> str:
    """The vendor's page: the loaders, and connect() from the gateway's module on a click (shared
    with the page's service worker when ``worker``)."""
    share = "await c.shareWith(navigator.serviceWorker.controller); " if worker else ""
    return ("<!doctype html><meta charset=utf-8><title>vendor</title><body><button id=connect>Connect</button>"
            f"<script type=module>import {{ connect }} from '{gateway}/v1/sdk/gateway.js';"
            + page_script(gateway) + (REGISTER if worker else "") +
            "document.getElementById('connect').onclick = () => connect({gateway: GW, datasets: "
            + json.dumps(datasets) + "}).then(async (c) => { window.connection = c; " + share +
            "window.__result = 'connected'; }, (e) => { window.__result = {error: String(e)}; });"
            "window.__ready = true;</script></body>")


def _script(text: str) -> Any:
    def route(_: Request) -> Response:
        return Response(200, {"Content-Type": "text/javascript", "Cache-Control": "no-store"}, text.encode())
    return route


def connect(tab: Page) -> None:
    """Click Connect; sign in in the popup if the gateway has no session yet; wait for the capability."""
    tab.click("#connect")
    with contextlib.suppress(TimeoutError):  # signed in already: the popup hands over and closes at once
        if tab.result(timeout=3) == "connected":
            return
    popup = tab.popup()
    popup.wait_for("document.querySelector('input[name=login]') !== null")
    _sign_in_in_popup(popup)
    assert tab.result(timeout=30) == "connected", tab.console()


def _sign_in_in_popup(popup: Page) -> None:
    """The identity provider's own login form, in the connect popup (no session at the gateway yet)."""
    popup.evaluate("(() => { document.querySelector('input[name=login]').value = 'ada';"
                   " document.querySelector('input[name=password]').value = 'any password'; return true; })()")
    popup.click("button[type=submit]")


@pytest.fixture(scope="module")
def measured(browser: Browser, world: World) -> dict[str, dict[str, Any]]:
    """Every row of the matrix in this browser: {dataset: {loader: {ok, detail, exposed}}}."""
    tab = browser.open(world.vendor.url("/matrix.html"))
    try:
        tab.wait_for("window.__ready === true")
        rows: dict[str, dict[str, Any]] = {}
        # Before any sign-in: the cookie mode and the other plain-URL rows.
        for auth in ("network", "bearer"):
            for delivery in DELIVERIES:
                name = dataset(auth, delivery)
                rows[name] = tab.evaluate(f"runRow({json.dumps(name)}, {json.dumps(APPLICABLE[auth])}, "
                                          f"{json.dumps(world.token)}, false)")
        # One click: the popup signs in at the identity provider and hands back a capability.
        connect(tab)
        # Signed in at the gateway (first party, in the popup): the session rows use that cookie.
        for delivery in DELIVERIES:
            name = dataset("session", delivery)
            rows[name] = tab.evaluate(f"runRow({json.dumps(name)}, {json.dumps(APPLICABLE['session'])}, '', false)")
            name = dataset("capability", delivery)
            rows[name] = tab.evaluate(f"runRow({json.dumps(name)}, {json.dumps(APPLICABLE['capability'])}, "
                                      "window.connection.capability, true)")
    finally:
        tab.close()
    if REPORT:
        with Path(REPORT).open("a") as out:
            for name, row in rows.items():
                out.write(json.dumps({"browser": browser.name, "version": browser.version, "dataset": name,
                                      "cells": {k: v["ok"] for k, v in row.items()}}) + "\n")
    return rows


@pytest.mark.parametrize("auth", AUTHS)
def test_matrix_row(browser: Browser, measured: dict[str, dict[str, Any]], auth: str) -> None:
    """Each auth mode's cells, per delivery, as pinned in EXPECTED (failures name the cell)."""
    wrong = []
    for delivery in DELIVERIES:
        name = dataset(auth, delivery)
        passed = {loader for loader, cell in measured[name].items() if cell["ok"]}
        expected = EXPECTED[browser.name][name]
        if passed != expected:
            wrong.append(f"{name}: now {sorted(passed)}, pinned {sorted(expected)}; "
                         f"{ {k: v.get('detail') for k, v in measured[name].items()} }")
    assert not wrong, "\n".join(wrong)


def test_no_storage_url_reaches_the_page(browser: Browser, measured: dict[str, dict[str, Any]]) -> None:
    """With proxy and auto delivery, and local redirects, a page's fetch never sees a storage URL."""
    for auth in AUTHS:
        for delivery in ("proxy", "auto", "auto-local", "local"):
            row = measured[dataset(auth, delivery)]
            assert not [name for name, cell in row.items() if cell.get("exposed")], (auth, delivery, row)


@pytest.mark.parametrize("folder", ["/sw/", "/sw-header/"])
def test_a_service_worker_carries_the_capability(browser: Browser, world: World,
                                                 measured: dict[str, dict[str, Any]], folder: str) -> None:
    """The SDK's worker helper: the page's loaders use plain gateway URLs, unchanged, and the worker
    adds the capability (in the path, or as a bearer header); a new worker version (as after the
    browser stopped and restarted it) asks the page for the capability by itself."""
    loaders = [loader for loader in APPLICABLE["capability"] if loader != "bearer"]
    name = dataset("capability", "auto")
    tab = browser.open(world.vendor.url(folder + "index.html"))
    try:
        tab.wait_for("window.__ready === true")
        before = tab.evaluate(f"runRow({json.dumps(name)}, {json.dumps(loaders)}, '', false)")
        # Not connected yet: the loaders that send no cookie are refused (WebKit's third-party cookie
        # still carries the session on the others, see EXPECTED).
        assert not [k for k in ("canvas-anonymous", "fetch", "range", "gltf") if before[k]["ok"]], before
        connect(tab)
        for round_ in ("shared", "asked"):
            row = tab.evaluate(f"runRow({json.dumps(name)}, {json.dumps(loaders)}, '', false)")
            assert {k: v["ok"] for k, v in row.items()} == dict.fromkeys(loaders, True), (round_, row, tab.console())
            if round_ == "shared":  # a fresh worker that was never given the capability
                assert tab.evaluate("window.registerWorker(2)") == world.vendor.url(folder + "worker.js?v=2")
    finally:
        with contextlib.suppress(BrowserError):  # a page whose worker hangs may not close in time
            tab.close()


def test_a_connection_renews_and_closes(browser: Browser, world: World, measured: dict[str, dict[str, Any]]) -> None:
    """renew() swaps the capability without a popup (the session lives); close() forgets it."""
    name = dataset("capability", "local")
    tab = browser.open(world.vendor.url("/matrix.html"))
    try:
        tab.wait_for("window.__ready === true")
        connect(tab)
        first = tab.evaluate("window.connection.capability")
        renewed = tab.evaluate("window.connection.renew().then((c) => c.capability, (e) => 'failed: ' + e)")
        assert renewed.startswith("gwc1.") and renewed != first
        row = tab.evaluate(f"runRow({json.dumps(name)}, ['fetch', 'gltf'], '', true)")
        assert all(cell["ok"] for cell in row.values()), row
        closed = tab.evaluate("(() => { window.connection.close();"
                              f" try {{ window.connection.url({json.dumps(name)}, 'tiny.png'); return 'open'; }}"
                              " catch (e) { return e.message; } })()")
        assert "closed" in closed
    finally:
        tab.close()


def test_auto_redirects_only_what_the_page_cannot_read(browser: Browser, world: World,
                                                       measured: dict[str, dict[str, Any]]) -> None:
    """``delivery: auto`` as the audit saw it: the plain ``<img>`` (``Sec-Fetch-Mode: no-cors``) was
    redirected to the storage, everything the page reads (canvas, fetch, Range, glTF) was streamed."""
    time.sleep(0.2)  # the audit writer drains its queue every 25 ms
    records = [json.loads(line) for line in world.audit.read_text().splitlines()]
    auto = [r for r in records if r.get("dataset") == dataset("network", "auto") and r.get("decision") == "allow"]
    redirected = {r["key"] for r in auto if r["action"] == "redirect"}
    streamed = {r["key"] for r in auto if r["action"] == "proxy"}
    assert redirected == {"tiny.png"}  # the <img> loader's only object
    assert streamed == set(OBJECTS)  # the canvases' tiny.png too
    for record in auto:  # never a credential or a storage URL in the record
        assert "X-Amz-Signature" not in json.dumps(record) and world.token not in json.dumps(record)
