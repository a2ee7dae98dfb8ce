"""S3Backend against a real S3-compatible server that checks SigV4 signatures and expiry."""

from __future__ import annotations

import asyncio
import datetime
import time

import boto3
import httpx
import pytest

from gateway.backends.s3 import S3Backend, boto3_presign
from gateway.config import S3Backend as S3Config
from gateway.sigv4.presign import Credentials, SigV4Presigner
from tests.backends.aws import S3Server, sts_session
from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, s3_client


def _backend(server: S3Server, **overrides: object) -> S3Backend:
    config = S3Config.model_validate(
        {
            "kind": "s3",
            "bucket": server.bucket,
            "prefix": server.prefix,
            "endpoint_url": server.endpoint,
            "addressing_style": "path",
            **overrides,
        }
    )
    session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    return S3Backend(config, session=session)


def _sign(backend: S3Backend, key: str, *, signed_at: int | None = None, expires_in: int = 300) -> str:
    now = int(time.time()) if signed_at is None else signed_at
    [signed] = asyncio.run(backend.sign([key], signed_at=now, expires_in=expires_in))
    return signed.url


def test_signed_urls_fetch_the_exact_bytes(s3rver: S3Server) -> None:
    backend = _backend(s3rver)
    for key, body in s3rver.objects.items():
        url = _sign(backend, key)
        assert url.startswith(s3rver.endpoint + "/")  # the same host:port the client connects to
        response = httpx.get(url)
        assert response.status_code == 200, (key, response.text)
        assert response.content == body


def test_urls_equal_boto3_for_the_same_server(s3rver: S3Server) -> None:
    backend = _backend(s3rver)
    now = int(time.time())
    client = s3_client(s3rver.endpoint)
    for key in s3rver.objects:
        assert _sign(backend, key, signed_at=now) == boto3_presign(
            client, s3rver.bucket, s3rver.prefix + key, signed_at=now, expires_in=300
        )


def test_tampered_urls_are_rejected(s3rver: S3Server) -> None:
    backend = _backend(s3rver)
    url = _sign(backend, "images/frame 0001.jpg")
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    other_key = url.replace("frame%200001.jpg", "a%2Bb~c.bin").replace("images/frame", "images/a")
    longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000")
    for bad in (flipped, other_key, longer):
        assert bad != url
        response = httpx.get(bad)
        assert response.status_code == 403, bad
        assert "SignatureDoesNotMatch" in response.text


def test_expired_urls_are_rejected(s3rver: S3Server) -> None:
    backend = _backend(s3rver)
    url = _sign(backend, "pointclouds/scan.pcd", signed_at=int(time.time()) - 1000, expires_in=300)
    response = httpx.get(url)
    assert response.status_code == 403
    assert "expired" in response.text


def test_response_overrides_reach_the_client(s3rver: S3Server) -> None:
    backend = _backend(
        s3rver, response_content_type="application/x-test", response_content_disposition="attachment"
    )
    response = httpx.get(_sign(backend, "images/a+b~c.bin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-test"
    assert response.headers["content-disposition"] == "attachment"


def test_head_urls_are_accepted(s3rver: S3Server) -> None:
    presigner = SigV4Presigner(_backend(s3rver).base_url, region="us-east-1")
    key = s3rver.prefix + "images/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png"
    url = presigner.presign(
        key, Credentials(ACCESS_KEY, SECRET_KEY), signed_at=int(time.time()), expires=60, method="HEAD"
    )
    response = httpx.head(url)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len("unicode \u00e9".encode())
    assert httpx.get(url).status_code == 403  # the method is part of the signature


def test_temporary_credentials_sign_the_session_token(s3rver: S3Server, no_aws_environment: None) -> None:
    now = int(time.time())

    def refresh() -> dict[str, str]:
        expiry = datetime.datetime.fromtimestamp(now + 120, datetime.UTC).isoformat()
        return {
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "token": "FwoG/+session==",
            "expiry_time": expiry,
        }

    config = S3Config(
        kind="s3",
        bucket=s3rver.bucket,
        prefix=s3rver.prefix,
        endpoint_url=s3rver.endpoint,
        addressing_style="path",
    )
    backend = S3Backend(config, session=sts_session(refresh), clock=lambda: now)
    [signed] = asyncio.run(backend.sign(["images/frame 0001.jpg"], signed_at=now, expires_in=300))
    assert signed.expires_at == now + 90
    assert httpx.get(signed.url).content == s3rver.objects["images/frame 0001.jpg"]
    # The token is covered by the signature: swapping it breaks the URL.
    assert httpx.get(signed.url.replace("session%3D%3D", "other%3D%3D")).status_code == 403


@pytest.mark.parametrize("key", ["nope.txt", "images/missing file.jpg"])
def test_missing_objects_are_404_not_signature_errors(s3rver: S3Server, key: str) -> None:
    assert httpx.get(_sign(_backend(s3rver), key)).status_code == 404
