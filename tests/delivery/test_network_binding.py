"""S3 URLs bound to the network: signed with an ``sts:AssumeRole`` session whose inline policy lets
S3 serve the prefix only to the configured networks.

STS cannot run here, so boto3's own endpoint setting (``AWS_ENDPOINT_URL_STS``) points at moto's
server. moto does not enforce session policies; these tests check what only the gateway decides:
the exact policy sent (golden files), that URLs carry the session's credentials and token, the
expiry cap, the refresh, and a 503 (never an unbound URL) when STS fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

from gateway.backends.s3 import S3Backend
from gateway.config import S3Backend as S3Config
from gateway.config import parse_policy
from gateway.errors import ConfigError, Unavailable
from gateway.sigv4.presign import Credentials, SigV4Presigner
from tests.e2e.helpers import FakeClock, assert_error
from tests.support import FIXTURES, RunningGateway, free_port

GOLDEN = FIXTURES / "session-policies"
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/gateway-bound-urls"
BINDINGS = {
    "ips-and-endpoints": {"role_arn": ROLE, "source_ips": ["203.0.113.0/28", "2001:db8::/56"],
                          "vpc_endpoints": ["vpce-0abc1234def567890"], "duration": "15m"},
    "ips-only": {"role_arn": ROLE, "source_ips": ["198.51.100.7/32"]},
    "endpoints-only": {"role_arn": ROLE, "vpc_endpoints": ["vpce-11112222", "vpce-0123456789abcdef0"]},
}


@pytest.fixture(scope="module")
def sts() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def sts_env(sts: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAGATEWAYPOD")  # the pod's own (unbound) credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pod-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return sts


def config(binding: dict[str, object], **overrides: object) -> S3Config:
    return S3Config.model_validate({"kind": "s3", "bucket": "acme-raw", "prefix": "datasets/driving/",
                                    "region": "us-west-2", "network_binding": binding, **overrides})


def sessions_sent() -> list[object]:
    return list(sts_backends[ACCOUNT]["aws"].assumed_roles)


def sign(backend: S3Backend, key: str, *, signed_at: int, expires_in: int = 300) -> tuple[str, float]:
    [url] = asyncio.run(backend.sign([key], signed_at=signed_at, expires_in=expires_in))
    return url.url, url.expires_at


@pytest.mark.parametrize("name", sorted(BINDINGS))
def test_session_policy_matches_its_golden_file(name: str) -> None:
    policy = config(BINDINGS[name]).session_policy()
    assert policy is not None and len(policy) <= 2048
    assert policy == (GOLDEN / f"{name}.json").read_text().strip()
    statements = json.loads(policy)["Statement"]
    assert {s["Resource"] for s in statements} == {"arn:aws:s3:::acme-raw/datasets/driving/*"}
    assert {s["Action"] for s in statements} == {"s3:GetObject"}


def test_the_exact_policy_reaches_sts_and_urls_carry_the_session(sts_env: str) -> None:
    clock = FakeClock()
    cfg = config(BINDINGS["ips-and-endpoints"])
    backend = S3Backend(cfg, session=boto3.session.Session(), clock=clock, dataset="driving")
    before = len(sessions_sent())
    url, expires_at = sign(backend, "images/a b.jpg", signed_at=int(clock.now))
    [role] = sessions_sent()[before:]
    assert role.policy == (GOLDEN / "ips-and-endpoints.json").read_text().strip()
    assert role.role_arn == ROLE and role.session_name == "gateway-driving"
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Credential"][0].startswith(role.access_key_id + "/")
    assert query["X-Amz-Security-Token"] == [role.session_token]
    assert "AKIAGATEWAYPOD" not in url  # never the pod's own, unbound credentials
    # The signature is the session's: the same URL as the presigner makes with those credentials.
    credentials = Credentials(role.access_key_id, role.secret_access_key, role.session_token)
    expires = int(query["X-Amz-Expires"][0])
    expected = SigV4Presigner(backend.base_url, region="us-west-2").presign(
        "datasets/driving/images/a b.jpg", credentials, signed_at=int(clock.now), expires=expires)
    assert url == expected
    assert backend.health()["network_binding"] is True


def test_a_url_never_outlives_its_session(sts_env: str) -> None:
    clock = FakeClock()
    backend = S3Backend(config(BINDINGS["ips-and-endpoints"]), session=boto3.session.Session(), clock=clock)
    now = int(clock.now)
    _, expires_at = sign(backend, "k.jpg", signed_at=now, expires_in=3600)  # asks for an hour
    role = sessions_sent()[-1]
    session_end = role.expiration.timestamp()
    assert session_end - now == pytest.approx(900, abs=2)  # duration: 15m
    assert expires_at <= session_end - 30  # capped at the session's life, minus the margin


def test_the_session_is_reused_then_refreshed_before_half_its_life(sts_env: str) -> None:
    clock = FakeClock()
    backend = S3Backend(config(BINDINGS["ips-only"]), session=boto3.session.Session(), clock=clock)
    assert backend.bound is not None
    first, _ = sign(backend, "k.jpg", signed_at=int(clock.now))
    clock.now += 1000  # a quarter of the default hour
    sign(backend, "k.jpg", signed_at=int(clock.now))
    assert backend.bound.assumed == 1
    clock.now += 900  # past half the session's life
    second, _ = sign(backend, "k.jpg", signed_at=int(clock.now))
    assert backend.bound.assumed == 2
    token = parse_qs(urlsplit(first).query)["X-Amz-Security-Token"]
    assert parse_qs(urlsplit(second).query)["X-Amz-Security-Token"] != token


def test_sts_failure_is_503_never_an_unbound_url(sts_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 gateway_server: Callable[..., RunningGateway]) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    backend = S3Backend(config(BINDINGS["ips-only"]), session=boto3.session.Session())
    assert backend.health()["ok"] is True  # nothing tried yet
    with pytest.raises(Unavailable):
        sign(backend, "k.jpg", signed_at=1_800_000_000)
    assert backend.health()["ok"] is False and backend.health()["sts_failures"] == 1
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""version: 1
datasets:
  driving:
    backend: {{kind: s3, bucket: acme-raw, region: us-west-2, network_binding: {{role_arn: "{ROLE}",
               source_ips: [198.51.100.7/32]}}}}
    rules: [{{name: lab, anonymous: true, networks: [127.0.0.0/8]}}]
""")
    gw = gateway_server(config=policy)
    for params in ({}, {"format": "json"}):
        response = httpx.get(f"{gw.url}/v1/datasets/driving/objects/k.jpg", params=params, timeout=20)
        assert_error(response, 503, "unavailable")
        assert response.headers["retry-after"]
        assert "location" not in response.headers and "amazonaws" not in response.text
    batch = httpx.post(f"{gw.url}/v1/sign", json={"dataset": "driving", "keys": ["k.jpg"]}, timeout=20)
    assert_error(batch, 503)


