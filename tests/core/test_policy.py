"""The decision: deny by default, a rule matches only when all of its conditions hold."""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import parse_policy
from gateway.models import ANONYMOUS, AuthMethod, Decision, DenyReason, Principal
from gateway.policy import CompiledDataset, compile_policy

AUTH = """\
auth:
  vendors:
    - name: aquarium
      keys: [{id: aq-2024, secret_env: AQ_SECRET}, {id: aq-2025, secret_env: AQ_SECRET_NEXT}]
  oidc:
    - {name: okta, issuer: "https://acme.okta.com", audience: gateway}
    - {name: vendor-idp, issuer: "https://idp.vendor.example", audience: gateway}
"""

OFFICE = ipaddress.ip_address("10.1.2.3")
HOME = ipaddress.ip_address("203.0.113.9")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.fixture
def make_dataset() -> Callable[..., CompiledDataset]:
    """Factory: ``make_dataset(rules_yaml, allow_keys=...)`` compiles a one-dataset policy."""

    def make(rules: str, *, allow_keys: str | None = None) -> CompiledDataset:
        extra = f"    allow_keys: {allow_keys}\n" if allow_keys else ""
        text = AUTH + "version: 1\ndatasets:\n  d:\n    backend: {kind: local, path: ./data}\n" + extra
        text += "    rules:\n" + textwrap.indent(textwrap.dedent(rules), "      ") if rules.strip() else ""
        dataset = compile_policy(parse_policy(text)).dataset("d")
        assert dataset is not None
        return dataset

    return make


def oidc(issuer: str = "okta", *, subject: str = "u-1", email: str | None = "ann@example.com",
         groups: tuple[str, ...] = ()) -> Principal:
    return Principal(AuthMethod.OIDC, subject=subject, email=email, issuer=issuer, groups=frozenset(groups))


def vendor(name: str = "aquarium", key_id: str = "aq-2024") -> Principal:
    return Principal(AuthMethod.VENDOR_HMAC, subject=name, issuer=name, key_id=key_id)


# -- deny by default ----------------------------------------------------------------------------------

