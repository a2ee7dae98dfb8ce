"""Two gateway processes sharing one private redis-server: same URLs, shared L2 cache, shared rate
limits and replay protection, losing Redis mid-load without failing a request, and clean logs."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from gateway.cache.redis import RedisUrlCache
from gateway.models import SignedUrl
from gateway.redis.client import SharedRedis
from tests.redis.procs import (
    PUBLIC_URL,
    SA_KEY,
    SIGNING_KEY,
    VENDOR,
    VENDOR_KEY_ID,
    VENDOR_SECRET,
    VENDOR_SECRET_ENV,
    GatewayProcess,
    RedisHolder,
    gateway_env,
    gateways,
    json_lines,
    metric,
    metric_samples,
    readyz,
    vendor_headers,
    wait_until,
)
from tests.support import free_port

ERROR_KEYS = {"error", "detail", "request_id"}


def pair_policy(data: Path) -> str:
    dead_jwks = f"http://127.0.0.1:{free_port()}/jwks"  # nothing listens: every fetch fails
    local = f'{{kind: local, path: "{data}"}}'
    anon = "{name: anon, anonymous: true, networks: [127.0.0.0/8]}"
    return f"""\
version: 1
auth:
  vendors:
    - name: {VENDOR}
      keys: [{{id: {VENDOR_KEY_ID}, secret_env: {VENDOR_SECRET_ENV}}}]
  oidc:
    - {{name: corp, issuer: "https://idp.example.test/", audience: gateway, jwks_uri: "{dead_jwks}"}}
datasets:
  open:
    backend: {local}
    rules:
      - {anon}
      - {{name: vendor, vendors: [{VENDOR}]}}
  busy:   # every request asks the Redis rate limiter
    backend: {local}
    rules: [{anon}, {{name: vendor, vendors: [{VENDOR}]}}]
    rate_limit: {{requests: 1000000, per: 1m}}
  limited:
    backend: {local}
    rules: [{anon}]
    rate_limit: {{requests: 5, per: 1m}}
  gcs:    # RSA signing: the one backend whose URLs go through the Redis L2 cache
    backend: {{kind: gcs, bucket: redis-tests-bucket, credentials_file: "{SA_KEY}", signer: key}}
    rules: [{anon}]
