"""``gateway explain`` and ``gateway sign-request``: offline tools a security engineer runs before a rollout."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.vendor_signing import canonical_string, sign

POLICY = """\
version: 1
auth:
  vendors:
    - name: aquarium
      keys: [{id: aq-1, secret_env: AQ_SECRET}]
  oidc:
    - {name: okta, issuer: "https://acme.okta.example/oauth2/default", audience: "api://default"}
datasets:
  team:
    backend: {kind: local, path: /srv/team}
    allow_keys: ["images/**"]
    rules:
      - {name: vendor-servers, vendors: [aquarium]}
      - {name: ml-team-in-office, groups: [ml-team], issuers: [okta], networks: [10.0.0.0/8]}
"""


def explain(policy: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "explain", "--config", str(policy), "--dataset", "team",
                           *args], capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def token(groups: list[str]) -> str:
    # Signed with a throwaway key: explain reads the claims without verifying, and says so.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": "https://acme.okta.example/oauth2/default", "aud": "api://default", "sub": "00u1",
              "email": "ada@acme.example", "groups": groups, "exp": int(time.time()) + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_an_employee_in_the_office_is_allowed_by_the_group_rule(policy: Path) -> None:
    result = explain(policy, "--key", "images/1.png", "--token", token(["ml-team"]), "--ip", "10.1.2.3")
    assert result.returncode == 0, result.stderr
    assert "ALLOW by rule ml-team-in-office" in result.stdout
    assert "WITHOUT checking its signature" in result.stdout
    assert "rule vendor-servers: lacks vendors" in result.stdout


def test_the_same_employee_outside_is_denied_and_told_what_is_missing(policy: Path) -> None:
    result = explain(policy, "--key", "images/1.png", "--token", token(["ml-team"]), "--ip", "203.0.113.9")
    assert result.returncode == 3
    assert "DENY (no_rule_matched)" in result.stdout
    assert "rule ml-team-in-office: lacks networks: 203.0.113.9 is not in 10.0.0.0/8" in result.stdout


def test_vendor_and_anonymous_and_key_globs(policy: Path) -> None:
    vendor = explain(policy, "--key", "images/1.png", "--vendor", "aq-1", "--ip", "203.0.113.9")
    assert vendor.returncode == 0 and "ALLOW by rule vendor-servers" in vendor.stdout
    outside_globs = explain(policy, "--key", "raw/1.bin", "--vendor", "aquarium")
    assert outside_globs.returncode == 3 and "key_not_allowed" in outside_globs.stdout
    assert "not in allow_keys" in outside_globs.stdout
    anonymous = explain(policy, "--key", "images/1.png", "--anonymous", "--ip", "10.1.2.3")
    assert anonymous.returncode == 3
    assert "a credential" in anonymous.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--key", "../etc/passwd"], "'..'"),
    (["--key", "a.png", "--ip", "not-an-ip"], "does not appear to be an IPv4 or IPv6 address"),
    (["--key", "a.png", "--vendor", "nobody"], "neither a vendor name nor a key id"),
    (["--key", "a.png", "--token", "garbage"], "not a JWT"),
])
def test_bad_input_is_a_clear_error_not_a_traceback(policy: Path, args: list[str], message: str) -> None:
    result = explain(policy, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sign_request_prints_headers_that_match_the_documented_scheme() -> None:
    env = {"PATH": "/usr/bin:/bin", "VENDOR_SECRET": "s" * 32}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "sign-request", "--key-id", "aq-1", "--secret-env", "VENDOR_SECRET",
         "GET", "https://gw.example/v1/datasets/team/objects/images/1.png?b=2&a=1"],
        capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 0, result.stderr
    headers = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert headers["X-Gateway-Key-Id"] == "aq-1"
    expected = sign(canonical_string("GET", "/v1/datasets/team/objects/images/1.png", "b=2&a=1",
                                     headers["X-Gateway-Timestamp"], "aq-1", headers["X-Gateway-Content-SHA256"]),
                    "s" * 32)
    assert headers["X-Gateway-Signature"] == expected
    missing = subprocess.run([sys.executable, "-m", "gateway", "sign-request", "--key-id", "aq-1", "--secret-env",
                              "NOT_SET_ANYWHERE", "GET", "https://gw.example/x"], capture_output=True, text=True,
                             timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode == 1 and "NOT_SET_ANYWHERE" in missing.stderr