def test_no_rules_denies_everyone(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("")
    for principal in (ANONYMOUS, oidc(groups=("admin",)), vendor()):
        decision = dataset.decide(principal, LOOPBACK, "a.png")
        assert decision == Decision(False, reason=DenyReason.NO_RULES)


def test_no_matching_rule_denies(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("- {name: ml, groups: [ml-team]}\n")
    decision = dataset.decide(oidc(groups=("sales",)), OFFICE, "a.png")
    assert not decision.allowed
    assert decision.reason is DenyReason.NO_RULE_MATCHED
    assert decision.rule is None
    assert decision.label == "no_rule_matched"


def test_unknown_dataset() -> None:
    policy = compile_policy(parse_policy("version: 1\ndatasets: {}\n"))
    assert policy.dataset("d") is None


# -- anonymous ------------------------------------------------------------------------------------------

def test_anonymous_rule_needs_the_network(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("- {name: office, anonymous: true, networks: [10.0.0.0/8, 'fd00::/8']}\n")
    assert dataset.decide(ANONYMOUS, OFFICE, "a.png") == Decision(True, rule="office")
    assert dataset.decide(ANONYMOUS, ip("fd12::1"), "a.png").allowed
    assert dataset.decide(ANONYMOUS, HOME, "a.png").reason is DenyReason.NO_RULE_MATCHED
    assert not dataset.decide(ANONYMOUS, ip("2001:db8::1"), "a.png").allowed
    # An authenticated caller on the network is at least as trusted as an anonymous one.
    assert dataset.decide(oidc(), OFFICE, "a.png").allowed
    assert not dataset.decide(oidc(), HOME, "a.png").allowed


@pytest.mark.parametrize("rule", [
    "{name: r, networks: [0.0.0.0/0, '::/0']}",
    "{name: r, groups: [everyone]}",
    "{name: r, email_domains: ['example.com']}",
    "{name: r, emails: ['ada@example.com']}",
    "{name: r, vendors: [aquarium]}",
])
def test_non_anonymous_rules_refuse_the_anonymous_principal(
    make_dataset: Callable[..., CompiledDataset], rule: str
) -> None:
    dataset = make_dataset(f"- {rule}\n")
    assert not dataset.decide(ANONYMOUS, OFFICE, "a.png").allowed
    assert not dataset.decide(Principal(AuthMethod.ANONYMOUS, groups=frozenset({"everyone"})), OFFICE, "a").allowed


# -- every condition must hold ---------------------------------------------------------------------------

ALL_CONDITIONS = """\
- name: strict
  issuers: [okta]
  groups: [ml-team, labelers]
  subjects: [u-1, u-2]
  emails: [Ann@Example.com]
  email_domains: [example.com]
  networks: [10.0.0.0/8, "2001:db8::/32"]
"""


def test_a_rule_matches_when_all_conditions_hold(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset(ALL_CONDITIONS)
    good = oidc(groups=("labelers", "other"))
    assert dataset.decide(good, OFFICE, "a.png") == Decision(True, rule="strict")
    assert dataset.decide(good, ip("2001:db8:ffff::7"), "a.png").allowed


@pytest.mark.parametrize(("principal", "client"), [
    (oidc(issuer="vendor-idp", groups=("ml-team",)), OFFICE),  # wrong issuer
    (oidc(groups=("sales",)), OFFICE),  # wrong group
    (oidc(groups=()), OFFICE),  # no groups
    (oidc(subject="u-3", groups=("ml-team",)), OFFICE),  # wrong subject
    (oidc(email="bob@example.com", groups=("ml-team",)), OFFICE),  # wrong email, right domain
    (oidc(email=None, groups=("ml-team",)), OFFICE),  # no email
    (oidc(groups=("ml-team",)), HOME),  # wrong network
    (oidc(groups=("ml-team",)), ip("2001:db9::1")),  # wrong IPv6 network
    (Principal(AuthMethod.VENDOR_HMAC, subject="u-1", email="ann@example.com", issuer="okta",
               groups=frozenset({"ml-team"})), OFFICE),  # an HMAC vendor is never an OIDC issuer
    (Principal(AuthMethod.DEVELOPMENT, subject="u-1", email="ann@example.com", issuer="okta",
               groups=frozenset({"ml-team"})), OFFICE),
], ids=["issuer", "group", "no-groups", "subject", "email", "no-email", "network", "network-v6", "hmac", "dev"])
def test_one_missing_condition_is_enough_to_deny(
    make_dataset: Callable[..., CompiledDataset], principal: Principal, client: ipaddress.IPv4Address
) -> None:
    assert not make_dataset(ALL_CONDITIONS).decide(principal, client, "a.png").allowed


def test_emails_are_case_insensitive(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("- {name: r, emails: [Ann@Example.COM]}\n")
    for email in ("ann@example.com", "ANN@EXAMPLE.COM", "Ann@Example.COM"):
        assert dataset.decide(oidc(email=email), HOME, "k").allowed
    assert not dataset.decide(oidc(email="ann@example.co"), HOME, "k").allowed
    assert not dataset.decide(oidc(email="xann@example.com"), HOME, "k").allowed


@pytest.mark.parametrize(("email", "allowed"), [
    ("a@example.com", True),
    ("A@EXAMPLE.COM", True),
    ("a@corp.example", True),
    ("a@sub.example.com", False),
    ("a@evil-example.com", False),
    ("a@example.com.evil.net", False),
    ("example.com@evil.net", False),
    ("", False),
])
def test_email_domains(make_dataset: Callable[..., CompiledDataset], email: str, allowed: bool) -> None:
    dataset = make_dataset("- {name: r, email_domains: [Example.com, '@corp.example']}\n")
    assert dataset.decide(oidc(email=email or None), HOME, "k").allowed is allowed


def test_subjects_are_exact(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("- {name: r, subjects: [u-1]}\n")
    assert dataset.decide(oidc(subject="u-1"), HOME, "k").allowed
    assert not dataset.decide(oidc(subject="U-1"), HOME, "k").allowed
    assert not dataset.decide(oidc(subject="u-10"), HOME, "k").allowed


@pytest.mark.parametrize(("principal", "allowed"), [
    (vendor(), True),  # by vendor name
    (vendor(name="other", key_id="aq-2025"), True),  # by key id
    (oidc(issuer="vendor-idp"), True),  # a vendor's own JWT issuer
    (oidc(issuer="okta"), False),
    (vendor(name="other", key_id="other-key"), False),
    (Principal(AuthMethod.DEVELOPMENT, issuer="aquarium", key_id="aq-2024"), False),
])
def test_vendors(make_dataset: Callable[..., CompiledDataset], principal: Principal, allowed: bool) -> None:
    dataset = make_dataset("- {name: r, vendors: [aquarium, aq-2025, vendor-idp]}\n")
    assert dataset.decide(principal, HOME, "k").allowed is allowed


def test_networks_ipv4_and_ipv6(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("- {name: r, groups: [g], networks: [192.168.0.0/16, '2001:db8::/32', '::1/128']}\n")
    member = oidc(groups=("g",))
    for address, allowed in [("192.168.255.1", True), ("192.169.0.1", False), ("2001:db8::1", True),
                             ("2001:db8:ffff:ffff::", True), ("2001:db9::", False), ("::1", True), ("::2", False),
                             ("127.0.0.1", False)]:
        assert dataset.decide(member, ip(address), "k").allowed is allowed, address


# -- order, keys, explain ----------------------------------------------------------------------------------

def test_the_first_matching_rule_wins(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("""\
        - {name: sales-only, groups: [sales]}
        - {name: office, issuers: [okta], networks: [10.0.0.0/8]}
        - {name: ml, groups: [ml-team]}
        """)
    assert dataset.decide(oidc(groups=("ml-team",)), OFFICE, "k") == Decision(True, rule="office")
    assert dataset.decide(oidc(groups=("ml-team",)), HOME, "k") == Decision(True, rule="ml")
    assert dataset.decide(oidc(groups=("sales", "ml-team")), OFFICE, "k") == Decision(True, rule="sales-only")


def test_allow_keys(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("- {name: ml, groups: [ml]}\n", allow_keys='["images/**", "pointclouds/*.pcd"]')
    member = oidc(groups=("ml",))
    assert dataset.decide(member, HOME, "images/a/b.png").allowed
    assert dataset.decide(member, HOME, "pointclouds/p.pcd").allowed
    decision = dataset.decide(member, HOME, "pointclouds/sub/p.pcd")
    assert decision == Decision(False, rule="ml", reason=DenyReason.KEY_NOT_ALLOWED)
    assert dataset.decide(member, HOME, "labels/x.json").reason is DenyReason.KEY_NOT_ALLOWED
    # A principal no rule admits learns nothing about the key globs.
    assert dataset.decide(oidc(groups=("x",)), HOME, "labels/x.json").reason is DenyReason.NO_RULE_MATCHED


def test_explain_lists_what_each_rule_lacked(make_dataset: Callable[..., CompiledDataset]) -> None:
    dataset = make_dataset("""\
        - {name: office, anonymous: true, networks: [10.0.0.0/8]}
        - {name: ml, groups: [ml-team], issuers: [okta]}
        - {name: ann, emails: [ann@example.com], email_domains: [example.com], subjects: [u-1]}
        - {name: partner, vendors: [aquarium]}
        """)
    checks = {check.rule: check for check in dataset.explain(oidc(issuer="vendor-idp", groups=("sales",)), HOME)}
    assert list(checks) == ["office", "ml", "ann", "partner"]
    assert [m.split(":")[0] for m in checks["office"].missing] == ["networks"]
    assert sorted(m.split(":")[0] for m in checks["ml"].missing) == ["groups", "issuers"]
    assert checks["ann"].matched and checks["ann"].missing == ()
    assert [m.split(":")[0] for m in checks["partner"].missing] == ["vendors"]
    assert not any(checks[name].matched for name in ("office", "ml", "partner"))

    anonymous = {check.rule: check for check in dataset.explain(ANONYMOUS, OFFICE)}
    assert anonymous["office"].matched
    assert all("credential" in " ".join(anonymous[name].missing) for name in ("ml", "ann", "partner"))


def test_policy_version_is_the_hash_of_the_file() -> None:
    text = "version: 1\ndatasets: {}\n"
    a = compile_policy(parse_policy(text), text.encode())
    b = compile_policy(parse_policy(text), text.encode())
    c = compile_policy(parse_policy(text), (text + "# changed\n").encode())
    assert a.version == b.version != c.version


# -- the fast matcher and explain's wording agree --------------------------------------------------------

_AGREE_POLICY = """\
version: 1
auth:
  vendors: [{name: aquarium, keys: [{id: aq-1, secret_env: X}]}]
  oidc: [{name: okta, issuer: "https://okta.example", audience: a}]
datasets:
  d:
    backend: {kind: local, path: /tmp}
    rules:
      - {name: anon, anonymous: true, networks: [10.0.0.0/8, "fd00::/8"]}
      - {name: vend, vendors: [aquarium, aq-1]}
      - {name: team, groups: [ml, ops], issuers: [okta], networks: [192.168.0.0/16]}
      - {name: people, subjects: [u1], emails: [Ada@Example.com]}
      - {name: domain, email_domains: [acme.example]}
"""


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(list(AuthMethod)),
    issuer=st.sampled_from([None, "okta", "aquarium", "other"]),
    key_id=st.sampled_from([None, "aq-1", "zz"]),
    groups=st.frozensets(st.sampled_from(["ml", "ops", "sales"]), max_size=2),
    subject=st.sampled_from([None, "u1", "u2"]),
    email=st.sampled_from([None, "ada@example.com", "bob@acme.example", "eve@acme.example.evil"]),
    ip=st.sampled_from(["10.1.2.3", "192.168.1.1", "8.8.8.8", "fd00::1", "2001:db8::1"]),
)
def test_decide_and_explain_agree(method: AuthMethod, issuer: str | None, key_id: str | None,
                                  groups: frozenset[str], subject: str | None, email: str | None, ip: str) -> None:
    dataset = compile_policy(parse_policy(_AGREE_POLICY)).datasets["d"]
    principal = Principal(method, subject=subject, email=email, issuer=issuer, key_id=key_id, groups=groups)
    address = ipaddress.ip_address(ip)
    first_match = next((c.rule for c in dataset.explain(principal, address) if c.matched), None)
    decision = dataset.decide(principal, address, "any/key")
    assert decision.allowed == (first_match is not None)
    assert decision.rule == first_match
