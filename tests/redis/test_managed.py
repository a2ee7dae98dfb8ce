"""Managed-Redis features on real servers: TLS with a CA file, ACL users, a password file that rotates,
ElastiCache and Memorystore IAM tokens through the credential provider, the eviction-policy warning,
and clear errors (never a hang or a traceback) for a bad CA, a wrong password or an unreachable cluster.

Only what cannot run here is faked, through the interface production uses: AWS's validation of an
IAM token is played by a Redis ACL user whose password is the token the provider made (checked
byte for byte against botocore's signer), and Google's token endpoint by a local HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.redis.auth import ElastiCacheIamProvider, MemorystoreIamProvider
from gateway.redis.client import RedisOptions, SharedRedis
from tests.redis.servers import Node, binaries, free_ports, server_argv, wait_until
from tests.redis.tls import Pki, make_pki, tls_args
from tests.support import FIXTURES

# Under load, a warm-up ping of SharedRedis.start() could outlive start() (gather() raised on the first
# failure and left the others running): a connection still opening then outlived aclose() and was
# closed by the garbage collector, whose ResourceWarning surfaced in a later test of this module in
# about one full run in five. start() now awaits every ping; these two unraisable warnings stay ignored
# here, and only here, until runs show the fix holds.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning",
    "ignore:Exception ignored in. <function _SelectorTransport.__del__:pytest.PytestUnraisableExceptionWarning",
)


@dataclass
class TlsRedis:
    node: Node
    pki: Pki

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.node.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.node.port, ssl=True, ssl_ca_certs=str(self.pki.ca),
                           username="admin", password="admin-pw", socket_timeout=2.0)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """One redis-server speaking TLS only, with an ACL: ``admin`` for the test, ``default`` off."""
    server, _, _ = binaries("redis")
    root = tmp_path_factory.mktemp("tls")
    pki = make_pki(root / "pki")
    (port,) = free_ports(1)
    acl = root / "users.acl"
    acl.write_text("user default off\nuser admin on >admin-pw ~* &* +@all\n")
    node = Node(port, root / "node", [*server_argv(server, port), *tls_args(pki, port), "--aclfile", str(acl)])
    node.start()
    found = TlsRedis(node, pki)

    def answers() -> bool:
        try:
            with found.admin() as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    try:
        wait_until(answers, 10, "the TLS redis-server")
        yield found
    finally:
        node.kill()


def acl_user(server: TlsRedis, name: str, password: str) -> None:
    with server.admin() as r:
        r.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", "~*", "&*", "+@all")


def run(body: Any) -> Any:
    return asyncio.run(body())


# -- TLS and passwords -------------------------------------------------------------------------------

def test_tls_with_a_ca_file_and_a_rotating_password_file(tls_redis: TlsRedis, tmp_path: Path) -> None:
    acl_user(tls_redis, "gw-file", "first-secret")
    password_file = tmp_path / "password"
    password_file.write_text("first-secret\n")  # as a Kubernetes Secret file often ends

    async def body() -> None:
        options = RedisOptions(ca_file=tls_redis.pki.ca, username="gw-file", password_file=password_file)
        shared = SharedRedis(tls_redis.url, options=options)
        try:
            await shared.start()
            assert (await shared.readiness())["state"] == "up"
            assert await shared.call(lambda r: r.set("tls-k", b"v")) is True
            # Rotation: Redis checks passwords only at AUTH, so open connections carry on, and new ones
            # read the new file.
            acl_user(tls_redis, "gw-file", "second-secret")
            password_file.write_text("second-secret")
            assert await shared.call(lambda r: r.get("tls-k")) == b"v"
            await shared.client.connection_pool.disconnect()  # type: ignore[union-attr]
            assert await shared.call(lambda r: r.get("tls-k")) == b"v"
        finally:
            await shared.aclose()

    run(body)


@pytest.mark.parametrize("problem", ["bad-ca", "wrong-password", "no-tls"])
def test_a_misconfigured_redis_is_a_clear_error_not_a_hang(tls_redis: TlsRedis, tmp_path: Path, problem: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    acl_user(tls_redis, "gw-err", "right-password")
    other = make_pki(tmp_path / "other", "other")
    url = tls_redis.url
    options = RedisOptions(ca_file=tls_redis.pki.ca, username="gw-err", password="right-password")
    expected = {"bad-ca": "TLS certificate verification failed", "wrong-password": "authentication to",
                "no-tls": "TLS handshake"}[problem]
    if problem == "bad-ca":
        options = RedisOptions(ca_file=other.ca, username="gw-err", password="right-password")
    elif problem == "wrong-password":
        options = RedisOptions(ca_file=tls_redis.pki.ca, username="gw-err", password="not-the-password")
    else:
        url = url.replace("rediss://", "redis://")  # plain text to a TLS port
        expected = "does it expect TLS"

    async def body() -> dict[str, Any]:
        shared = SharedRedis(url, options=options)
        try:
            started = time.monotonic()
            await shared.start()
            assert time.monotonic() - started < shared.deadline * 3 + 0.5
            return await shared.readiness()
        finally:
            await shared.aclose()

    with caplog.at_level(logging.ERROR, logger="gateway.redis"):
        readiness = run(body)
    assert readiness["state"] == "down"
    assert expected in readiness["error"], readiness
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and expected in errors[0].getMessage()
    assert errors[0].exc_info is None  # one line, no traceback
    for text in [readiness["error"], errors[0].getMessage()]:
        assert "right-password" not in text and "not-the-password" not in text


def test_an_unreachable_cluster_is_a_clear_error_within_the_timeouts(caplog: pytest.LogCaptureFixture) -> None:
    dead = free_ports(2)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis+cluster://127.0.0.1:{dead[0]},127.0.0.1:{silent.getsockname()[1]}/"

        async def body() -> tuple[float, dict[str, Any]]:
            shared = SharedRedis(url, options=RedisOptions(connect_timeout=0.3, timeout=0.2))
            try:
                started = time.monotonic()
                await shared.start()
                return time.monotonic() - started, await shared.readiness()
            finally:
                await shared.aclose()

        with caplog.at_level(logging.ERROR, logger="gateway.redis"):
            took, readiness = run(body)
    assert took < (0.3 + 2 * 0.2) * 3 + 0.5
    assert readiness["state"] == "down" and readiness["mode"] == "cluster"
    assert "Cluster" in readiness["error"] or "did not answer" in readiness["error"], readiness
    assert [r.exc_info for r in caplog.records if r.levelno >= logging.ERROR] == [None]


# -- IAM tokens ---------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def botocore_token(cache: str, user: str, region: str, at: float, monkeypatch: pytest.MonkeyPatch) -> str:
    """The token as AWS's own Python signer makes it (the reference for ours)."""
    import datetime

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: datetime.datetime.fromtimestamp(int(at), datetime.UTC).replace(tzinfo=None))
    request = AWSRequest(method="GET", url=f"http://{cache}/", params={"Action": "connect", "User": user})
    credentials = Credentials("AKIDEXAMPLE", "secret/with+chars", "session-token/xyz=")
    botocore.auth.SigV4QueryAuth(credentials, "elasticache", region, expires=900).add_auth(request)
    url: str = request.url
    return url.removeprefix("http://")


