"""A rogue identity provider on loopback: discovery, JWKS, an authorization endpoint that sends the
browser straight back, and a token endpoint that answers whatever ID token the test forges.

oidc-provider never signs a bad token, so the forged-token cases need an issuer that lies. It is a
real HTTP server, and the gateway talks to it exactly as it talks to Okta."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import serving

Forge = Callable[["Rogue", str], str]  # (the IdP, the nonce the gateway sent) -> the ID token


@dataclass
class Rogue:
    issuer: str = ""
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                   key_size=2048))
    kid: str = "rogue-1"
    forge: Forge | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # overrides of the discovery document
    nonces: dict[str, str] = field(default_factory=dict)  # code -> nonce
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    jwks_fetches: int = 0

    def claims(self, sent_nonce: str, /, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": "gateway", "sub": "mallory", "email": "m@acme.test",
                                  "groups": ["ml-team"], "iat": now, "exp": now + 300, "nonce": sent_nonce}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token", "jwks_uri": self.issuer + "/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
                "code_challenge_methods_supported": ["S256"], "authorization_response_iss_parameter_supported": True,
                **self.metadata}


@contextlib.contextmanager
def running_rogue(host: str = "127.0.0.4") -> Iterator[Rogue]:
    rogue = Rogue()
    counter = iter(range(1, 1_000_000))

    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            if parts.path == "/.well-known/openid-configuration":
                return self._json(200, rogue.discovery())
            if parts.path == "/jwks":
                rogue.jwks_fetches += 1
                return self._json(200, rogue.jwks())
            if parts.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                code = f"code-{next(counter)}"
                rogue.nonces[code] = query["nonce"]
                back = urlencode({"code": code, "state": query["state"], "iss": rogue.issuer})
                self.send_response(302)
                self.send_header("Location", f"{query['redirect_uri']}?{back}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._json(404, {})

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
            rogue.token_requests.append(body)
            nonce = rogue.nonces.get(body.get("code", [""])[0], "")
            assert rogue.forge is not None
            return self._json(200, {"access_token": "opaque-access-token", "token_type": "Bearer",
                                    "id_token": rogue.forge(rogue, nonce)})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    with serving(Handler, host) as issuer:
        rogue.issuer = issuer
        yield rogue
