"""The storage backends a dataset can name (``backend.kind``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from gateway.config.types import Strict


class LocalBackend(Strict):
    kind: Literal["local"]
    path: Path


class S3Backend(Strict):
    kind: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    response_content_type: str | None = None
    response_content_disposition: str | None = None


class GcsBackend(Strict):
    kind: Literal["gcs"]
    bucket: str = Field(min_length=3, max_length=222)
    prefix: str = ""
    credentials_file: Path | None = None
    signer: Literal["auto", "key", "iam", "hmac"] = "auto"
    service_account_email: str | None = None
    hmac_access_id_env: str | None = None
    hmac_secret_env: str | None = None
    endpoint: str | None = None


Backend = Annotated[LocalBackend | S3Backend | GcsBackend, Field(discriminator="kind")]
