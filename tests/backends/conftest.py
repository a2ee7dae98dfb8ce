"""Fixtures for the backend tests: a real s3rver with sample objects, and AWS credential helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.aws import S3_BUCKET, S3_OBJECTS, S3_PREFIX, S3Server
from tests.s3rver.harness import running_s3rver, s3_client


@pytest.fixture(scope="session")
def s3rver() -> Iterator[S3Server]:
    """A real s3rver with one bucket and :data:`S3_OBJECTS` uploaded under :data:`S3_PREFIX`."""
    with running_s3rver() as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket=S3_BUCKET)
        for key, body in S3_OBJECTS.items():
            client.put_object(Bucket=S3_BUCKET, Key=S3_PREFIX + key, Body=body)
        yield S3Server(endpoint, S3_BUCKET, S3_PREFIX, S3_OBJECTS)


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Remove every credential source boto3 could find on this machine (env, files, metadata)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
