"""S3Backend: credentials from boto3's chain, the expiry cap, determinism, errors and health."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from gateway.backends import Backend
from gateway.backends.s3 import CREDENTIAL_MARGIN, S3Backend
from gateway.config import S3Backend as S3Config
from gateway.errors import Unavailable
from tests.backends.aws import SECRET, Metadata, expiring_in, sts_session


def _config(**overrides: object) -> S3Config:
    return S3Config.model_validate({"kind": "s3", "bucket": "acme-raw", "prefix": "datasets/", **overrides})


def _static_session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key=SECRET)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_implements_the_backend_protocol() -> None:
    backend = S3Backend(_config(), session=_static_session())
    assert isinstance(backend, Backend)
    assert (backend.kind, backend.shared_cache) == ("s3", False)


def test_signs_under_the_prefix_with_the_bucket_time() -> None:
    backend = S3Backend(_config(region="us-west-2", addressing_style="virtual"), session=_static_session())
    [signed] = asyncio.run(backend.sign(["images/a b.jpg"], signed_at=1700000000, expires_in=300))
    assert signed.url.startswith("https://acme-raw.s3.us-west-2.amazonaws.com/datasets/images/a%20b.jpg?")
    query = _query(signed.url)
    assert query["X-Amz-Date"] == "20231114T221320Z"
    assert query["X-Amz-Expires"] == "300"
    assert query["X-Amz-Credential"] == "AKIAIOSFODNN7EXAMPLE/20231114/us-west-2/s3/aws4_request"
    assert (signed.signed_at, signed.expires_at) == (1700000000, 1700000300)


def test_replicas_produce_identical_urls() -> None:
    keys = ["a.jpg", "b/c.png"]
    first = asyncio.run(
        S3Backend(_config(), session=_static_session()).sign(keys, signed_at=1700000000, expires_in=300)
    )
    again = asyncio.run(
        S3Backend(_config(), session=_static_session()).sign(keys, signed_at=1700000000, expires_in=300)
    )
    later = asyncio.run(
        S3Backend(_config(), session=_static_session()).sign(keys, signed_at=1700000300, expires_in=300)
    )
    assert first == again
    assert [u.url for u in first] != [u.url for u in later]


def test_response_overrides_are_signed() -> None:
    config = _config(response_content_type="image/jpeg", response_content_disposition="inline")
    [signed] = asyncio.run(
        S3Backend(config, session=_static_session()).sign(["a"], signed_at=1, expires_in=60)
    )
    query = _query(signed.url)
    assert (query["response-content-type"], query["response-content-disposition"]) == ("image/jpeg", "inline")


def test_expiry_is_capped_by_temporary_credentials(no_aws_environment: None) -> None:
    now = int(time.time())
    calls: list[int] = []
    backend = S3Backend(_config(), session=sts_session(expiring_in(90, now, calls)), clock=lambda: now)
    [signed] = asyncio.run(backend.sign(["a.jpg"], signed_at=now, expires_in=300))
    query = _query(signed.url)
    assert query["X-Amz-Expires"] == str(90 - CREDENTIAL_MARGIN)
    assert signed.expires_at == now + 90 - CREDENTIAL_MARGIN
    assert query["X-Amz-Security-Token"] == "FwoGZXIvYXdzE/+token=="
    assert calls  # the credentials came from the provider, through boto3's chain


def test_long_lived_temporary_credentials_do_not_shorten_urls(no_aws_environment: None) -> None:
    now = int(time.time())
    backend = S3Backend(_config(), session=sts_session(expiring_in(3600, now)), clock=lambda: now)
    [signed] = asyncio.run(backend.sign(["a.jpg"], signed_at=now, expires_in=300))
    assert _query(signed.url)["X-Amz-Expires"] == "300"
    assert backend.health() == {
        "kind": "s3",
        "ok": True,
        "credentials": "assume-role-with-web-identity",
        "expires_in": 3600,
    }


def test_credentials_about_to_expire_are_unavailable(no_aws_environment: None) -> None:
    now = int(time.time())
    backend = S3Backend(_config(), session=sts_session(expiring_in(20, now)), clock=lambda: now)
    with pytest.raises(Unavailable) as info:
        asyncio.run(backend.sign(["a.jpg"], signed_at=now, expires_in=300))
    assert info.value.retry_after


def test_refresh_failure_is_unavailable_without_leaking(no_aws_environment: None) -> None:
    now = int(time.time())
    good = expiring_in(60, now)
    calls: list[int] = []

    def refresh() -> Metadata:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("AccessDenied for arn:aws:iam::123456789012:role/secret-role")
        return good()

    backend = S3Backend(_config(), session=sts_session(refresh), clock=lambda: now)
    with pytest.raises(Unavailable) as info:
        asyncio.run(backend.sign(["a.jpg"], signed_at=now, expires_in=300))
    assert info.value.status == 503
    assert "arn:" not in info.value.detail and "secret-role" not in info.value.detail


def test_missing_credentials_are_unavailable(no_aws_environment: None) -> None:
    backend = S3Backend(_config(), session=boto3.session.Session(), clock=lambda: 1000.0)
    assert backend.health() == {"kind": "s3", "ok": False, "credentials": "missing"}
    with pytest.raises(Unavailable) as info:
        asyncio.run(backend.sign(["a.jpg"], signed_at=1000, expires_in=300))
    assert "no AWS credentials" in info.value.detail
    assert info.value.retry_after


def test_credentials_that_appear_later_are_picked_up(
    no_aws_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    backend = S3Backend(_config(), session=boto3.session.Session(), clock=lambda: clock[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIALATER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(Unavailable):  # not retried before the back-off has passed
        asyncio.run(backend.sign(["a"], signed_at=1000, expires_in=60))
    clock[0] += 60
    [signed] = asyncio.run(backend.sign(["a"], signed_at=1060, expires_in=60))
    assert "AKIALATER" in signed.url
    assert backend.health()["ok"] is True


def test_expired_credentials_are_reported_by_health(no_aws_environment: None) -> None:
    now = int(time.time())
    backend = S3Backend(_config(), session=sts_session(expiring_in(3600, now)), clock=lambda: now + 7200)
    health = backend.health()
    assert health["ok"] is False and health["expires_in"] == -3600
