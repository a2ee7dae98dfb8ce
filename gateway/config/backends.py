"""The storage backends a dataset can name (``backend.kind``)."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

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


def trust_context(bundle: Path | None) -> ssl.SSLContext | bool:
    """The TLS verification for a backend's own CA bundle: a context that trusts exactly ``bundle``,
    or True (the system's trust store) without one. Raises ValueError naming what is wrong."""
    if bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(bundle))
    except FileNotFoundError:
        raise ValueError(f"no file {str(bundle)[:200]!r}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{str(bundle)[:200]!r} is not a readable PEM bundle of CA certificates "
                         f"({exc.__class__.__name__})") from None


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
    # PEM file of the CAs that sign endpoint_url's certificate (an S3-compatible store on a company CA);
    # without it the system's trust store. Read by listing and by proxy delivery; a presigned redirect
    # never connects, the browser does (and must trust the same CA).
    ca_bundle: Path | None = None

    @field_validator("ca_bundle")
    @classmethod
    def _readable_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            trust_context(value)  # a clear error at load time, not at the first proxied read
        return value

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


def one_range(networks: list[Network]) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | str:
    """(first, last) of the one IPv4 range the networks cover together, or the reason they do not.

    A SAS carries one ``sip`` range; adjacent or overlapping CIDRs merge into it, gaps do not."""
    if any(network.version != 4 for network in networks):
        return "an IPv6 network cannot go into a SAS's sip"
    spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in networks)
    first, last = spans[0]
    blocks = 1
    for start, end in spans[1:]:
        if start > last + 1:
            blocks += 1
        last = max(last, end)
    if blocks > 1:
        return f"they are {blocks} separate address ranges"
    return ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)


class AzureNetworkBinding(Strict):
    """Put the company's egress range into every redirect SAS (``sip``): Azure Storage refuses the
    URL from any other address. These are the addresses the storage sees (NAT, egress), not the
    client addresses the gateway sees. A SAS carries one range (docs/backends.md)."""

    source_ips: list[Network] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_range(self) -> AzureNetworkBinding:
        covered = one_range(self.source_ips)
        if isinstance(covered, str):
            raise ValueError(f"source_ips: {covered}, and an Azure SAS carries one IPv4 address range (sip): use "
                             "delivery: proxy, or one dataset per range")
        return self

    def sip(self) -> str:
        """The ``sip`` value: one address, or ``first-last``."""
        covered = one_range(self.source_ips)
        assert not isinstance(covered, str)  # noqa: S101 - the validator refused anything else
        first, last = covered
        return str(first) if first == last else f"{first}-{last}"


class AzureBackend(Strict):
    """Azure Blob Storage. Identities (``default``, ``workload_identity``, ``managed_identity``) sign
    user-delegation SAS; ``account_key`` is for development, and its key never sits in this file."""

    kind: Literal["azure"]
    account: str = Field(pattern=r"^[a-z0-9]{3,24}$")
    container: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    prefix: str = ""
    # Default https://<account>.blob.core.windows.net; sovereign clouds and Azurite name their own.
    endpoint: str | None = None
    credential: Literal["default", "workload_identity", "managed_identity", "account_key"] = "default"
    client_id: str | None = None  # a user-assigned managed identity, or the workload identity's app
    account_key_env: str | None = None
    account_key_file: Path | None = None
    # User delegation keys are asked for this long and replaced after half of it (1h to 7 days).
    delegation_key_life: Duration = Field(14400.0, ge=3600, le=7 * 86400)
    # The storage service version of SAS (sv) and reads; 2025-11-05 for stores that lag (Azurite 3.35).
    api_version: Literal["2026-10-06", "2025-11-05"] = "2026-10-06"
    response_content_type: str | None = None
    response_content_disposition: str | None = None
    network_binding: AzureNetworkBinding | None = None

    @field_validator("response_content_type", "response_content_disposition")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(c in value for c in "\r\n\0"):
            raise ValueError("must be one line")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment or (
                "@" in parts.netloc):
            raise ValueError("endpoint must be an http(s) URL such as https://acme.blob.core.usgovcloudapi.net")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _key_source(self) -> AzureBackend:
        sources = (self.account_key_env is not None) + (self.account_key_file is not None)
        if self.credential == "account_key" and sources != 1:
            raise ValueError("credential: account_key needs exactly one of account_key_env or account_key_file")
        if self.credential != "account_key" and sources:
            raise ValueError("account_key_env and account_key_file go with credential: account_key")
        if self.credential == "account_key" and self.client_id is not None:
            raise ValueError("client_id names an identity; credential: account_key has none")
        return self

    def blob_endpoint(self) -> str:
        """The account's blob endpoint, without a trailing slash."""
        return self.endpoint or f"https://{self.account}.blob.core.windows.net"


Backend = Annotated[LocalBackend | S3Backend | GcsBackend | AzureBackend, Field(discriminator="kind")]