"""


@dataclass
class Pair:
    redis: RedisHolder
    gateways: list[GatewayProcess]
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))

    @property
    def one(self) -> GatewayProcess:
        return self.gateways[0]

    @property
    def two(self) -> GatewayProcess:
        return self.gateways[1]

    def sync_redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, socket_timeout=2.0)

    def get(self, gateway: GatewayProcess, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.client.get(gateway.url + path, headers=headers)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("pair")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (data / "images" / name).write_bytes(b"\x89PNG not really " + name.encode())
    policy = root / "policy.yaml"
    policy.write_text(pair_policy(data))
    holder = RedisHolder()
    try:
        env = gateway_env(GATEWAY_REDIS_URL=holder.url)
        with gateways(policy, root / "logs", env, count=2) as started:
            pair = Pair(holder, started)
            try:
                yield pair
            finally:
                pair.client.close()
    finally:
        holder.stop()


@pytest.fixture
def fresh(pair: Pair) -> Pair:
    """Redis up and empty, and both gateways using it again."""
    if pair.redis.server is None:
        pair.redis.restart()
    for gateway in pair.gateways:
        wait_until(lambda g=gateway: readyz(g.url)["status"] == "ready", 15, f"{gateway.url} ready")
    with pair.sync_redis() as r:
        r.flushdb()
    return pair


def location(pair: Pair, gateway: GatewayProcess, path: str) -> str:
    response = pair.get(gateway, path)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, str] = response.json()
    assert set(body) == ERROR_KEYS and body["error"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# -- 3: the same URL from both processes, and the shared L2 ------------------------------------------

def test_both_gateways_hand_out_the_same_url(fresh: Pair) -> None:
    path = "/v1/datasets/open/objects/images/a.png"
    for _ in range(3):
        first, other, again = location(fresh, fresh.one, path), location(fresh, fresh.two, path), \
            location(fresh, fresh.one, path)
        if first == again:  # not across a time-bucket boundary
            break
    assert other == first
    assert first.startswith(f"{PUBLIC_URL}/v1/local/open/images/a.png?exp=")
    assert location(fresh, fresh.two, "/v1/datasets/open/objects/images/b.png") != first
    # A URL signed by one process is served by the other.
    parts = urlsplit(first)
    served = fresh.get(fresh.two, f"{parts.path}?{parts.query}")
    assert served.status_code == 200 and served.content == b"\x89PNG not really a.png"


def test_gcs_urls_are_shared_through_redis(fresh: Pair) -> None:
    key = f"scans/{secrets.token_hex(4)}.dcm"
    path = f"/v1/datasets/gcs/objects/{key}?format=json"
    before = metric_samples(fresh.two.url)
    first = fresh.get(fresh.one, path).json()
    with fresh.sync_redis() as r:
        names = r.keys("gw:url:*")
        assert len(names) == 1 and names[0].endswith(key.encode()), names
        pttl = r.pttl(names[0])
    expires_at = datetime.fromisoformat(first["expires_at"].replace("Z", "+00:00")).timestamp()
    # The entry lives until the URL reaches its minimum remaining life (half of 300 s).
    assert abs(pttl / 1000 - (expires_at - time.time() - 150)) < 3.0, (pttl, expires_at)
    second = fresh.get(fresh.two, path).json()
    assert second == first
    after = metric_samples(fresh.two.url)
    hits = metric(after, "gateway_cache_requests_total", level="redis", result="hit") - metric(
        before, "gateway_cache_requests_total", level="redis", result="hit")
    signed = metric(after, "gateway_sign_seconds_count", backend="gcs") - metric(
        before, "gateway_sign_seconds_count", backend="gcs")
    assert (hits, signed) == (1, 0), "gateway 2 should have taken gateway 1's URL from Redis"

    async def read_back() -> list[SignedUrl | None]:
        shared = SharedRedis(fresh.redis.url, prefix="gw:")
        try:
            name = names[0].decode()[len("gw:url:"):]
            return await RedisUrlCache(shared).get_many([name], now=time.time(), min_remaining=150)
        finally:
            await shared.aclose()

    (entry,) = asyncio.run(read_back())
    assert entry is not None and entry.url == first["url"] and entry.expires_at == pytest.approx(expires_at)


# -- 5: rate limits across processes --------------------------------------------------------------------

def test_rate_limit_holds_across_both_processes(fresh: Pair) -> None:
    path = "/v1/datasets/limited/objects/images/a.png"
    before = metric_samples(fresh.one.url)
    statuses = [fresh.get(fresh.gateways[i % 2], path).status_code for i in range(5)]
    assert statuses == [302] * 5
    for gateway in (fresh.one, fresh.two):
        refused = fresh.get(gateway, path)
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 12
    limited = metric(metric_samples(fresh.one.url), "gateway_rate_limited_total") - metric(
        before, "gateway_rate_limited_total")
    assert limited == 1


def test_a_batch_spends_one_request_per_key_across_processes(fresh: Pair) -> None:
    path = "/v1/datasets/limited/objects/images/a.png"
    keys = ["images/a.png", "images/b.png", "images/c.png"]
    assert location(fresh, fresh.one, path) and location(fresh, fresh.two, path)
    fits = fresh.client.post(fresh.two.url + "/v1/sign", json={"dataset": "limited", "keys": keys})
    assert fits.status_code == 200 and [r["key"] for r in fits.json()["results"]] == keys  # 2 + 3 = 5
    assert_error(fresh.get(fresh.one, path), 429, "rate_limited")

    with fresh.sync_redis() as r:
        r.flushdb()
    assert location(fresh, fresh.one, path) and location(fresh, fresh.two, path)
    over = fresh.client.post(fresh.one.url + "/v1/sign", json={"dataset": "limited", "keys": [*keys, "images/d.png"]})
    assert_error(over, 429, "rate_limited")  # 2 + 4 = 6 > 5
    assert "retry-after" in over.headers


# -- 6: replay across processes -------------------------------------------------------------------------

def test_a_vendor_request_replayed_to_the_other_process_is_refused(fresh: Pair) -> None:
    path = "/v1/datasets/open/objects/images/a.png"
    headers = vendor_headers(path)
    assert fresh.get(fresh.one, path, headers).status_code == 302
    replayed = fresh.get(fresh.two, path, headers)
    assert_error(replayed, 401, "unauthenticated")
    assert "www-authenticate" in replayed.headers
    # Another request is fine. (Re-signing the same URL within the same second gives the same
    # signature: the scheme has no nonce, so that would be a replay too.)
    other = "/v1/datasets/open/objects/images/b.png"
    assert fresh.get(fresh.two, other, vendor_headers(other)).status_code == 302


# -- 4: Redis dies mid-load ----------------------------------------------------------------------------

class Load(threading.Thread):
    """Requests in a loop against both gateways, each of them touching Redis: the rate limiter
    (busy), the L2 cache (gcs, a new key each time) and the replay store (vendor HMAC)."""

    def __init__(self, gateways: list[GatewayProcess]) -> None:
        super().__init__(daemon=True)
        self.gateways = gateways
        self.stop = threading.Event()
        self.results: list[tuple[float, int, str]] = []

    def run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            i = 0
            while not self.stop.is_set():
                gateway = self.gateways[i % 2]
                headers = None
                if i % 3 == 0:
                    path = "/v1/datasets/busy/objects/images/a.png"
                elif i % 3 == 1:
                    path = f"/v1/datasets/gcs/objects/load/{i}.bin"
                else:
                    path = f"/v1/datasets/open/objects/images/b.png?n={i}"  # each signature unique
                    headers = vendor_headers(path)
                try:
                    status = client.get(gateway.url + path, headers=headers).status_code
                except httpx.HTTPError as exc:
                    status = -1
                    path += f" ({type(exc).__name__})"
                self.results.append((time.monotonic(), status, path))
                i += 1


def test_losing_redis_mid_load_fails_no_request_and_recovers(fresh: Pair) -> None:
    load = Load(fresh.gateways)
    load.start()
    try:
        time.sleep(0.5)
        killed_at = time.monotonic()
        fresh.redis.kill()
        for gateway in fresh.gateways:
            wait_until(lambda g=gateway: readyz(g.url)["status"] == "degraded", 5, f"{gateway.url} degraded")
            assert readyz(gateway.url)["cache"] == {"memory": "ok", "redis": "down"}
        time.sleep(1.0)
        restarted_at = time.monotonic()
        fresh.redis.restart()
        for gateway in fresh.gateways:
            wait_until(lambda g=gateway: readyz(g.url)["status"] == "ready", 12, f"{gateway.url} ready again")
            assert readyz(gateway.url)["cache"]["redis"] == "up"
        time.sleep(0.3)
    finally:
        load.stop.set()
        load.join(15)
    failed = [(status, path) for _, status, path in load.results if status != 302]
    assert not failed, failed[:10]
    during = [r for r in load.results if killed_at <= r[0] <= restarted_at]
    assert len(during) >= 10, "the load did not run while Redis was down"

    # Shared state again: a signature seen by one process is refused by the other ...
    path = "/v1/datasets/open/objects/images/a.png"
    headers = vendor_headers(path)
    assert fresh.get(fresh.two, path, headers).status_code == 302
    assert_error(fresh.get(fresh.one, path, headers), 401, "unauthenticated")
    # ... and the rate limit counts both processes' requests.
    path = "/v1/datasets/limited/objects/images/b.png"
    assert [fresh.get(fresh.gateways[i % 2], path).status_code for i in range(6)] == [302] * 5 + [429]
    samples = metric_samples(fresh.one.url)
    assert metric(samples, "gateway_redis_fallbacks_total") > 0  # the outage was really felt


# -- 10: logs ---------------------------------------------------------------------------------------------

def log_lines(gateway: GatewayProcess) -> list[str]:
    """stderr as JSON lines (the startup banner is a log record too)."""
    return [line for line in gateway.stderr_lines() if not line.startswith("gateway: serving on ")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_stderr_is_json_with_request_ids_and_no_secrets(fresh: Pair) -> None:
    now = int(time.time())
    header = _b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"iss": "https://idp.example.test/", "aud": "gateway", "sub": "alice",
                              "exp": now + 600, "iat": now}).encode())
    token_signature = _b64(secrets.token_bytes(256))
    token = f"{header}.{claims}.{token_signature}"
    request_id = f"logcheck-{secrets.token_hex(6)}"

    # A bearer token whose issuer cannot be reached: the JWKS fetch fails and is logged mid-request.
    response = fresh.get(fresh.one, "/v1/datasets/open/objects/images/a.png",
                         {"Authorization": f"Bearer {token}", "X-Request-ID": request_id})
    assert_error(response, 503, "unavailable")
    # A vendor header set (no bearer), accepted, then replayed; and a local URL fetched with its sig.
    path = "/v1/datasets/open/objects/images/b.png"
    headers = vendor_headers(path)
    signed_url = location(fresh, fresh.one, path + "?x=1")
    assert fresh.get(fresh.one, path, headers).status_code == 302
    assert fresh.get(fresh.two, path, headers).status_code == 401
    parts = urlsplit(signed_url)
    assert fresh.get(fresh.one, f"{parts.path}?{parts.query}").status_code == 200
    assert fresh.get(fresh.one, f"{parts.path}?{parts.query[:-3]}abc").status_code == 403
    sig = parts.query.split("sig=", 1)[1]

    deadline = time.monotonic() + 5
    while not any(request_id in line for line in fresh.one.stderr_lines()) and time.monotonic() < deadline:
        time.sleep(0.1)
    secrets_ = [token, token_signature, headers["X-Gateway-Signature"], sig, VENDOR_SECRET, SIGNING_KEY]
    for gateway in fresh.gateways:
        lines = log_lines(gateway)
        records = json_lines(lines)  # every line is JSON (a torn or plain line raises here)
        assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
        for text in lines + gateway.stdout_lines():  # stdout holds the audit records
            assert "sig=" not in text, text
            for secret in secrets_:
                assert secret not in text, text
    mid_request = [r for r in json_lines(log_lines(fresh.one)) if "jwks fetch failed" in r["message"]]
    assert mid_request, "the JWKS failure was not logged"
    assert all(r.get("request_id") == request_id for r in mid_request), mid_request


def test_every_stderr_line_is_json_including_the_startup_banner(pair: Pair) -> None:
    for gateway in pair.gateways:
        json_lines(gateway.stderr_lines())
