"""What the gateway under test needs: an RSA signing key and its JWKS served by a local identity
provider, an Okta-style access token, a policy file, a fake GCS service account, a private
redis-server, and single-use vendor HMAC requests."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.procs import BenchError, Server, free_port

AUDIENCE = "api://default"
GROUP = "ml-team"
VENDOR = "bench-vendor"
VENDOR_KEY_ID = "bench-vendor-2026-01"
VENDOR_SECRET = "bench-vendor-secret-0123456789abcdef"  # fake, for the local benchmark only
AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key: signing needs no network
AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3_ENDPOINT = "http://127.0.0.1:9/"  # nothing listens there; presigning is local
S3_BUCKET = "acme-bench"
S3_PREFIX = "datasets/driving/"
S3_DATASET = "driving"
AUTO_DATASET = "driving-auto"  # the same objects, delivery: auto
# What a browser's <img> sends: delivery: auto redirects it, exactly as redirect delivery does.
IMG_FETCH_METADATA = {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image", "Sec-Fetch-Site": "cross-site"}
GCS_DATASET = "scans"
HOT_KEYS = [f"images/2024/cam_front/frame_{i:06d}.jpg" for i in range(200)]


def objects_path(dataset: str, key: str) -> str:
    return f"/v1/datasets/{dataset}/objects/{key}"


@dataclass
class Identity:
    """An RSA key, its JWK, and an Okta-style access token signed with it."""

    kid: str
    private_key: rsa.RSAPrivateKey
    jwk: dict[str, Any]

    @classmethod
    def create(cls) -> Identity:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = "bench-" + uuid.uuid4().hex[:8]
        jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.update(kid=kid, use="sig", alg="RS256")
        return cls(kid, key, jwk)

    def token(self, issuer: str, *, groups: list[str], lifetime: int = 4 * 3600, subject: str = "00u1benchuser",
              email: str = "ada@acme.example") -> str:
        now = int(time.time())
        claims = {
            "ver": 1, "iss": issuer, "aud": AUDIENCE, "sub": subject, "cid": "0oabenchclient",
            "uid": subject, "email": email, "scp": ["openid", "profile", "email"],
            "groups": groups, "iat": now, "nbf": now, "exp": now + lifetime, "jti": "AT." + uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    def user_token(self, issuer: str, user: int) -> str:
        """The token of employee number ``user``: a distinct subject and email, in the allowed group."""
        return self.token(issuer, groups=["everyone", GROUP], subject=f"00u{user:07d}emp",
                          email=f"employee{user}@acme.example")

    def pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())


def user_tokens(identity: Identity, issuer: str, count: int, *, offset: int = 0) -> list[str]:
    """``count`` distinct employees' tokens (RS256 signing costs ~0.3 ms each: two processes share it)."""
    return _signed_in_pool(identity, issuer, range(offset, offset + count))


def _sign_users(args: tuple[bytes, str, str, list[int]]) -> list[str]:
    pem, kid, issuer, users = args
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    identity = Identity(kid, key, {})
    return [identity.user_token(issuer, user) for user in users]


def _signed_in_pool(identity: Identity, issuer: str, users: range) -> list[str]:
    ids = list(users)
    workers = max(1, min(os.cpu_count() or 1, 4))
    chunks = [ids[i::workers] for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_sign_users, [(identity.pem(), identity.kid, issuer, chunk) for chunk in chunks])
    # Interleave back into the order asked for.
    out: list[str] = [""] * len(ids)
    for w, part in enumerate(parts):
        out[w::workers] = part
    return out


def fresh_token_requests(path: Path, identity: Identity, issuer: str, count: int, *, dataset: str,
                         keys: list[str]) -> Path:
    """``count`` requests, each with a token nobody has verified yet (a new employee per request)."""
    base = 10_000_000 + int(time.time()) % 1_000_000 * 100  # subjects unlike any earlier run's
    tokens = _signed_in_pool(identity, issuer, range(base, base + count))
    with path.open("w") as out:
        for i, token in enumerate(tokens):
            out.write(f"{objects_path(dataset, keys[i % len(keys)])}\tAuthorization: Bearer {token}\n")
    return path


