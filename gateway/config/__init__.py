"""The policy file: its schema (a public contract), and loading it with every problem reported.

``gateway.config`` re-exports what the rest of the package reads, so that callers need not know
which module of the schema a section lives in.
"""

from gateway.config.auth import AuthConfig, BrowserSignIn, OidcIssuer, Vendor, VendorKey
from gateway.config.backends import (
    AzureBackend,
    AzureNetworkBinding,
    Backend,
    GcsBackend,
    LocalBackend,
    NetworkBinding,
    S3Backend,
)
from gateway.config.loading import default_policy, load_policy, parse_policy
from gateway.config.schema import (
    AuditConfig,
    CorsConfig,
    Dataset,
    Defaults,
    FileSink,
    PolicyFile,
    RateLimit,
    RedisStreamSink,
    Rule,
    StdoutSink,
)
from gateway.config.types import Duration, Network, origin_of, parse_duration

__all__ = [
    "AuditConfig", "AuthConfig", "AzureBackend", "AzureNetworkBinding", "Backend", "BrowserSignIn", "CorsConfig",
    "Dataset", "Defaults", "Duration", "FileSink", "GcsBackend", "LocalBackend", "Network", "NetworkBinding",
    "OidcIssuer", "PolicyFile", "RateLimit", "RedisStreamSink", "Rule", "S3Backend", "StdoutSink", "Vendor",
    "VendorKey", "default_policy", "load_policy", "origin_of", "parse_duration", "parse_policy",
]
