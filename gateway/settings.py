"""Process settings from the environment (prefix ``GATEWAY_``). Built explicitly, never at import."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
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
    log_level: str = "info"
    log_format: str = Field("json", pattern="^(json|text)$")
    redis_url: str | None = Field(None, description="redis://, rediss:// or redis+sentinel://host:26379/master/db")
    redis_prefix: str = Field("gw:", description="Prefix of every key the gateway writes to Redis.")
    replay_fail_closed: bool = Field(False, description="Refuse vendor HMAC requests while Redis is down.")
    cache_max_entries: int = Field(100_000, ge=1)
    dev_mode: bool = Field(False, description="Allow GATEWAY_DEV_PRINCIPAL; loopback only.")
    dev_principal: str | None = Field(None, description="Email of the fixed principal in development mode.")
    dev_groups: Annotated[list[str], NoDecode] = Field(default_factory=list)
    audit_queue_size: int = Field(10_000, ge=1)
    workers: int = Field(1, ge=1)
    max_concurrency: int = Field(256, ge=0, description="Requests in flight per worker before 503 (0: no limit).")
    tls_cert: Path | None = Field(None, description="PEM certificate chain for HTTPS; followed when it changes.")
    tls_key: Path | None = Field(None, description="PEM private key of GATEWAY_TLS_CERT.")
    session_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Browser session keys, comma-separated: the first encrypts, all decrypt.")

    @field_validator("cors_origins", "trusted_proxies", "dev_groups", "session_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
            raise ValueError("GATEWAY_REDIS_URL must start with redis://, rediss://, unix:// or redis+sentinel://")
        return value

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
