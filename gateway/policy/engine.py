"""The decision: deny by default; allow when every condition of at least one rule holds."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from gateway.config import Dataset, PolicyFile, Rule
from gateway.keys import MAX_KEY_BYTES, compile_globs
from gateway.models import AuthMethod, Decision, DenyReason, IPAddress, Principal


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One rule's verdict for ``gateway explain``: which conditions it lacked."""

    rule: str
    matched: bool
    missing: tuple[str, ...]


def _rule_gaps(rule: Rule, principal: Principal, client_ip: IPAddress, ranges: Ranges | None) -> list[str]:
    gaps: list[str] = []
    if ranges is not None and not _in_ranges(client_ip, ranges):
        gaps.append(f"networks: {client_ip} is not in {', '.join(map(str, rule.networks or []))}")
    if rule.anonymous:
        return gaps
    if principal.method is AuthMethod.ANONYMOUS:
        # Only `anonymous: true` rules admit a request that carries no credential.
        return [*gaps, "a credential: this rule is not anonymous"]
    if rule.vendors is not None:
        names = {principal.issuer, principal.key_id} - {None}
        vendor_like = principal.method in (AuthMethod.VENDOR_HMAC, AuthMethod.OIDC)
        if not (vendor_like and names & set(rule.vendors)):
            gaps.append(f"vendors: not one of {', '.join(rule.vendors)}")
    if rule.issuers is not None and not (principal.method in _SIGNED_IN and principal.issuer in rule.issuers):
        gaps.append(f"issuers: not one of {', '.join(rule.issuers)}")
    if rule.groups is not None and not principal.groups & set(rule.groups):
        gaps.append(f"groups: none of {', '.join(rule.groups)}")
    if rule.subjects is not None and principal.subject not in rule.subjects:
        gaps.append("subjects: subject not listed")
    email = (principal.email or "").lower()
    if rule.emails is not None and email not in {e.lower() for e in rule.emails}:
        gaps.append("emails: email not listed")
    if rule.email_domains is not None and not any(
        email.endswith("@" + d.lower().lstrip("@")) for d in rule.email_domains
    ):
        gaps.append(f"email_domains: not in {', '.join(rule.email_domains)}")
    return gaps


Ranges = tuple[tuple[int, int, int], ...]  # (version, first, last) as integers
_VENDORISH = (AuthMethod.VENDOR_HMAC, AuthMethod.OIDC)
# An issuer vouches for its bearer tokens and for the browser sessions signed in with it alike (and
# for their capabilities: a session's delegate); a browser session is never a vendor (it is an
# employee's browser).
_SIGNED_IN = (AuthMethod.OIDC, AuthMethod.BROWSER_SESSION, AuthMethod.CAPABILITY)


def _ranges(rule: Rule) -> Ranges | None:
    if rule.networks is None:
        return None
    return tuple((n.version, int(n.network_address), int(n.broadcast_address)) for n in rule.networks)


def _in_ranges(ip: IPAddress, ranges: Ranges) -> bool:
    return _in((ip.version, int(ip)), ranges)


def _in(ip: tuple[int, int], ranges: Ranges) -> bool:
    # Integer comparisons: ipaddress's own containment test is several times slower per request.
    version, value = ip
    for v, first, last in ranges:
        if v == version and first <= value <= last:
            return True
    return False


