"""The storage backends a dataset can name (``backend.kind``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.session_policy import MAX_SESSION_POLICY, session_policy
from gateway.config.types import Duration, Network, Strict

_ROLE_ARN = r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"
_VPCE = r"^vpce-[0-9a-f]{8,17}$"


class LocalBackend(Strict):
    kind: Literal["local"]
    path: Path


class NetworkBinding(Strict):
    """Sign a redirect dataset's URLs with an STS session that S3 lets read only from these networks.

    These are the addresses S3 sees (the company's egress or NAT addresses, VPC endpoint ids), not
    the client addresses the gateway sees. See docs/delivery.md.
    """

    role_arn: str = Field(pattern=_ROLE_ARN, max_length=2048)
    source_ips: list[Network] = Field(default_factory=list)
    vpc_endpoints: list[Annotated[str, Field(pattern=_VPCE)]] = Field(default_factory=list)
    # STS allows 15 minutes to the role's maximum session duration (at most 12 hours).
    duration: Duration = Field(3600.0, ge=900, le=43200)

    @model_validator(mode="after")
    def _some_network(self) -> NetworkBinding:
        if not self.source_ips and not self.vpc_endpoints:
            raise ValueError("give at least one of source_ips or vpc_endpoints")
        return self


def partition(region: str) -> str:
    """The AWS partition of a region, for ARNs."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class S3Backend(Strict):
    kind: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    response_content_type: str | None = None
    response_content_disposition: str | None = None
    network_binding: NetworkBinding | None = None

    @field_validator("response_content_type", "response_content_disposition")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # Sent as a response header in proxy mode: a line break would split the header.
        if value is not None and any(c in value for c in "\r\n\0"):
            raise ValueError("must be one line")
        return value

    @model_validator(mode="after")
    def _session_policy_fits(self) -> S3Backend:
        if self.network_binding is not None:
            size = len(self.session_policy() or "")
            if size > MAX_SESSION_POLICY:
                raise ValueError(f"network_binding: the session policy would be {size} characters, more than STS "
                                 f"accepts ({MAX_SESSION_POLICY}); merge source_ips into fewer CIDRs")
        return self

    def session_policy(self) -> str | None:
        """The inline session policy for ``network_binding`` (None without one)."""
        binding = self.network_binding
        if binding is None:
            return None
        return session_policy(self.bucket, self.prefix, source_ips=binding.source_ips,
                              vpc_endpoints=binding.vpc_endpoints, partition=partition(self.region))


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
