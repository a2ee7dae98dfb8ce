"""The policy file schema (version 1), validated in full at load time.

The field names here are a public contract: extend them, never rename them. The backends and the
``auth`` section have modules of their own; loading and error reporting are in ``loading.py``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.audit import AuditConfig as AuditConfig
from gateway.config.audit import FileSink as FileSink
from gateway.config.audit import RedisStreamSink as RedisStreamSink
from gateway.config.audit import StdoutSink as StdoutSink
from gateway.config.auth import AuthConfig
from gateway.config.backends import Backend
from gateway.config.types import NAME, Duration, Network, Strict


class Defaults(Strict):
    url_ttl: Duration = 300.0
    max_url_ttl: Duration = 3600.0
    # A cached or bucketed URL is handed out only while this share of its life remains.
    min_remaining: float = Field(0.5, gt=0, lt=1)
    batch_limit: int = Field(1000, ge=1, le=100_000)


class CorsConfig(Strict):
    allow_origins: list[str] = Field(default_factory=list)
    max_age: Duration = 600.0

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return origins


class RateLimit(Strict):
    requests: int = Field(ge=1)
    per: Duration


Grant = Literal["read", "list"]
READ_ONLY: tuple[Grant, ...] = ("read",)


class Rule(Strict):
    """A rule matches when every condition it names holds. A rule names at least one condition."""

    name: str = Field(pattern=NAME)
    anonymous: bool = False
    networks: list[Network] | None = None
    vendors: list[str] | None = None
    issuers: list[str] | None = None
    groups: list[str] | None = None
    subjects: list[str] | None = None
    emails: list[str] | None = None
    email_domains: list[str] | None = None
    # What the rule lets a caller do: read objects, list them (GET .../index), or both. A rule that
    # names neither grants read, as every rule did before listing existed.
    grants: list[Grant] = Field(default_factory=lambda: list(READ_ONLY), min_length=1)

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


MIN_URL_TTL = 10.0


def ttl_problems(defaults: Defaults, dataset_ttls: dict[str, float | None]) -> list[str]:
    """The URL lifetimes' bounds, across sections. A function of its own so that a file whose
    schema failed elsewhere gets these checked too, from what did parse (one run, every problem)."""
    problems = []
    if defaults.url_ttl > defaults.max_url_ttl:
        problems.append("defaults.url_ttl: exceeds defaults.max_url_ttl")
    share = defaults.min_remaining
    ttls = [("defaults.url_ttl", defaults.url_ttl)] + [
        (f"datasets.{name}.url_ttl", ttl) for name, ttl in dataset_ttls.items() if ttl is not None]
    for where, ttl in ttls:
        if where != "defaults.url_ttl" and ttl > defaults.max_url_ttl:
            problems.append(f"{where}: exceeds defaults.max_url_ttl")
        if ttl < MIN_URL_TTL:
            problems.append(f"{where}: must be at least {MIN_URL_TTL:g}s")
        elif ttl * (1 - share) < 1:
            # URLs are signed at whole seconds: a bucket under 1 s cannot keep the minimum life.
            problems.append(f"{where}: with min_remaining {share}, a URL must live at least {1 / (1 - share):g}s")
    return problems


class Dataset(Strict):
    backend: Backend
    rules: list[Rule] = Field(default_factory=list)
    url_ttl: Duration | None = None
    allow_keys: list[str] = Field(default_factory=lambda: ["**"], min_length=1)
    rate_limit: RateLimit | None = None
    # redirect: a short-lived storage URL; proxy: the gateway streams the object; auto: a redirect for
    # what a page cannot read anyway (<img>, navigations, servers), a stream for what it can (CORS
    # fetches, canvases, Range): docs/delivery.md, docs/browsers.md.
    delivery: Literal["redirect", "proxy", "auto"] = "redirect"

    @model_validator(mode="after")
    def _delivery_fits_backend(self) -> Dataset:
        if self.delivery == "proxy" and self.backend.kind == "local":
            raise ValueError("delivery: proxy is for s3, gcs and azure; the local backend always serves its own bytes")
        if self.delivery == "proxy" and getattr(self.backend, "network_binding", None):
            # A proxy dataset's URLs never leave the gateway: binding them to a network would only
            # restrict the gateway's own reads. (auto binds its redirects; its streams read unbound.)
            raise ValueError("backend.network_binding applies to delivery: redirect and auto; a proxy dataset hands "
                             "out no storage URL to bind")
        return self

    def delivery_warnings(self) -> list[str]:
        """What this dataset's delivery does not guarantee, for check-config and startup (not errors)."""
        if self.delivery == "proxy" or self.backend.kind == "local":
            return []
        warnings = []  # auto redirects <img> and servers: what holds for redirect holds for those
        anonymous = [rule.name for rule in self.rules if rule.anonymous]
        bound = getattr(self.backend, "network_binding", None) is not None
        if anonymous and not bound:
            warnings.append(f"rules {', '.join(anonymous)} admit anonymous callers by network, but delivery is "
                            f"{self.delivery} without network_binding: the network is checked at the gateway only; "
                            "a leaked URL works from anywhere until it expires (use delivery: proxy, or "
                            "network_binding on S3 or Azure)")
        if self.backend.kind == "gcs":
            warnings.append("redirect delivery on GCS is not network-bound: V4 URLs cannot carry a network; use "
                            "bucket IP filtering on the bucket, or delivery: proxy")
        return warnings

    @field_validator("allow_keys")
    @classmethod
    def _globs(cls, globs: list[str]) -> list[str]:
        for glob in globs:
            if not glob or glob.startswith("/") or "\\" in glob:
                raise ValueError(f"{glob!r} is not a key glob such as images/**")
            if len(glob) > 1024:  # matching costs the key's length times the globs' (gateway/keys.py)
                raise ValueError("a key glob holds at most 1024 characters, like the key it matches")
        return globs

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, rules: list[Rule]) -> list[Rule]:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique: {', '.join(duplicates)}")
        return rules


class PolicyFile(Strict):
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
            if not re.match(NAME, name):
                raise ValueError(f"dataset name {name!r} must match {NAME}")
        return datasets

    def warnings(self) -> list[str]:
        """Delivery caveats per dataset, located like problems (``datasets.x: ...``)."""
        return [f"datasets.{name}: {w}" for name, ds in self.datasets.items() for w in ds.delivery_warnings()]

    def cross_check(self) -> list[str]:
        """Problems that span sections: names a rule refers to, TTL bounds."""
        problems: list[str] = []
        vendor_names = {v.name for v in self.auth.vendors} | {
            k.id for v in self.auth.vendors for k in v.keys
        }
        issuer_names = {o.name for o in self.auth.oidc}
        names = [o.name for o in self.auth.oidc]
        for name in sorted({n for n in names if names.count(n) > 1}):
            if any(o.browser is not None for o in self.auth.oidc if o.name == name):
                # A session names its issuer: two with one name could not be told apart.
                problems.append(f"auth.oidc: issuer name {name!r} is used more than once with browser sign-in")
        key_ids = [k.id for v in self.auth.vendors for k in v.keys]
        for key_id in sorted({k for k in key_ids if key_ids.count(k) > 1}):
            problems.append(f"auth.vendors: key id {key_id!r} is used more than once")
        problems += ttl_problems(self.defaults, {name: ds.url_ttl for name, ds in self.datasets.items()})
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


