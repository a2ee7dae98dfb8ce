"""Process settings from the environment (prefix ``GATEWAY_``). Built explicitly, never at import."""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


MIN_SESSION_KEY_BYTES = 32
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


def decode_session_key(text: str) -> bytes:
    """One entry of GATEWAY_SESSION_KEYS: base64 or base64url (``openssl rand -base64 32``) of at
    least 32 random bytes. A key with few distinct bytes (``aaaa...``, a placeholder) is refused:
    whoever guesses it can forge every session."""
    text = text.strip()
    if not _BASE64.match(text):
        raise ValueError("each GATEWAY_SESSION_KEYS entry is base64 of random bytes (openssl rand -base64 32)")
    padded = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(padded + "=" * (-len(padded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a GATEWAY_SESSION_KEYS entry is not valid base64") from None
    if len(key) < MIN_SESSION_KEY_BYTES or len(set(key)) < 16:
        raise ValueError(f"each GATEWAY_SESSION_KEYS entry must hold at least {MIN_SESSION_KEY_BYTES} random bytes")
    return key


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def is_loopback_host(host: str) -> bool:
    """An IP literal on loopback, or ``localhost`` (the only name that resolves there by definition)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def is_any_address(host: str) -> bool:
    """``0.0.0.0``, ``::`` (or an empty host): the socket listens on every interface, loopback included."""
    try:
        return not host or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class Settings(BaseSettings):
    """Every field is also an environment variable: ``config`` is ``GATEWAY_CONFIG`` and so on."""

    # Errors never quote what was given: the values include keys (GATEWAY_SIGNING_KEY, GATEWAY_SESSION_KEYS).
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True, hide_input_in_errors=True)

    config: Path | None = Field(None, description="Policy file; without it, the embedded default runs.")
    local_dir: Path = Field(Path("./data"), description="Folder served by the embedded default.")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(None, description="Base of absolute URLs the gateway builds.")
    signing_key: str | None = Field(None, description="HMAC key for local-disk URLs (>= 32 chars).")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[Network], NoDecode] = Field(default_factory=list)
    reload_interval: float = Field(2.0, gt=0, description="Seconds between policy file checks.")
    log_level: LogLevel = "info"
    log_format: Literal["json", "text"] = "json"
    redis_url: str | None = Field(None, description="redis://, rediss://, redis+sentinel://, redis+cluster://, "
                                  "rediss+cluster:// (docs/redis.md)")
    redis_prefix: str = Field("gw:", description="Prefix of every key the gateway writes to Redis.")
    # How the gateway reaches and trusts Redis (docs/redis.md). Secrets never appear in errors or logs.
    redis_username: str | None = Field(None, description="ACL user name (instead of the URL's).")
    redis_password: SecretStr | None = Field(None, description="Password (instead of the URL's).")
    redis_password_file: Path | None = Field(None, description="File holding the password, read for every "
                                             "new connection, so that a rotated Secret applies without a restart.")
    redis_sentinel_password: SecretStr | None = Field(None, description="The sentinels' own password.")
    redis_auth: Literal["password", "elasticache-iam", "memorystore-iam"] = "password"
    redis_iam_cache: str | None = Field(None, description="ElastiCache IAM: the replication group or serverless "
                                        "cache name the token is for.")
    redis_iam_region: str | None = Field(None, description="ElastiCache IAM: the cache's region (else AWS_REGION).")
    redis_iam_serverless: bool = Field(False, description="ElastiCache IAM: the cache is serverless.")
    redis_ca_file: Path | None = Field(None, description="CA bundle that signs the Redis servers' TLS certificates.")
    redis_connect_timeout: float = Field(1.0, gt=0, le=30, description="Seconds to open a connection (TCP, TLS).")
    redis_timeout: float = Field(0.25, gt=0, le=30, description="Seconds to wait for one command's answer.")
    redis_wait_replicas: int | None = Field(None, ge=0, le=16, description="With GATEWAY_REPLAY_FAIL_CLOSED, "
                                            "replicas that must confirm a nonce (default: 1 with Sentinel and "
                                            "Cluster, 0 for one server).")
    redis_wait_timeout: float = Field(0.1, gt=0, le=5, description="Seconds to wait for the replicas' confirmation.")
    redis_read_from_replicas: bool = Field(False, description="Cluster: read cached signed URLs from replicas.")
    replay_fail_closed: bool = Field(False, description="Refuse vendor HMAC requests while Redis is down.")
    cache_max_entries: int = Field(100_000, ge=1)
    dev_mode: bool = Field(False, description="Allow GATEWAY_DEV_PRINCIPAL; loopback only.")
    dev_principal: str | None = Field(None, description="Email of the fixed principal in development mode.")
    dev_groups: Annotated[list[str], NoDecode] = Field(default_factory=list)
    audit_queue_size: int = Field(10_000, ge=1)
    workers: int = Field(1, ge=1)
    max_concurrency: int = Field(256, ge=0, description="Requests in flight per worker before 503 (0: no limit).")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host names served (name or name:port; * for any). Default: see docs.")
    header_timeout: float = Field(5.0, gt=0, description="Seconds a client has to send a request head.")
    body_timeout: float = Field(10.0, gt=0, description="Seconds a client has to send a request body.")
    keepalive_timeout: float = Field(5.0, gt=0, description="Seconds an idle keep-alive connection stays open.")
    max_header_bytes: int = Field(65_536, ge=4096, description="Largest request line and headers, in bytes.")
    max_headers: int = Field(100, ge=10, description="Most header lines in one request.")
    admin_port: int | None = Field(None, ge=1, le=65535,
                                   description="A second listener for /metrics and the detailed /readyz.")
    openapi: bool = Field(False, description="Serve /openapi.json (the batch API's schema).")
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for", description="The one forwarding header read from trusted proxies.")
    upstream_timeout: float = Field(30.0, gt=0, description="Proxy delivery: seconds to wait for the storage.")
    tls_cert: Path | None = Field(None, description="PEM certificate chain for HTTPS; followed when it changes.")
    tls_key: Path | None = Field(None, description="PEM private key of GATEWAY_TLS_CERT.")
    session_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Browser session keys, comma-separated: the first encrypts, all decrypt.")

    @field_validator("cors_origins", "trusted_proxies", "dev_groups", "allowed_hosts", "session_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("signing_key")
    @classmethod
    def _key_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 32:
            raise ValueError("GATEWAY_SIGNING_KEY must be at least 32 characters")
        return value

    @field_validator("session_keys")
    @classmethod
    def _session_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            decode_session_key(key.get_secret_value())  # the message never quotes the key
        return keys

    def session_key_bytes(self) -> list[bytes]:
        return [decode_session_key(key.get_secret_value()) for key in self.session_keys]

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together: set both, or neither")
        return self

    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"


def variable(field: str) -> str:
    """The environment variable of a settings field: ``log_level`` is ``GATEWAY_LOG_LEVEL``."""
    return f"GATEWAY_{field.upper()}"


def describe_errors(exc: ValidationError, options: Mapping[str, str] | None = None) -> list[str]:
    """One line per bad setting, naming the variable (or the command-line option it came from) and
    what it accepts. The value itself is never quoted: it may be a key (hide_input_in_errors)."""
    by_name: dict[str, list[str]] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = (options or {}).get(field) or (variable(field) if field else "settings")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = f"must be one of {error.get('ctx', {}).get('expected', '')}"
        if message not in by_name.setdefault(name, []):
            by_name[name].append(message)  # a union (IPv4 or IPv6 network) fails once per branch
    return [f"{name}: {' or '.join(messages)}" for name, messages in by_name.items()]


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``GATEWAY_*`` variable that is no setting (a typo is otherwise silently
    ignored, and the default it meant to change stays in force), naming the closest real one."""
    known = sorted(variable(name) for name in Settings.model_fields)
    warnings = []
    for name in sorted(environ):
        if not name.startswith("GATEWAY_") or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        hint = f"did you mean {close[0]}?" if close else "see the README's Process settings"
        warnings.append(f"{name} is not a setting and is ignored ({hint})")
    return warnings
