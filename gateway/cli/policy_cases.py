"""Policy test cases (``gateway test-policy``): the file's schema, the principal each case stands
for, and their evaluation by the server's own admit step, offline.

A case names who asks (anonymous, a vendor, an OIDC identity or a browser session of an issuer), from
which address, for which dataset, key and action, and what the policy must answer: allow or deny and,
optionally, the rule or the deny reason. Principals are made the way the authenticators make them
(``principal_from_claims`` maps the issuer's configured claims), then ``Gate.admit_principal`` decides,
exactly as it does behind a verified credential; its audit scope holds the decision.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.auth import Identity
from gateway.auth.claims import principal_from_claims
from gateway.config import PolicyFile
from gateway.config.yaml_source import read_yaml
from gateway.errors import ConfigError, GatewayError
from gateway.models import ANONYMOUS, AuthMethod, Decision, DenyReason, Principal
from gateway.service import Gate, State
from gateway.service.context import offline_context

DEFAULT_CLIENT_IP = "203.0.113.1"  # TEST-NET-3: an address on the internet, in no network a policy names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Claims(_Strict):
    """An identity of an issuer in ``auth.oidc``, as its verified token (or session) would carry it."""

    issuer: str
    subject: str = "policy-test"
    email: str | None = None
    groups: list[str] = Field(default_factory=list)


class Case(_Strict):
    name: str = Field(min_length=1)
    dataset: str
    key: str | None = None
    action: Literal["read", "list"] = "read"
    client_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = Field(
        default_factory=lambda: ipaddress.ip_address(DEFAULT_CLIENT_IP))
    anonymous: bool = False
    vendor: str | None = None  # a vendor's name or one of its HMAC key ids
    oidc: Claims | None = None  # a bearer token of this issuer
    session: Claims | None = None  # a browser session signed in with this issuer
    expect: Literal["allow", "deny"]
    rule: str | None = None  # the rule that allows (or whose allow_keys refuse the key)
    reason: DenyReason | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        if self.anonymous + (self.vendor is not None) + (self.oidc is not None) + (self.session is not None) > 1:
            raise ValueError("a case asks as one principal: anonymous, vendor, oidc or session")
        if self.action == "read" and self.key is None:
            raise ValueError("a read names its key")
        if self.reason is not None and self.expect == "allow":
            raise ValueError("reason is what a denial says; an allowed case names its rule")
        return self


class CasesFile(_Strict):
    version: Literal[1] = 1
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    decision: Decision
    problem: str | None  # None when the policy answered as the case expects

    @property
    def passed(self) -> bool:
        return self.problem is None


def load_cases(path: Path) -> CasesFile:
    """The cases of a YAML file, or ConfigError listing every problem (located like the policy's)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the file ({type(exc).__name__})"]) from None
    data, problems = read_yaml(text, str(path))
    try:
        cases = CasesFile.model_validate(data)
    except ValidationError as exc:
        problems += [f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(str(path), problems) from None
    if problems:
        raise ConfigError(str(path), problems)
    return cases


def principal_of(case: Case, policy: PolicyFile) -> Principal:
    """The principal the server's authenticators would make for this case's credential."""
    if case.vendor is not None:
        for vendor in policy.auth.vendors:
            ids = [key.id for key in vendor.keys]
            if case.vendor == vendor.name or case.vendor in ids:
                key_id = case.vendor if case.vendor in ids else ids[0]
                return Principal(AuthMethod.VENDOR_HMAC, subject=vendor.name, issuer=vendor.name, key_id=key_id)
        raise ValueError(f"vendor {case.vendor!r} is neither a vendor name nor a key id in auth.vendors")
    claims = case.oidc or case.session
    if claims is None:
        return ANONYMOUS
    issuer = next((issuer for issuer in policy.auth.oidc if issuer.name == claims.issuer), None)
    if issuer is None:
        raise ValueError(f"issuer {claims.issuer!r} is not in auth.oidc")
    token = {issuer.subject_claim: claims.subject, issuer.groups_claim: list(claims.groups)}
    if claims.email is not None:
        token[issuer.email_claim] = claims.email
    principal = principal_from_claims(issuer, token)
    if case.session is not None:  # a session names its issuer and carries no token scopes
        return replace(principal, method=AuthMethod.BROWSER_SESSION, scopes=frozenset())
    return principal


def check_references(cases: CasesFile, policy: PolicyFile) -> list[str]:
    """Names a case uses that the policy does not have: such a case would pass or fail for a typo."""
    problems = []
    for i, case in enumerate(cases.cases):
        try:
            principal_of(case, policy)
        except ValueError as exc:
            problems.append(f"cases.{i} ({case.name}): {exc}")
        dataset = policy.datasets.get(case.dataset)
        if case.rule is not None and dataset is not None and case.rule not in {r.name for r in dataset.rules}:
            problems.append(f"cases.{i} ({case.name}): dataset {case.dataset} has no rule {case.rule!r}")
    return problems


async def evaluate(case: Case, policy: PolicyFile, state: State, gate: Gate) -> Outcome:
    """Decide the case through the admit step, as the server decides a request that carried it."""
    ctx = offline_context(state, client_ip=str(case.client_ip))
    raw_key = quote(case.key, safe="/") if case.key is not None else None  # as it arrives in a request path
    try:
        await gate.admit_principal(ctx, case.dataset, raw_key, Identity(principal_of(case, policy)),
                                   grant=case.action)
    except GatewayError:
        pass  # a refusal: the audit scope holds its reason
    decision = ctx.audit.decision or Decision(False, reason=DenyReason.ERROR)
    return Outcome(case, decision, _mismatch(case, decision))


def _mismatch(case: Case, decision: Decision) -> str | None:
    wanted = case.expect == "allow"
    if decision.allowed != wanted or (case.rule is not None and decision.rule != case.rule) or (
            case.reason is not None and decision.reason != case.reason):
        return f"expected {expected(case)}, decided {decided(decision)}"
    return None


def expected(case: Case) -> str:
    detail = [f"rule {case.rule}"] if case.rule else []
    detail += [f"reason {case.reason.value}"] if case.reason else []
    return case.expect + (f" ({', '.join(detail)})" if detail else "")


def decided(decision: Decision) -> str:
    if decision.allowed:
        return f"allow by rule {decision.rule}"
    by = f", rule {decision.rule}" if decision.rule else ""
    return f"deny (reason {decision.reason}{by})"


def datasets_without_cases(policy: PolicyFile, cases: CasesFile) -> list[str]:
    """The policy's datasets that no case names: what ``check-config --cases`` warns about."""
    named = {case.dataset for case in cases.cases}
    return sorted(name for name in policy.datasets if name not in named)
