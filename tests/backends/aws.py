"""Shared S3 test data, and a stand-in for STS plugged into botocore's credential chain."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import botocore.session
from botocore.credentials import CredentialProvider, RefreshableCredentials

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
Metadata = dict[str, str]

S3_BUCKET = "gateway-test"
S3_PREFIX = "datasets/driving/"
# Keys below the prefix, chosen for their URL encoding: spaces, unicode, '+', '~', '%', '=' and '&'.
S3_OBJECTS: dict[str, bytes] = {
    "images/frame 0001.jpg": b"\xff\xd8\xff\xe0 jpeg bytes",
    "images/caf\u00e9/\u65e5\u672c\u8a9e \u00fc.png": "unicode \u00e9".encode(),
    "images/a+b~c.bin": bytes(range(256)),
    "images/100%/x=1&y=2.txt": b"percent and query characters",
    "pointclouds/scan.pcd": b"VERSION .7\nFIELDS x y z\n" * 100,
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    prefix: str
    objects: dict[str, bytes]


class FakeSts(CredentialProvider):  # type: ignore[misc]
    """Stands in for STS (AssumeRoleWithWebIdentity) through botocore's provider interface."""

    METHOD = "assume-role-with-web-identity"
    CANONICAL_NAME = "fake-sts"

    def __init__(self, refresh: Callable[[], Metadata]) -> None:
        super().__init__()
        self._refresh = refresh

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(
            metadata=self._refresh(), refresh_using=self._refresh, method=self.METHOD
        )


def sts_session(refresh: Callable[[], Metadata]) -> boto3.session.Session:
    """A boto3 session whose credential chain starts with :class:`FakeSts`, as IRSA's would."""
    core = botocore.session.Session()
    core.get_component("credential_provider").insert_before("env", FakeSts(refresh))
    return boto3.session.Session(botocore_session=core)


def expiring_in(seconds: int, now: int, calls: list[int] | None = None) -> Callable[[], Metadata]:
    def refresh() -> Metadata:
        if calls is not None:
            calls.append(1)
        expiry = datetime.datetime.fromtimestamp(now + seconds, datetime.UTC)
        return {
            "access_key": "ASIATEMPORARY",
            "secret_key": SECRET,
            "token": "FwoGZXIvYXdzE/+token==",
            "expiry_time": expiry.isoformat(),
        }

    return refresh
