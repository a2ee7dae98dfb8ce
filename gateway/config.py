"""The policy file schema (version 1), validated in full at load time.

The field names here are a public contract: extend them, never rename them.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> float:
    """``300s``, ``5m``, ``1h``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 300s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 300s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    url_ttl: Duration = 300.0
    max_url_ttl: Duration = 3600.0
    # A cached or bucketed URL is handed out only while this share of its life remains.
    min_remaining: float = Field(0.5, gt=0, lt=1)
    batch_limit: int = Field(1000, ge=1, le=100_000)


class CorsConfig(_Strict):
    allow_origins: list[str] = Field(default_factory=list)
    max_age: Duration = 600.0

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return origins


class LocalBackend(_Strict):
    kind: Literal["local"]
    path: Path


class S3Backend(_Strict):
    kind: Literal["s3"]
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    response_content_type: str | None = None
    response_content_disposition: str | None = None


class GcsBackend(_Strict):
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


class RateLimit(_Strict):
    requests: int = Field(ge=1)
    per: Duration


class Rule(_Strict):
    """A rule matches when every condition it names holds. A rule names at least one condition."""

    name: str = Field(pattern=_NAME)
    anonymous: bool = False
    networks: list[Network] | None = None
    vendors: list[str] | None = None
    issuers: list[str] | None = None
    groups: list[str] | None = None
    subjects: list[str] | None = None
    emails: list[str] | None = None
    email_domains: list[str] | None = None

    @model_validator(mode="after")
    def _conditions(self) -> Rule:
        identity = [self.vendors, self.issuers, self.groups, self.subjects, self.emails, self.email_domains]
        for values in (*identity, self.networks):
            if values is not None and not values:
                raise ValueError("an empty list matches nothing; remove the condition or fill it")
        for values in identity:
            if values is not None and any(not str(v).strip() for v in values):
                raise ValueError("an empty name would match principals that lack the claim")
        if self.anonymous and not self.networks:
            # Anonymous access without a network condition would open the dataset to the world.
            raise ValueError("anonymous: true needs a networks condition")
        if self.anonymous and any(v is not None for v in identity):
            raise ValueError("anonymous: true cannot be combined with identity conditions")
        if not self.anonymous and self.networks is None and all(v is None for v in identity):
            raise ValueError("a rule needs at least one condition")
        return self


class Dataset(_Strict):
    backend: Backend
    rules: list[Rule] = Field(default_factory=list)
    url_ttl: Duration | None = None
    allow_keys: list[str] = Field(default_factory=lambda: ["**"], min_length=1)
    rate_limit: RateLimit | None = None

    @field_validator("allow_keys")
    @classmethod
    def _globs(cls, globs: list[str]) -> list[str]:
        for glob in globs:
            if not glob or glob.startswith("/") or "\\" in glob:
                raise ValueError(f"{glob!r} is not a key glob such as images/**")
        return globs

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[Rule]) -> list[Rule]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        return rules


class VendorKey(_Strict):
    id: str = Field(pattern=_NAME)
    secret_env: str | None = None
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VendorKey:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env or secret_file")
        return self


class Vendor(_Strict):
    name: str = Field(pattern=_NAME)
    keys: list[VendorKey] = Field(min_length=1)
    max_skew: Duration = 300.0


class OidcIssuer(_Strict):
    name: str = Field(pattern=_NAME)
    issuer: str = Field(pattern=r"^https?://")
    audience: str | list[str]
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwks_uri: str | None = None
    subject_claim: str = "sub"
    email_claim: str = "email"
    groups_claim: str = "groups"
    leeway: Duration = Field(60.0, le=600)
    jwks_cache_ttl: Duration = 3600.0
    jwks_refetch_interval: Duration = 30.0

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        # Symmetric and unsigned algorithms would let a public key act as a shared secret.
        bad = [a for a in algorithms if a not in allowed]
        if bad or not algorithms:
            raise ValueError(f"algorithms must be asymmetric ({', '.join(sorted(allowed))}); got {bad or '[]'}")
        return algorithms


class AuthConfig(_Strict):
    vendors: list[Vendor] = Field(default_factory=list)
    oidc: list[OidcIssuer] = Field(default_factory=list)


class StdoutSink(_Strict):
    kind: Literal["stdout"]


class FileSink(_Strict):
    kind: Literal["file"]
    path: Path


class RedisStreamSink(_Strict):
    kind: Literal["redis_stream"]
    stream: str = "gateway:audit"
    maxlen: int = Field(1_000_000, ge=1)


Sink = Annotated[StdoutSink | FileSink | RedisStreamSink, Field(discriminator="kind")]


def _stdout() -> StdoutSink | FileSink | RedisStreamSink:
    return StdoutSink(kind="stdout")


class AuditConfig(_Strict):
    sinks: list[Sink] = Field(default_factory=lambda: [_stdout()], min_length=1)
    fail_closed: bool = False


