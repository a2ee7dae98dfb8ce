"""Helpers for the browser sign-in tests: policies, a gateway with sign-in, and a sign-in driven
over HTTP through oidc-provider's real login form (httpx, so each step can be tampered with)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from gateway.app import GatewayApp, create_app
from gateway.settings import Settings
from tests.support import RunningGateway, serve_app, serving

CLIENT_ID = "gateway"
CLIENT_SECRET = "gateway-client-secret-for-the-tests-0123456789"
SECRET_ENV = "GW_TEST_OKTA_CLIENT_SECRET"
VENDOR_KEY = "vendorco-k1"
VENDOR_SECRET = "vendor-secret-for-the-sign-in-tests-0123"
ACCOUNTS = {
    "ada": {"email": "ada@acme.test", "groups": ["ml-team", "staff"]},
    "bob": {"email": "bob@acme.test", "groups": ["staff"]},
    "many": {"email": "many@acme.test", "groups": [f"group-{i:04d}-with-a-long-name" for i in range(150)]},
}


def session_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Jar:
    """The gateway's cookies, kept by hand: httpx (like http.cookiejar) never sends a Secure
    cookie over http, and the tests' gateway is http on loopback (which browsers do treat as secure)."""

    values: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)

    def take(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookies.append(header)
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower():
                self.values.pop(name, None)
            else:
                self.values[name] = value

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.values.items())} if self.values else {}

    @property
    def session(self) -> str | None:
        return self.values.get("__Host-gateway_session")

    def tx(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if k.startswith("__Host-gateway_tx_")}


def write_policy(path: Path, data: Path, issuer: str, *, embedders: list[str] | None = None,
                 return_origins: list[str] | None = None, session_ttl: str = "1h", idle_ttl: str = "30m",
                 extra_issuers: str = "", audit: Path | None = None) -> Path:
    embedders = embedders or []
    sink = f"audit:\n  sinks: [{{kind: file, path: {json.dumps(str(audit))}}}]\n" if audit else ""
    path.write_text(f"""version: 1
{sink}auth:
  vendors:
    - name: vendorco
      keys: [{{id: {VENDOR_KEY}, secret_env: GW_TEST_VENDOR_SECRET}}]
  oidc:
    - name: corp
      issuer: {json.dumps(issuer)}
      audience: api://gateway
      browser:
        client_id: {CLIENT_ID}
        client_secret_env: {SECRET_ENV}
        session_ttl: {session_ttl}
        idle_ttl: {idle_ttl}
        embedders: {json.dumps(embedders)}
        return_origins: {json.dumps(return_origins if return_origins is not None else embedders)}
{extra_issuers}datasets:
  ml:
    backend: {{kind: local, path: {json.dumps(str(data))}}}
    rules:
      - {{name: ml-team, issuers: [corp], groups: [ml-team]}}
  staff:
    backend: {{kind: local, path: {json.dumps(str(data))}}}
    rules:
      - {{name: staff, groups: [staff]}}
  open:
    backend: {{kind: local, path: {json.dumps(str(data))}}}
    rules:
      - {{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}
""")
    return path


class MovableClock:
    """Real time plus an offset that a test may move (and the fixture puts back)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset



def with_proxy_dataset(policy: Path, s3_store: str, *, bucket: str, prefix: str) -> Path:
    """Add the dataset ``vault`` to a sign-in policy: ``delivery: proxy`` from the S3 server at
    ``s3_store``, readable by the ``ml-team`` group of the issuer ``corp``."""
    policy.write_text(policy.read_text() + f"""  vault:
    delivery: proxy
    backend: {{kind: s3, bucket: {bucket}, prefix: {prefix}, endpoint_url: {json.dumps(s3_store)},
              addressing_style: path}}
    rules:
      - {{name: ml-team, issuers: [corp], groups: [ml-team]}}
""")
    return policy

def gateway_app(port: int, policy: Path, *, keys: list[str], redis_url: str | None = None,
                clock: Callable[[], float] = time.time, **settings: Any) -> GatewayApp:
    return create_app(Settings(port=port, config=policy, public_url=f"http://127.0.0.1:{port}",
                               session_keys=",".join(keys), signing_key="s" * 32, redis_url=redis_url, **settings),
                      environ={SECRET_ENV: CLIENT_SECRET, "GW_TEST_VENDOR_SECRET": VENDOR_SECRET}, clock=clock)


@contextlib.contextmanager
def running_gateway(port: int, policy: Path, *, keys: list[str], **settings: Any) -> Iterator[RunningGateway]:
    with serve_app(gateway_app(port, policy, keys=keys, **settings), port) as gw:
        yield gw


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)


def idp_login(authorize_url: str, login: str, idp: httpx.Client | None = None) -> str:
    """Follow the issuer's pages like a browser, fill in its login form, and return the URL it
    sends the browser back to (the gateway's callback with code, state and iss)."""
    owned = idp is None
    client = idp or httpx.Client(timeout=10)
    try:
        url = authorize_url
        for _ in range(10):
            response = client.get(url, follow_redirects=False)
            if response.status_code in (302, 303):
                url = urljoin(url, response.headers["location"])
                if "/v1/auth/callback" in url:
                    return url
                continue
            match = _FORM.search(response.text)
            assert match, (response.status_code, response.text[:500])
            submitted = client.post(urljoin(url, match.group(1)), data={"prompt": "login", "login": login,
                                                                          "password": "any"})
            assert submitted.status_code in (302, 303), submitted.text[:500]
            url = urljoin(url, submitted.headers["location"])
            if "/v1/auth/callback" in url:
                return url
        raise AssertionError(f"the issuer never sent the browser back (last URL {url})")
    finally:
        if owned:
            client.close()


def start_login(gw: str, jar: Jar, *, return_to: str | None = None, headers: dict[str, str] | None = None
                ) -> httpx.Response:
    params = {"return_to": return_to} if return_to else {}
    response = httpx.get(f"{gw}/v1/auth/login", params=params, headers={**jar.header(), **(headers or {})},
                         follow_redirects=False)
    jar.take(response)
    return response


def callback(gw: str, callback_url: str, jar: Jar, *, headers: dict[str, str] | None = None) -> httpx.Response:
    parts = urlsplit(callback_url)
    response = httpx.get(f"{gw}{parts.path}?{parts.query}", headers={**jar.header(), **(headers or {})},
                         follow_redirects=False)
    jar.take(response)
    return response


def sign_in(gw: str, login: str = "ada", jar: Jar | None = None, *, return_to: str | None = None) -> Jar:
    """A whole sign-in over HTTP; returns the browser's cookies (the session among them)."""
    jar = jar or Jar()
    started = start_login(gw, jar, return_to=return_to)
    assert started.status_code == 302, started.text
    done = callback(gw, idp_login(started.headers["location"], login), jar)
    assert done.status_code == 303, done.text
    assert jar.session, jar.set_cookies
    return jar


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@contextlib.contextmanager
def html_site(host: str, pages: dict[str, str], *, name: str | None = None) -> Iterator[str]:
    """Serve fixed HTML pages (by path) on ``host`` and a free port; yields the origin, named
    ``name`` when given (``localhost`` for a server on 127.0.0.1: another site for the browser)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = pages.get(self.path.split("?")[0], "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    with serving(Handler, host, name=name) as origin:
        yield origin