def test_a_valid_session_keeps_signing_while_sts_is_down(sts_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    backend = S3Backend(config(BINDINGS["ips-only"]), session=boto3.session.Session(), clock=clock)
    assert backend.bound is not None
    sign(backend, "k.jpg", signed_at=int(clock.now))
    backend.bound._sts = boto3.session.Session().client(  # STS goes away
        "sts", region_name="us-west-2", endpoint_url=f"http://127.0.0.1:{free_port()}")
    clock.now += 2000  # past the refresh point, before the end
    url, _ = sign(backend, "k.jpg", signed_at=int(clock.now))
    assert "X-Amz-Security-Token" in url and backend.bound.failures == 1
    clock.now += 1600  # now the session is over: no URL at all
    with pytest.raises(Unavailable):
        sign(backend, "k.jpg", signed_at=int(clock.now))


def test_a_session_policy_over_2048_characters_is_refused_at_load() -> None:
    many = [str(ipaddress.ip_network(f"198.51.{i}.0/24")) for i in range(120)]
    text = f"""version: 1
datasets:
  driving:
    backend: {{kind: s3, bucket: acme-raw, network_binding: {{role_arn: "{ROLE}", source_ips: {json.dumps(many)}}}}}
"""
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert any("2048" in p and "network_binding" in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(("binding", "message"), [
    ({"role_arn": ROLE}, "at least one of source_ips or vpc_endpoints"),
    ({"role_arn": "arn:aws:iam::123:role/x", "source_ips": ["10.0.0.0/8"]}, "role_arn"),
    ({"role_arn": ROLE, "vpc_endpoints": ["vpc-123"]}, "vpc_endpoints"),
    ({"role_arn": ROLE, "source_ips": ["10.0.0.0/8"], "duration": "5m"}, "duration"),
])
def test_bad_bindings_are_clear_errors(binding: dict[str, object], message: str) -> None:
    text = "version: 1\ndatasets:\n  d:\n    backend: " + json.dumps(
        {"kind": "s3", "bucket": "acme-raw", "network_binding": binding}) + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_auto_binds_its_redirects_and_streams_with_the_gateways_own_credentials(
        sts_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``delivery: auto`` with ``network_binding``: a redirect carries the bound session (an ``<img>``
    from outside the networks fails at S3), a stream is read with the pod's own credentials (the bound
    session would refuse the gateway's egress). s3rver accepts only its own key: a stream signed
    with the STS session's key would be refused."""
    import time

    from gateway.backends.http_pool import UpstreamPool
    from gateway.backends.s3_source import S3Source
    from gateway.models import FetchRequest
    from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)  # the pod's own credentials, which s3rver knows
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    policy = parse_policy(f"""version: 1
datasets:
  lidar:
    delivery: auto
    backend: {{kind: s3, bucket: acme-raw, network_binding: {{role_arn: "{ROLE}", source_ips: [203.0.113.0/28]}}}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
""")
    assert policy.datasets["lidar"].delivery == "auto"  # binding an auto dataset is valid (its redirects)
    with running_s3rver() as endpoint:
        s3_client(endpoint).create_bucket(Bucket="acme-raw")
        s3_client(endpoint).put_object(Bucket="acme-raw", Key="datasets/driving/a.bin", Body=b"bytes")
        backend = S3Backend(config(BINDINGS["ips-only"], endpoint_url=endpoint, addressing_style="path"))
        url, _ = sign(backend, "a.bin", signed_at=int(time.time()))
        query = parse_qs(urlsplit(url).query)
        assert "X-Amz-Security-Token" in query and not query["X-Amz-Credential"][0].startswith(ACCESS_KEY)

        async def stream() -> bytes:
            pool = UpstreamPool()
            try:
                fetched = await S3Source(backend, pool).fetch("a.bin", FetchRequest())
                assert fetched.body is not None
                body = b"".join([chunk async for chunk in fetched.body])
                fetched.release()
                return body
            finally:
                await pool.aclose()

        assert asyncio.run(stream()) == b"bytes"
