"""The fast SigV4 presigner gives exactly boto3's presigned URLs."""

from __future__ import annotations

import functools

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.backends.s3 import boto3_presign
from gateway.sigv4.presign import Credentials, SigV4Presigner, amz_date, bucket_base_url

AWS_EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
TOKEN = "FwoGZXIvYXdzEBYaDH/+token==with/slashes+plus"
PARAMS = {
    "response-content-type": "text/plain; charset=utf-8",
    "response-content-disposition": 'attachment; filename="caf\u00e9 1+1.txt"',
}


def test_aws_documentation_example() -> None:
    """The example from the S3 docs ("Authenticating Requests: Using Query Parameters")."""
    base = bucket_base_url(boto3.session.Session(), bucket="examplebucket", region="us-east-1")
    url = SigV4Presigner(base, region="us-east-1").presign(
        "test.txt", AWS_EXAMPLE, signed_at=1369353600, expires=86400
    )
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


def test_amz_date_formats_utc() -> None:
    assert amz_date(1369353600) == "20130524T000000Z"
    assert amz_date(1700000000) == "20231114T221320Z"


# One session per credential set: a boto3 session caches the service and endpoint models it loads.
@functools.cache
def _session(token: str | None) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=AWS_EXAMPLE.access_key,
        aws_secret_access_key=AWS_EXAMPLE.secret_key,
        aws_session_token=token,
    )


@functools.cache
def _base(bucket: str, region: str, endpoint: str | None, style: str) -> str:
    return bucket_base_url(
        _session(None), bucket=bucket, region=region, endpoint_url=endpoint, addressing_style=style
    )


@functools.cache
def _client(region: str, endpoint: str | None, style: str, token: str | None) -> BaseClient:
    config = Config(signature_version="s3v4", s3={"addressing_style": style})
    return _session(token).client("s3", region_name=region, endpoint_url=endpoint, config=config)


_SPECIAL = list(" +~%/=&?#!'()*:@;,$[]^`{}|<>\"\u00e9\u00fc\u65e5\u20ac\U0001f600")
keys = st.text(
    alphabet=st.one_of(st.sampled_from(_SPECIAL), st.characters(codec="utf-8", exclude_categories=("Cs",))),
    min_size=1,
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    key=keys,
    bucket=st.sampled_from(["examplebucket", "my.dotted.bucket", "a-b-123"]),
    region=st.sampled_from(["us-east-1", "eu-central-1"]),
    endpoint=st.sampled_from([None, "http://127.0.0.1:9000", "https://s3.example.com:8443"]),
    style=st.sampled_from(["auto", "path", "virtual"]),
    token=st.sampled_from([None, TOKEN]),
    with_params=st.booleans(),
    method=st.sampled_from(["GET", "HEAD"]),
    signed_at=st.integers(min_value=1_262_304_000, max_value=2_208_988_800),  # 2010 .. 2040
    expires=st.integers(min_value=1, max_value=604_800),
)
def test_matches_boto3_generate_presigned_url(
    key: str,
    bucket: str,
    region: str,
    endpoint: str | None,
    style: str,
    token: str | None,
    with_params: bool,
    method: str,
    signed_at: int,
    expires: int,
) -> None:
    params = PARAMS if with_params and method == "GET" else {}
    presigner = SigV4Presigner(_base(bucket, region, endpoint, style), region=region, params=params)
    credentials = Credentials(AWS_EXAMPLE.access_key, AWS_EXAMPLE.secret_key, token)
    ours = presigner.presign(key, credentials, signed_at=signed_at, expires=expires, method=method)
    theirs = boto3_presign(
        _client(region, endpoint, style, token),
        bucket,
        key,
        signed_at=signed_at,
        expires_in=expires,
        method=method,
        response_content_type=params.get("response-content-type"),
        response_content_disposition=params.get("response-content-disposition"),
    )
    assert ours == theirs


def test_signing_key_is_cached_per_secret_and_day() -> None:
    presigner = SigV4Presigner(_base("examplebucket", "us-east-1", None, "virtual"), region="us-east-1")
    first = presigner.presign("k", AWS_EXAMPLE, signed_at=1369353600, expires=60)
    rotated = Credentials(AWS_EXAMPLE.access_key, "another-secret")
    # A rotated secret (same access key) must not reuse the cached key of the old one.
    assert presigner.presign("k", rotated, signed_at=1369353600, expires=60) != first
    assert presigner.presign("k", AWS_EXAMPLE, signed_at=1369353600, expires=60) == first
    # Next day: a different date in the scope, and a signature from a freshly derived key.
    next_day = presigner.presign("k", AWS_EXAMPLE, signed_at=1369353600 + 86400, expires=60)
    assert "20130525%2Fus-east-1" in next_day
    theirs = boto3_presign(
        _client("us-east-1", None, "virtual", None),
        "examplebucket",
        "k",
        signed_at=1369353600 + 86400,
        expires_in=60,
    )
    assert next_day == theirs


@pytest.mark.parametrize("expires", [0, -1, 604_801])
def test_rejects_expiry_outside_sigv4_limits(expires: int) -> None:
    presigner = SigV4Presigner("https://b.s3.amazonaws.com/", region="us-east-1")
    with pytest.raises(ValueError, match="expires"):
        presigner.presign("k", AWS_EXAMPLE, signed_at=1369353600, expires=expires)
