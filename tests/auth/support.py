"""Helpers for the auth tests: real keys, a real identity provider on a local socket, clocks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt

from gateway.auth.oidc import OidcAuthenticator
from gateway.config import OidcIssuer

NOW = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self, *, declare_alg: bool = True) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = jwt.algorithms.RSAAlgorithm if self.alg[:2] in {"RS", "PS"} else jwt.algorithms.ECAlgorithm
        data: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        data.update(kid=self.kid, use="sig")
        if declare_alg:
            data["alg"] = self.alg
        return data

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None, alg: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers={"kid": self.kid, **(headers or {})})


@dataclass
class Idp:
    """A real HTTP identity provider: discovery and JWKS, with keys and availability under test control."""

    base: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    discovery_issuer: str | None = None  # what discovery claims; defaults to ``base``
    delay: float = 0.0  # seconds every answer takes (a slow identity provider)
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return self.base

    def serve(self, path: str) -> tuple[int, bytes]:
        path = path.removeprefix("/oauth2/default")  # Okta's custom authorization server layout
        with self.lock:
            self.hits[path] += 1
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            return 503, b"down"
        if path == "/.well-known/openid-configuration":
            doc = {"issuer": self.discovery_issuer or self.base, "jwks_uri": self.base + "/v1/keys"}
            return 200, json.dumps(doc).encode()
        if path == "/v1/keys":
            return 200, json.dumps({"keys": self.keys}).encode()
        return 404, b"{}"


@contextmanager
def running_idp() -> Iterator[Idp]:
    """Serve discovery and JWKS on 127.0.0.1 (a free port) from a thread, for the block's duration."""
    state = Idp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, body = state.serve(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}/oauth2/default"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def issuer_config(idp: Idp, **overrides: Any) -> OidcIssuer:
    values: dict[str, Any] = {
        "name": "okta",
        "issuer": idp.issuer,
        "audience": "api://default",
        "algorithms": ["RS256", "ES256"],
        "jwks_cache_ttl": 3600,
        "jwks_refetch_interval": 30,
        "leeway": 60,
    }
    values.update(overrides)
    return OidcIssuer.model_validate(values)


@asynccontextmanager
async def oidc_authenticator(
    issuers: list[OidcIssuer], wall: FakeClock, mono: FakeClock, **kwargs: Any
) -> AsyncIterator[OidcAuthenticator]:
    async with httpx.AsyncClient() as http:
        yield OidcAuthenticator(issuers, http=http, clock=wall, monotonic=mono, **kwargs)


def claims_for(idp: Idp, wall: Callable[[], float], **overrides: Any) -> dict[str, Any]:
    now = int(wall())
    claims: dict[str, Any] = {
        "iss": idp.issuer,
        "aud": "api://default",
        "sub": "ada@example.com",
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}
