"""Helpers for the auth tests: real keys, a real identity provider on a local socket, clocks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt

from gateway.auth.oidc import OidcAuthenticator
from gateway.config import OidcIssuer
from tests.support import serving

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


@dataclass(frozen=True)
class Canned:
    """One answer to one path, replacing the identity provider's own (a misbehaving issuer)."""

    status: int
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Idp:
    """A real HTTP identity provider: discovery, JWKS and a token endpoint, with keys, answers and
    availability under test control."""

    base: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    discovery_issuer: str | None = None  # what discovery claims; defaults to ``base``
    delay: float = 0.0  # seconds every answer takes (a slow identity provider)
    token_answer: tuple[int, dict[str, Any]] = (400, {"error": "invalid_grant"})
    canned: dict[str, Canned] = field(default_factory=dict)  # by path (below the issuer), instead of the above
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issuer(self) -> str:
        return self.base

    def serve(self, path: str, form: bytes | None = None) -> Canned:
        path = path.removeprefix("/oauth2/default")  # Okta's custom authorization server layout
        with self.lock:
            self.hits[path] += 1
            if form is not None:
                self.token_requests.append(parse_qs(form.decode()))
        if self.delay:
            time.sleep(self.delay)
        if path in self.canned:
            time.sleep(self.canned[path].delay)
            return self.canned[path]
        if self.down:
            return Canned(503, b"down")
        if path == "/.well-known/openid-configuration":
            doc = {"issuer": self.discovery_issuer or self.base, "jwks_uri": self.base + "/v1/keys",
                   "authorization_endpoint": self.base + "/v1/authorize", "token_endpoint": self.base + "/v1/token",
                   "code_challenge_methods_supported": ["S256"]}
            return Canned(200, json.dumps(doc).encode())
        if path == "/v1/keys":
            return Canned(200, json.dumps({"keys": self.keys}).encode())
        if path == "/v1/token" and form is not None:
            return Canned(self.token_answer[0], json.dumps(self.token_answer[1]).encode())
        return Canned(404)



@contextmanager
def running_idp() -> Iterator[Idp]:
    """Serve the identity provider on 127.0.0.1 (a free port), for the block's duration."""
    state = Idp()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(state.serve(self.path))

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(state.serve(self.path, self.rfile.read(length)))

        def _answer(self, canned: Canned) -> None:
            self.send_response(canned.status)
            headers = {"Content-Type": "application/json", "Content-Length": str(len(canned.body)), **canned.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            with suppress(ConnectionError):  # a client that stopped reading (a body over its limit)
                self.wfile.write(canned.body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    with serving(Handler) as url:
        state.base = url + "/oauth2/default"
        yield state


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
