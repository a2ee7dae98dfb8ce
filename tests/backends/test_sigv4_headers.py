"""The proxy's SigV4 header signer equals botocore's own ``S3SigV4Auth``, byte for byte."""

from __future__ import annotations

import datetime

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials

from gateway.sigv4.headers import SigV4HeaderSigner
from gateway.sigv4.presign import Credentials

KEYS = ["datasets/driving/images/frame 0001.jpg", "d/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png", "d/a+b~c.bin",
        "d/100%/x=1&y=2.txt", "d/x//y/./z/../w"]


def botocore_headers(method: str, url: str, credentials: Credentials, region: str, now: int) -> dict[str, str]:
    request = AWSRequest(method=method, url=url)
    # UNSIGNED-PAYLOAD, as the gateway sends (botocore signs an empty body over http otherwise).
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    fixed = datetime.datetime.fromtimestamp(now, datetime.UTC)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: fixed  # type: ignore[assignment]
    try:
        botocore.auth.S3SigV4Auth(BotoCredentials(*credentials), "s3", region).add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    return dict(request.headers)


@pytest.mark.parametrize("base", ["https://b.s3.us-west-2.amazonaws.com/", "http://127.0.0.1:4568/bucket/",
                                  "https://s3.eu-central-1.amazonaws.com/my.dotted.bucket/"])
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE/+token==", "  spaced   token  "])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_headers_equal_botocore(base: str, token: str | None, method: str) -> None:
    signer = SigV4HeaderSigner(base, region="us-west-2")
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    for i, key in enumerate(KEYS):
        now = 1_700_000_000 + i * 86_399  # several days: the day key changes
        ours = signer.headers(method, key, credentials, now=now)
        theirs = botocore_headers(method, signer.url(key), credentials, "us-west-2", now)
        assert ours == theirs, key


def test_another_secret_changes_the_signature() -> None:
    signer = SigV4HeaderSigner("https://b.s3.amazonaws.com/", region="us-east-1")
    a = signer.headers("GET", "k", Credentials("AK", "secret-1"), now=1_700_000_000)
    b = signer.headers("GET", "k", Credentials("AK", "secret-2"), now=1_700_000_000)
    assert a["Authorization"] != b["Authorization"]
    assert "?" not in signer.url("k")  # the credential is never in the URL