@contextlib.contextmanager
def identity_provider(identity: Identity) -> Iterator[str]:
    """Okta-like discovery and JWKS on 127.0.0.1 (free port), from a thread. Yields the issuer URL."""
    state: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            base = state["issuer"]
            if self.path == "/oauth2/default/.well-known/openid-configuration":
                body = {"issuer": base, "jwks_uri": base + "/v1/keys",
                        "id_token_signing_alg_values_supported": ["RS256"]}
                status = 200
            elif self.path == "/oauth2/default/v1/keys":
                body, status = {"keys": [identity.jwk]}, 200
            else:
                body, status = {"error": "not found"}, 404
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["issuer"] = f"http://127.0.0.1:{server.server_address[1]}/oauth2/default"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state["issuer"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def gcs_service_account(path: Path) -> Path:
    """A fake service-account key file with a real RSA key: V4 signing with it needs no network."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": "acme-bench", "private_key_id": uuid.uuid4().hex,
        "private_key": pem, "client_email": "url-gateway@acme-bench.iam.gserviceaccount.com",
        "client_id": "100000000000000000001", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path


def policy_yaml(*, issuer: str, audit_path: Path, gcs_credentials: Path | None) -> str:
    """The production-like policy: Okta by group (from office networks), vendor HMAC, S3 (and GCS)."""
    datasets: dict[str, Any] = {
        S3_DATASET: {
            "backend": {"kind": "s3", "bucket": S3_BUCKET, "prefix": S3_PREFIX, "region": "us-west-2",
                        "endpoint_url": S3_ENDPOINT, "addressing_style": "path"},
            "url_ttl": "300s",
            "allow_keys": ["images/**", "pointclouds/**"],
            "rules": [
                {"name": "vendor-servers", "vendors": [VENDOR]},
                {"name": "ml-team-in-office", "groups": ["data-eng", GROUP], "issuers": ["okta"],
                 "networks": ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"]},
            ],
        },
        AUTO_DATASET: {  # the same bucket with delivery: auto (the auto-img row)
            "delivery": "auto",
            "backend": {"kind": "s3", "bucket": S3_BUCKET, "prefix": S3_PREFIX, "region": "us-west-2",
                        "endpoint_url": S3_ENDPOINT, "addressing_style": "path"},
            "url_ttl": "300s",
            "allow_keys": ["images/**", "pointclouds/**"],
            "rules": [{"name": "ml-team-in-office", "groups": ["data-eng", GROUP], "issuers": ["okta"],
                       "networks": ["10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"]}],
        },
        "medical": {  # a second dataset the requests never touch, as in a real policy
            "backend": {"kind": "s3", "bucket": "acme-med", "prefix": "scans/", "region": "us-west-2",
                        "endpoint_url": S3_ENDPOINT},
            "rules": [{"name": "office-only", "anonymous": True, "networks": ["10.20.0.0/16"]}],
        },
    }
    if gcs_credentials is not None:
        datasets[GCS_DATASET] = {
            "backend": {"kind": "gcs", "bucket": "acme-scans", "prefix": "ct/", "signer": "key",
                        "credentials_file": str(gcs_credentials)},
            "rules": [{"name": "ml-team", "groups": [GROUP], "issuers": ["okta"]}],
        }
    policy = {
        "version": 1,
        "defaults": {"url_ttl": "300s", "max_url_ttl": "1h", "min_remaining": 0.5, "batch_limit": 1000},
        "audit": {"sinks": [{"kind": "file", "path": str(audit_path)}], "fail_closed": False},
        "auth": {
            "vendors": [{"name": VENDOR, "max_skew": "300s",
                         "keys": [{"id": VENDOR_KEY_ID, "secret_env": "BENCH_VENDOR_SECRET"}]}],
            "oidc": [{"name": "okta", "issuer": issuer, "audience": AUDIENCE, "algorithms": ["RS256"],
                      "groups_claim": "groups", "leeway": "60s", "jwks_cache_ttl": "1h",
                      "jwks_refetch_interval": "30s"}],
        },
        "datasets": datasets,
    }
    return json.dumps(policy, indent=2)  # JSON is YAML


def redis_server(redis_binary: str, log_path: Path) -> Server:
    """A private redis-server on a free port (never 6379), without persistence."""
    port = free_port()
    while port == 6379:
        port = free_port()
    return Server(
        "redis-server", [redis_binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"],
        port, log_path, workers=1,
    )


def hmac_requests(path: Path, count: int, *, dataset: str, keys: list[str]) -> Path:
    """``count`` single-use vendor requests, one line each: the hot keys with a unique query, each
    signed with the vendor helper the project ships (gateway.vendor_signing)."""
    from gateway.vendor_signing import sign_request

    run = uuid.uuid4().hex[:8]
    now = int(time.time())
    with path.open("w") as out:
        for i in range(count):
            url = f"{objects_path(dataset, keys[i % len(keys)])}?n={run}{i}"
            headers = sign_request("GET", url, key_id=VENDOR_KEY_ID, secret=VENDOR_SECRET, timestamp=now)
            out.write(url + "\t" + "\t".join(f"{k}: {v}" for k, v in headers.items()) + "\n")
    return path


def require(binary: str | None, what: str) -> str:
    if binary is None:
        raise BenchError(f"{what} is not installed and cannot be installed here (not root, or no apt-get); "
                         f"install it (Debian: apt-get install {what}) and run again")
    return binary


def env_without(*prefixes: str) -> dict[str, str]:
    """The harness's environment minus variables that would change what the servers do."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def git_revision(root: Path) -> str:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False)
    rev = proc.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "gateway"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return rev + ("+dirty" if dirty else "")
