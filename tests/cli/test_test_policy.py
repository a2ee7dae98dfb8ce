"""``gateway test-policy``: cases decided offline by the server's admit step; exit codes for CI, JUnit
XML that parses back, a failing case that says what was expected, what was decided and by which
rule, and a policy edit that breaks a case failing it. No secret of the policy is needed to run."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - parses the XML this test run wrote
from pathlib import Path

import pytest

POLICY = """\
version: 1
auth:
  vendors: [{name: acme, keys: [{id: acme-2026, secret_env: ACME_SECRET_NOT_SET_HERE}]}]
  oidc:
    - {name: okta, issuer: "https://acme.okta.com/oauth2/default", audience: api://gateway, groups_claim: grp}
datasets:
  driving:
    backend: {kind: s3, bucket: acme-raw, prefix: datasets/driving/}
    allow_keys: ["images/**", "pointclouds/**"]
    rules:
      - {name: vendor-servers, vendors: [acme]}
      - {name: ml-team, issuers: [okta], groups: [ml-team]}
      - {name: office, anonymous: true, networks: [10.0.0.0/8]}
      - {name: indexer, vendors: [acme], grants: [list]}
  medical:
    backend: {kind: gcs, bucket: acme-med, prefix: scans/}
    rules: []
"""

CASES = """\
cases:
  - {name: the vendor reads an image, dataset: driving, key: images/a b.png, vendor: acme, expect: allow,
     rule: vendor-servers}
  - {name: a vendor key id is the vendor, dataset: driving, key: images/x.png, vendor: acme-2026, expect: allow}
  - {name: the ML team reads from home, dataset: driving, key: pointclouds/s.pcd, client_ip: 198.51.100.7,
     oidc: {issuer: okta, subject: u1, email: ana@acme.example, groups: [ml-team]}, expect: allow, rule: ml-team}
  - {name: another team is refused, dataset: driving, key: images/a.png,
     oidc: {issuer: okta, groups: [finance]}, expect: deny, reason: no_rule_matched}
  - {name: a browser session of the ML team, dataset: driving, key: images/a.png,
     session: {issuer: okta, subject: u1, groups: [ml-team]}, expect: allow, rule: ml-team}
  - {name: the office network reads, dataset: driving, key: images/a.png, anonymous: true, client_ip: 10.1.2.3,
     expect: allow, rule: office}
  - {name: the internet does not, dataset: driving, key: images/a.png, expect: deny, reason: no_rule_matched}
  - {name: keys outside allow_keys, dataset: driving, key: secrets/k.txt, vendor: acme, expect: deny,
     reason: key_not_allowed, rule: vendor-servers}
  - {name: percent in a key is a character, dataset: driving, key: images/100%.png, vendor: acme, expect: allow}
  - {name: the vendor may list, dataset: driving, action: list, vendor: acme, expect: allow, rule: indexer}
  - {name: the office may not list, dataset: driving, action: list, client_ip: 10.1.2.3, expect: deny}
  - {name: nobody reads medical, dataset: medical, key: a.dcm, vendor: acme, expect: deny, reason: no_rules}
  - {name: no such dataset, dataset: nope, key: a, vendor: acme, expect: deny, reason: unknown_dataset}
"""


def run(tmp_path: Path, cases: str, policy: str = POLICY, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "policy.yaml").write_text(policy)
    (tmp_path / "cases.yaml").write_text(cases)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_", "GOOGLE_"))}
    return subprocess.run([sys.executable, "-m", "gateway", "test-policy", str(tmp_path / "cases.yaml"), "--config",
                           str(tmp_path / "policy.yaml"), *extra], capture_output=True, text=True, timeout=60,
                          env=environ, check=False)


def test_every_case_passes(tmp_path: Path) -> None:
    result = run(tmp_path, CASES, POLICY, "--junit", str(tmp_path / "junit.xml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed, 0 failed" in result.stdout
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")  # noqa: S314 - our own file
    assert suite is not None and suite.get("tests") == "13" and suite.get("failures") == "0"
    assert [case.get("name") for case in suite.iter("testcase")][0] == "the vendor reads an image"
    assert not list(suite.iter("failure"))


def test_a_policy_edit_that_breaks_a_case_fails_it(tmp_path: Path) -> None:
    edited = POLICY.replace("groups: [ml-team]}", "groups: [ml-platform]}")  # someone renames the group
    result = run(tmp_path, CASES, edited, "--junit", str(tmp_path / "junit.xml"))
    assert result.returncode == 1
    assert "FAIL  the ML team reads from home" in result.stdout
    assert "expected: allow (rule ml-team)" in result.stdout
    assert "decided:  deny (reason no_rule_matched)" in result.stdout
    assert "11 passed, 2 failed" in result.stdout
    root = ET.parse(tmp_path / "junit.xml").getroot()  # noqa: S314 - our own file
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "2" and root.get("failures") == "2"
    failed = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    failure = failed["the ML team reads from home"]
    assert failure is not None and failure.get("type") == "PolicyMismatch"
    assert failure.get("message") == "expected allow (rule ml-team), decided deny (reason no_rule_matched)"
    assert "from 198.51.100.7" in (failure.text or "")
    assert failed["the vendor reads an image"] is None
    version = {p.get("name"): p.get("value") for p in suite.iter("property")}["policy_version"]
    assert version and len(version) == 12


def test_a_wrong_rule_or_reason_fails_even_when_the_verdict_is_right(tmp_path: Path) -> None:
    cases = ("cases:\n  - {name: right verdict wrong rule, dataset: driving, key: images/a.png, vendor: acme, "
             "expect: allow, rule: indexer}\n  - {name: right verdict wrong reason, dataset: driving, key: a, "
             "expect: deny, reason: no_rules}\n")
    result = run(tmp_path, cases)
    assert result.returncode == 1 and "0 passed, 2 failed" in result.stdout
    assert "decided:  allow by rule vendor-servers" in result.stdout
    assert "rule:     (none: no rule admits this caller)" in result.stdout


@pytest.mark.parametrize(("cases", "problem"), [
    ("cases: []\n", "cases"),
    ("cases:\n  - {name: x, dataset: driving, key: a, expect: maybe}\n", "expect"),
    ("cases:\n  - {name: x, dataset: driving, key: a, expect: deny, colour: red}\n", "colour"),
    ("cases:\n  - {name: x, dataset: driving, expect: deny}\n", "a read names its key"),
    ("cases:\n  - {name: x, dataset: driving, key: a, vendor: acme, anonymous: true, expect: deny}\n", "one principal"),
    ("cases:\n  - {name: x, dataset: driving, key: a, vendor: acne, expect: deny}\n", "'acne'"),
    ("cases:\n  - {name: x, dataset: driving, key: a, oidc: {issuer: octa}, expect: deny}\n", "'octa'"),
    ("cases:\n  - {name: x, dataset: driving, key: a, expect: deny, rule: ofice}\n", "no rule 'ofice'"),
    ("cases:\n  - {name: x, dataset: driving, key: a, expect: deny, reason: because}\n", "reason"),
    ("cases:\n  - {name: x, dataset: driving, key: a, expect: deny, client_ip: 10.1}\n", "client_ip"),
    ("cases: [\n", "cases.yaml"),
])
def test_bad_input_exits_2(tmp_path: Path, cases: str, problem: str) -> None:
    result = run(tmp_path, cases)
    assert result.returncode == 2, result.stdout + result.stderr
    assert problem in result.stderr


def test_an_invalid_policy_is_bad_input(tmp_path: Path) -> None:
    result = run(tmp_path, CASES, POLICY.replace("vendors: [acme]}", "vendors: [nobody]}", 1))
    assert result.returncode == 2 and "nobody" in result.stderr


def test_the_embedded_default_is_tested_without_a_file(tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(
        "cases:\n  - {name: loopback reads, dataset: local, key: a.png, client_ip: 127.0.0.1, expect: allow, "
        "rule: loopback}\n  - {name: the network does not, dataset: local, key: a.png, client_ip: 192.168.1.2, "
        "expect: deny}\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run([sys.executable, "-m", "gateway", "test-policy", str(tmp_path / "cases.yaml")],
                            capture_output=True, text=True, timeout=60, env=environ, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed (policy the embedded default" in result.stdout


def test_check_config_learns_which_datasets_no_case_names(tmp_path: Path) -> None:
    from gateway.cli.policy_cases import datasets_without_cases, load_cases
    from gateway.config import parse_policy

    (tmp_path / "cases.yaml").write_text(CASES)
    policy = parse_policy(POLICY + "  unnamed:\n    backend: {kind: local, path: /tmp}\n")
    assert datasets_without_cases(policy, load_cases(tmp_path / "cases.yaml")) == ["unnamed"]


def test_check_config_cases_warns_about_untested_datasets(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY + "  unnamed:\n    backend: {kind: local, path: /tmp}\n")
    (tmp_path / "cases.yaml").write_text(CASES)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_", "GOOGLE_"))}
    environ["GATEWAY_SIGNING_KEY"] = "s" * 32
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(tmp_path / "policy.yaml"),
                             "--cases", str(tmp_path / "cases.yaml")], capture_output=True, text=True, timeout=60,
                            env=environ, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    untested = [line for line in result.stdout.splitlines() if "no case of" in line]
    assert untested == [f"warning: datasets.unnamed: no case of {tmp_path / 'cases.yaml'} names this dataset "
                        "(gateway test-policy)"]
    (tmp_path / "cases.yaml").write_text("cases: [{name: x}]\n")  # an invalid cases file is a failure
    bad = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(tmp_path / "policy.yaml"),
                          "--cases", str(tmp_path / "cases.yaml")], capture_output=True, text=True, timeout=60,
                         env=environ, check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