def _set(values: list[str] | None, *, lower: bool = False) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(v.lower() for v in values) if lower else frozenset(values)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its conditions precomputed into sets and integer ranges, for the request path.
    ``_rule_gaps`` states the same conditions in words, for ``gateway explain``."""

    rule: Rule
    allow: Decision  # the decisions this rule makes, built once
    key_denied: Decision
    ranges: Ranges | None
    vendors: frozenset[str] | None
    issuers: frozenset[str] | None
    groups: frozenset[str] | None
    subjects: frozenset[str] | None
    emails: frozenset[str] | None
    domains: tuple[str, ...] | None

    @classmethod
    def of(cls, rule: Rule) -> CompiledRule:
        domains = None if rule.email_domains is None else tuple(
            "@" + d.lower().lstrip("@") for d in rule.email_domains)
        return cls(rule, Decision(True, rule=rule.name),
                   Decision(False, rule=rule.name, reason=DenyReason.KEY_NOT_ALLOWED), _ranges(rule),
                   _set(rule.vendors), _set(rule.issuers), _set(rule.groups), _set(rule.subjects),
                   _set(rule.emails, lower=True), domains)

    def matches(self, principal: Principal, client_ip: IPAddress, ip: tuple[int, int]) -> bool:
        """``ip`` is ``client_ip`` as (version, integer), computed once per decision."""
        if self.ranges is not None and not _in(ip, self.ranges):
            return False
        if self.rule.anonymous:
            return True
        method = principal.method
        if method is AuthMethod.ANONYMOUS:
            return False  # only `anonymous: true` rules admit a request without a credential
        if self.vendors is not None and not (
            method in _VENDORISH and (principal.issuer in self.vendors or principal.key_id in self.vendors)
        ):
            return False
        if self.issuers is not None and not (method in _SIGNED_IN and principal.issuer in self.issuers):
            return False
        if self.groups is not None and self.groups.isdisjoint(principal.groups):
            return False
        if self.subjects is not None and principal.subject not in self.subjects:
            return False
        email = (principal.email or "").lower()
        if self.emails is not None and email not in self.emails:
            return False
        return self.domains is None or email.endswith(self.domains)


_MEMO_ENTRIES = 16_384
_NO_RULES = Decision(False, reason=DenyReason.NO_RULES)
_NO_RULE_MATCHED = Decision(False, reason=DenyReason.NO_RULE_MATCHED)


@dataclass(frozen=True, eq=False)
class CompiledDataset:
    """A dataset ready for the request path: its rules compiled, its URL timing worked out.

    URLs are signed at the start of a time bucket ``url_ttl x (1 - min_remaining)`` wide and handed
    out only while ``min_life`` seconds of their life remain (see gateway.service.signing)."""

    name: str
    config: Dataset
    url_ttl: float
    key_pattern: re.Pattern[str]
    rules: tuple[CompiledRule, ...] = ()
    min_remaining: float = 0.5
    proxy: bool = False  # delivery: proxy (decided here once, so a redirect request parses nothing more)
    auto: bool = False  # delivery: auto: a stream for what a page can read (CORS), else a redirect
    ttl: int = field(init=False)
    bucket: int = field(init=False)
    min_life: float = field(init=False)
    max_key_bytes: int = field(init=False)  # 1024 bytes for the whole stored key, prefix included
    _memo: dict[tuple[int, int], tuple[Principal, IPAddress, CompiledRule | None]] = field(
        init=False, default_factory=dict, repr=False)
    _list_memo: dict[tuple[int, int], tuple[Principal, IPAddress, CompiledRule | None]] = field(
        init=False, default_factory=dict, repr=False)
    read_rules: tuple[CompiledRule, ...] = field(init=False, repr=False)  # the rules that grant read
    list_rules: tuple[CompiledRule, ...] = field(init=False, repr=False)  # and list

    def __post_init__(self) -> None:
        ttl = int(self.url_ttl)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "bucket", max(1, int(ttl * (1 - self.min_remaining))))
        object.__setattr__(self, "min_life", ttl * self.min_remaining)
        prefix = getattr(self.config.backend, "prefix", "")
        object.__setattr__(self, "max_key_bytes", MAX_KEY_BYTES - len(prefix.encode("utf-8")))
        object.__setattr__(self, "read_rules", tuple(r for r in self.rules if "read" in r.rule.grants))
        object.__setattr__(self, "list_rules", tuple(r for r in self.rules if "list" in r.rule.grants))

    def decide(self, principal: Principal, client_ip: IPAddress, key: str, action: str = "read") -> Decision:
        """Deny by default: no rules, or no matching rule, is a denial with a reason."""
        if not self.rules:
            return _NO_RULES
        rule = self.matching_rule(principal, client_ip, action)
        if rule is None:
            return _NO_RULE_MATCHED
        return rule.allow if self.key_pattern.match(key) else rule.key_denied

    def matching_rule(self, principal: Principal, client_ip: IPAddress, action: str = "read") -> CompiledRule | None:
        """The first rule that admits this caller from this address to ``action`` (``read`` or
        ``list``), whatever the key.

        Remembered per (principal, address) object pair: a caller asks for many keys, and rules do
        not depend on the key. The memo is keyed by identity and holds both objects, so an id is
        never reused while its entry lives; both are immutable, so equal inputs mean equal answers.
        It lives and dies with this compiled policy (a reload starts afresh), and is bounded.
        """
        memo, rules = (self._memo, self.read_rules) if action == "read" else (self._list_memo, self.list_rules)
        entry = memo.get((id(principal), id(client_ip)))
        if entry is not None and entry[0] is principal and entry[1] is client_ip:
            return entry[2]
        ip = (client_ip.version, int(client_ip))
        found = next((rule for rule in rules if rule.matches(principal, client_ip, ip)), None)
        if len(memo) >= _MEMO_ENTRIES:
            memo.clear()
        memo[(id(principal), id(client_ip))] = (principal, client_ip, found)
        return found

    def explain(self, principal: Principal, client_ip: IPAddress) -> list[RuleCheck]:
        checks = []
        for compiled in self.rules:
            rule = compiled.rule
            gaps = _rule_gaps(rule, principal, client_ip, compiled.ranges)
            checks.append(RuleCheck(rule.name, not gaps, tuple(gaps)))
        return checks


@dataclass(frozen=True)
class CompiledPolicy:
    source: PolicyFile
    version: str
    datasets: dict[str, CompiledDataset] = field(default_factory=dict)
    proxied: frozenset[str] = frozenset()  # the names of the proxy datasets
    auto: frozenset[str] = frozenset()  # the names of the delivery: auto datasets

    def dataset(self, name: str) -> CompiledDataset | None:
        return self.datasets.get(name)


def compile_policy(policy: PolicyFile, raw: bytes | None = None) -> CompiledPolicy:
    """Precompile globs and TTLs once, so that a decision does no parsing.

    ``version`` is a short hash of the file's bytes (or of the normalized policy), so that
    every replica reports the same version for the same file.
    """
    digest_source = raw if raw is not None else policy.model_dump_json().encode()
    version = hashlib.sha256(digest_source).hexdigest()[:12]
    datasets = {
        name: CompiledDataset(
            name=name,
            config=ds,
            url_ttl=ds.url_ttl if ds.url_ttl is not None else policy.defaults.url_ttl,
            key_pattern=compile_globs(ds.allow_keys),
            rules=tuple(CompiledRule.of(rule) for rule in ds.rules),
            min_remaining=policy.defaults.min_remaining,
            proxy=ds.delivery == "proxy",
            auto=ds.delivery == "auto",
        )
        for name, ds in policy.datasets.items()
    }
    return CompiledPolicy(source=policy, version=version, datasets=datasets,
                          proxied=frozenset(name for name, ds in datasets.items() if ds.proxy),
                          auto=frozenset(name for name, ds in datasets.items() if ds.auto))