def test_elasticache_iam_token_is_botocores_and_is_renewed_for_new_connections(
        tls_redis: TlsRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")  # what boto3 finds, as on a pod
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret/with+chars")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token/xyz=")
    clock = Clock()
    provider = ElastiCacheIamProvider(user="gw-iam", cache="My-Cache", region="eu-west-1", clock=clock)
    user, token = provider.get_credentials()  # type: ignore[misc]
    assert user == "gw-iam"
    assert token == botocore_token("my-cache", "gw-iam", "eu-west-1", clock.now, monkeypatch)
    assert "X-Amz-Expires=900" in token and token.startswith("my-cache/?Action=connect&User=gw-iam&")
    acl_user(tls_redis, "gw-iam", token)  # plays ElastiCache checking the token

    async def body() -> None:
        shared = SharedRedis(tls_redis.url, options=RedisOptions(ca_file=tls_redis.pki.ca,
                                                                 credential_provider=provider))
        try:
            await shared.start()
            assert await shared.ping()
            clock.now += 601  # past the renewal age: the next connection gets a new token
            _, renewed = await provider.get_credentials_async()  # type: ignore[misc]
            assert renewed != token
            acl_user(tls_redis, "gw-iam", renewed)
            assert await shared.ping()  # open connections keep working
            await shared.client.connection_pool.disconnect()  # type: ignore[union-attr]
            assert await shared.ping()  # a new connection authenticates with the new token
            assert shared.last_error is None
        finally:
            await shared.aclose()

    run(body)


class TokenEndpoint(BaseHTTPRequestHandler):
    """Google's OAuth token endpoint, as far as google-auth's service-account flow needs it."""

    tokens: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        assert b"assertion=" in self.rfile.read(length)  # a signed JWT grant, as Google expects
        token = f"ya29.test-{secrets.token_hex(8)}"
        self.tokens.append(token)
        body = json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_memorystore_iam_token_comes_from_google_auth(tls_redis: TlsRedis) -> None:
    from google.oauth2 import service_account

    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    try:
        key = FIXTURES / "gcs-v4" / "test_service_account.not-a-test.json"
        credentials = service_account.Credentials.from_service_account_file(
            str(key), scopes=["https://www.googleapis.com/auth/cloud-platform"]
        ).with_token_uri(f"http://127.0.0.1:{endpoint.server_address[1]}/token")
        provider = MemorystoreIamProvider(credentials)
        (token,) = provider.get_credentials()
        assert token == TokenEndpoint.tokens[-1]
        assert 3000 < provider.renew_after <= 3300  # renewed 5 minutes before the hour is up
        with tls_redis.admin() as r:  # Memorystore checks the token as the default user's password
            r.execute_command("ACL", "SETUSER", "default", "reset", "on", f">{token}", "~*", "&*", "+@all")

        async def body() -> None:
            shared = SharedRedis(tls_redis.url, options=RedisOptions(ca_file=tls_redis.pki.ca,
                                                                     credential_provider=provider))
            try:
                await shared.start()
                assert await shared.ping() and shared.last_error is None
            finally:
                await shared.aclose()

        run(body)
    finally:
        with tls_redis.admin() as r:
            r.execute_command("ACL", "SETUSER", "default", "reset", "off")
        endpoint.shutdown()
        endpoint.server_close()