class PolicyFile(_Strict):
    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    cors: CorsConfig = Field(default_factory=CorsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    datasets: dict[str, Dataset]

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, datasets: dict[str, Dataset]) -> dict[str, Dataset]:
        for name in datasets:
            if not re.match(_NAME, name):
                raise ValueError(f"dataset name {name!r} must match {_NAME}")
        return datasets

    def cross_check(self) -> list[str]:
        """Problems that span sections: names a rule refers to, TTL bounds."""
        problems: list[str] = []
        vendor_names = {v.name for v in self.auth.vendors} | {
            k.id for v in self.auth.vendors for k in v.keys
        }
        issuer_names = {o.name for o in self.auth.oidc}
        key_ids = [k.id for v in self.auth.vendors for k in v.keys]
        for key_id in sorted({k for k in key_ids if key_ids.count(k) > 1}):
            problems.append(f"auth.vendors: key id {key_id!r} is used more than once")
        if self.defaults.url_ttl > self.defaults.max_url_ttl:
            problems.append("defaults.url_ttl: exceeds defaults.max_url_ttl")
        share = self.defaults.min_remaining
        ttls = [("defaults.url_ttl", self.defaults.url_ttl)] + [
            (f"datasets.{name}.url_ttl", ds.url_ttl) for name, ds in self.datasets.items() if ds.url_ttl is not None
        ]
        for where, ttl in ttls:
            if where != "defaults.url_ttl" and ttl > self.defaults.max_url_ttl:
                problems.append(f"{where}: exceeds defaults.max_url_ttl")
            if ttl < 10:
                problems.append(f"{where}: must be at least 10s")
            elif ttl * (1 - share) < 1:
                # URLs are signed at whole seconds: a bucket under 1 s cannot keep the minimum life.
                problems.append(f"{where}: with min_remaining {share}, a URL must live at least {1 / (1 - share):g}s")
        for name, dataset in self.datasets.items():
            for i, rule in enumerate(dataset.rules):
                where = f"datasets.{name}.rules.{i}"
                for vendor in rule.vendors or []:
                    if vendor not in vendor_names and vendor not in issuer_names:
                        problems.append(f"{where}.vendors: {vendor!r} is not in auth.vendors or auth.oidc")
                for issuer in rule.issuers or []:
                    if issuer not in issuer_names:
                        problems.append(f"{where}.issuers: {issuer!r} is not in auth.oidc")
        return problems


_KINDS = {"local", "s3", "gcs", "stdout", "file", "redis_stream"}


def _location(loc: tuple[int | str, ...]) -> str:
    """The user's path to a problem, without pydantic's internal tags: validator names such as
    ``function-after[...]``, and the union branch that follows ``backend`` or a sink's index."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and "[" in part:
            continue
        previous = loc[i - 1] if i else None
        after_sink_index = isinstance(previous, int) and i > 1 and loc[i - 2] == "sinks"
        if part in _KINDS and (previous == "backend" or after_sink_index):
            continue
        parts.append(str(part))
    return ".".join(parts) or "(top level)"


def _names(items: object, field: str) -> set[str]:
    return {str(item.get(field)) for item in items if isinstance(item, dict)} if isinstance(items, list) else set()


def _raw_references(data: dict[str, Any]) -> list[str]:
    """Rule references to unknown vendors or issuers, read leniently from a file that failed the
    schema, so that one run reports those too."""
    auth: dict[str, Any] = data["auth"] if isinstance(data.get("auth"), dict) else {}
    vendors = auth.get("vendors")
    issuers = _names(auth.get("oidc"), "name")
    known_vendors = _names(vendors, "name") | issuers
    for vendor in vendors if isinstance(vendors, list) else []:
        if isinstance(vendor, dict):
            known_vendors |= _names(vendor.get("keys"), "id")
    problems = []
    datasets = data.get("datasets")
    for name, dataset in (datasets.items() if isinstance(datasets, dict) else []):
        rules = dataset.get("rules") if isinstance(dataset, dict) else None
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            for field, known, section in (("vendors", known_vendors, "auth.vendors or auth.oidc"),
                                          ("issuers", issuers, "auth.oidc")):
                values = rule.get(field)
                for value in values if isinstance(values, list) else []:
                    if str(value) not in known:
                        problems.append(f"datasets.{name}.rules.{i}.{field}: {value!r} is not in {section}")
    return problems


def parse_policy(text: str, source: str = "<policy>") -> PolicyFile:
    """Parse and validate a policy document. Raises ConfigError listing every problem found."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping with version and datasets"])
    try:
        policy = PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(source, problems + _raw_references(data)) from None
    problems = policy.cross_check()
    if problems:
        raise ConfigError(source, problems)
    return policy


def load_policy(path: Path) -> tuple[PolicyFile, bytes]:
    """Read and validate a policy file; returns the policy and the raw bytes it came from."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["the file is not valid UTF-8"]) from None
    return parse_policy(text, str(path)), raw


def default_policy(local_dir: Path, cors_origins: list[str] | None = None) -> PolicyFile:
    """The embedded default: one local dataset, anonymous access from loopback only."""
    return PolicyFile.model_validate(
        {
            "version": 1,
            "cors": {"allow_origins": cors_origins or []},
            "datasets": {
                "local": {
                    "backend": {"kind": "local", "path": str(local_dir)},
                    "rules": [
                        {"name": "loopback", "anonymous": True, "networks": ["127.0.0.0/8", "::1/128"]}
                    ],
                }
            },
        }
    )