# -- the eviction policy --------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "risky"), [("volatile-lru", True), ("allkeys-lru", True), ("noeviction", False)])
def test_startup_reads_the_eviction_policy_from_info_and_warns_when_it_can_evict(
        tls_redis: TlsRedis, caplog: pytest.LogCaptureFixture, policy: str, risky: bool) -> None:
    acl_user(tls_redis, "gw-info", "pw")
    with tls_redis.admin() as r:  # the test sets it; the gateway only reads INFO (CONFIG is blocked on managed Redis)
        r.config_set("maxmemory", "256mb")
        r.config_set("maxmemory-policy", policy)
        r.execute_command("ACL", "SETUSER", "gw-info", "-config")

    async def body() -> dict[str, Any]:
        shared = SharedRedis(tls_redis.url, options=RedisOptions(ca_file=tls_redis.pki.ca, username="gw-info",
                                                                 password="pw"))
        try:
            await shared.start()
            return await shared.readiness()
        finally:
            await shared.aclose()

    try:
        with caplog.at_level(logging.WARNING, logger="gateway.redis"):
            readiness = run(body)
    finally:
        with tls_redis.admin() as r:
            r.config_set("maxmemory", "0")
            r.config_set("maxmemory-policy", "noeviction")
    assert readiness["maxmemory_policy"] == policy
    assert readiness["evicts_gateway_keys"] is risky
    warned = [r.getMessage() for r in caplog.records if "CAN EVICT" in r.getMessage()]
    assert bool(warned) is risky


# -- the same, through `gateway serve` and its settings ---------------------------------------------

def test_gateway_serve_with_tls_settings_and_with_a_wrong_password(tls_redis: TlsRedis, tmp_path: Path) -> None:
    """GATEWAY_REDIS_CA_FILE, GATEWAY_REDIS_USERNAME and GATEWAY_REDIS_PASSWORD reach the client; a
    wrong password is one clear log line and /readyz says why, while the gateway serves."""
    from tests.redis.failover_load import load_policy
    from tests.redis.procs import gateway_env, gateways, json_lines, readyz

    acl_user(tls_redis, "gw-env", "env-secret-123")
    policy = load_policy(tmp_path)
    settings = {"GATEWAY_REDIS_URL": tls_redis.url, "GATEWAY_REDIS_CA_FILE": str(tls_redis.pki.ca),
                "GATEWAY_REDIS_USERNAME": "gw-env"}
    good = gateway_env(**settings, GATEWAY_REDIS_PASSWORD="env-secret-123")
    bad = gateway_env(**settings, GATEWAY_REDIS_PASSWORD="wrong-secret-456")
    with gateways(policy, tmp_path / "good", good) as (ok,), gateways(policy, tmp_path / "bad", bad) as (broken,):
        up = readyz(ok.url)
        assert up["status"] == "ready" and up["redis"]["state"] == "up", up
        assert up["redis"]["url"] == tls_redis.url.replace("/0", "/") and up["redis"]["server"].startswith("redis ")
        down = readyz(broken.url)
        assert down["status"] == "degraded" and down["cache"]["redis"] == "down"
        assert "authentication to" in down["redis"]["error"], down
        import httpx

        assert httpx.get(broken.url + "/v1/datasets/busy/objects/images/a.png").status_code == 302  # serving
        text = broken.stderr.read_text()
        assert "Traceback" not in text
        assert "wrong-secret-456" not in text and "wrong-secret-456" not in str(down)
        errors = [r for r in json_lines(broken.stderr_lines()) if r["level"] in ("ERROR", "error")]
        assert len(errors) == 1 and "authentication to" in errors[0]["message"], errors


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    async def body() -> dict[str, Any]:
        shared = SharedRedis("rediss://127.0.0.1:1/0", options=RedisOptions(ca_file=tmp_path / "absent.pem"))
        try:
            await shared.start()
            return await shared.readiness()
        finally:
            await shared.aclose()

    readiness = run(body)
    assert readiness["state"] == "down" and "absent.pem" in readiness["error"], readiness
