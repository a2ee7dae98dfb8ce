"""Keys defined twice in the policy YAML are refused, with both lines, at every level: by
``check-config``, at startup and on reload (where the policy in force stays). Anchors, aliases and
merge keys behave as ``gateway/config/yaml_source.py`` documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import parse_policy
from gateway.config.yaml_source import ALIAS_BUDGET
from gateway.errors import ConfigError
from gateway.settings import Settings
from tests.support import RunningGateway

ROOT = Path(__file__).resolve().parents[2]


def lines_marked(text: str, marker: str) -> list[int]:
    """The 1-based numbers of the lines that carry ``marker`` (the expected lines come from the text)."""
    return [number for number, line in enumerate(text.splitlines(), 1) if marker in line]


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, "policy.yaml")
    return caught.value.problems


def office_twice(data: Path, *, second: bool = True, extra: str = "") -> str:
    """``office`` is office-only, and (with ``second``) defined again further down as open to loopback,
    where the tests' client is: last-wins would let the client in."""
    path = json.dumps(str(data))
    text = (
        "version: 1\n"
        "datasets:\n"
        "  office:                                    # office\n"
        f"    backend: {{kind: local, path: {path}}}\n"
        "    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]\n"
        "  other:\n"
        f"    backend: {{kind: local, path: {path}}}\n"
        "    rules: [{name: office, anonymous: true, networks: [10.0.0.0/8]}]\n"
    )
    if second:
        text += (
            "  office:                                    # office\n"
            f"    backend: {{kind: local, path: {path}}}\n"
            "    rules: [{name: everyone, anonymous: true, networks: [127.0.0.0/8, 0.0.0.0/0]}]\n"
        )
    return text + extra


def office_problem(text: str) -> str:
    first, second = lines_marked(text, "# office")
    return f"datasets.office: defined twice (lines {first} and {second})"


# -- every level ------------------------------------------------------------------------------------

BASE = """\
version: 1
defaults:
  url_ttl: 60s
cors:
  allow_origins: ["https://app.example.com"]
auth:
  vendors:
    - name: aq
      keys:
        - id: aq-1
          secret_env: AQ_SECRET
  oidc:
    - name: okta
      issuer: https://idp.example.com
      audience: api://gateway
audit:
  sinks:
    - kind: stdout
datasets:
  raw:
    backend:
      kind: s3
      bucket: acme-raw
      prefix: raw/
    allow_keys: ["images/**"]
    rules:
      - name: vendor
        vendors: [aq]
      - name: office
        issuers: [okta]
        groups: [ml]
        networks: [10.0.0.0/8]
"""


@pytest.mark.parametrize(("path", "line"), [
    ("version", "version: 1"),
    ("defaults.url_ttl", "  url_ttl: 60s"),
    ("cors.allow_origins", '  allow_origins: ["https://app.example.com"]'),
    ("auth.vendors.0.keys.0.secret_env", "          secret_env: AQ_SECRET"),
    ("auth.oidc.0.audience", "      audience: api://gateway"),
    ("audit.sinks.0.kind", "    - kind: stdout"),
    ("datasets.raw.backend.bucket", "      bucket: acme-raw"),
    ("datasets.raw.allow_keys", '    allow_keys: ["images/**"]'),
    ("datasets.raw.rules.1.networks", "        networks: [10.0.0.0/8]"),
])
def test_a_key_defined_twice_is_refused_at_every_level(path: str, line: str) -> None:
    parse_policy(BASE)  # valid as it is
    again = line.replace("- ", "  ") + "   # again"
    text = BASE.replace(line + "\n", f"{line}   # again\n{again}\n", 1)
    first, second = lines_marked(text, "# again")
    assert problems_of(text) == [f"{path}: defined twice (lines {first} and {second})"]


def test_the_same_key_however_it_is_written() -> None:
    text = BASE.replace("  raw:\n", "  raw:   # raw\n", 1) + BASE[BASE.index("  raw:"):].replace(
        "  raw:", '  "raw":   # raw', 1)
    first, second = lines_marked(text, "# raw")
    assert f"datasets.raw: defined twice (lines {first} and {second})" in problems_of(text)


def test_three_times_and_in_one_flow_mapping() -> None:
    thrice = "version: 1   # v\nversion: 1   # v\ndatasets: {}\nversion: 1   # v\n"
    one, two, three = lines_marked(thrice, "# v")
    assert problems_of(thrice)[0] == f"version: defined 3 times (lines {one}, {two} and {three})"
    flow = "version: 1\ndatasets: {d: {backend: {kind: local, path: /a, path: /b}, rules: [{name: r, groups: [g]}]}}\n"
    line = flow.splitlines()[1]
    first, second = line.index("path: /a") + 1, line.index("path: /b") + 1
    assert problems_of(flow) == [f"datasets.d.backend.path: defined twice (line 2 column {first} and "
                                 f"line 2 column {second})"]


THIRD = """\
  third:
    backend: {kind: local, path: /srv}
    url_ttl: 60s   # ttl
    url_ttl: 90s   # ttl
    rules: [{name: v, vendors: [nobody]}]
"""


def test_duplicates_are_reported_with_the_schema_problems(tmp_path: Path) -> None:
    text = office_twice(tmp_path, extra=THIRD + "    colour: blue\n")
    first, second = lines_marked(text, "# ttl")
    assert problems_of(text) == [
        office_problem(text), f"datasets.third.url_ttl: defined twice (lines {first} and {second})",
        "datasets.third.colour: Extra inputs are not permitted",
        "datasets.third.rules.0.vendors: 'nobody' is not in auth.vendors or auth.oidc",
    ]


def test_duplicates_are_reported_with_the_cross_reference_problems(tmp_path: Path) -> None:
    text = office_twice(tmp_path, extra=THIRD)
    problems = problems_of(text)
    assert problems[:2] == [office_problem(text), f"datasets.third.url_ttl: defined twice "
                            f"(lines {lines_marked(text, '# ttl')[0]} and {lines_marked(text, '# ttl')[1]})"]
    assert len(problems) == 3 and "nobody" in problems[2]


# -- anchors, aliases and merge keys ----------------------------------------------------------------

SHARED = """\
version: 1
datasets:
  a:
    backend: &s3 {kind: s3, bucket: acme-raw, prefix: a/}   # anchor
    rules: &office [{name: office, anonymous: true, networks: [10.0.0.0/8]}]
  b:
    backend: {<<: *s3, region: eu-west-1}
    rules: *office
"""


def test_aliases_reuse_a_value_and_merge_keys_may_add_keys() -> None:
    policy = parse_policy(SHARED)
    a, b = policy.datasets["a"], policy.datasets["b"]
    assert a.rules == b.rules and a.rules[0].name == "office"
    assert b.backend.model_dump() == {**a.backend.model_dump(), "region": "eu-west-1"}


def test_merge_keys_may_not_override() -> None:
    text = SHARED.replace("region: eu-west-1}", "prefix: b/}   # override")
    anchor, override = lines_marked(text, "# anchor") + lines_marked(text, "# override")
    assert problems_of(text) == [f"datasets.b.backend.prefix: defined twice (lines {anchor} and {override})"]
    two_sources = SHARED.replace("{<<: *s3, region: eu-west-1}", "{<<: [*s3, {prefix: b/}]}   # override")
    assert problems_of(two_sources) == [f"datasets.b.backend.prefix: defined twice (lines {anchor} and {override})"]


@pytest.mark.parametrize("text", ["version: &v [1, *v]\ndatasets: {}\n", "version: 1\ndatasets: &d {<<: *d}\n"])
def test_an_alias_inside_its_own_anchor_is_refused(text: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1 and "an alias refers to the value that contains it" in problems[0]


def test_aliases_cannot_expand_into_a_huge_document() -> None:
    text, width = "version: 1\nlevel0: &l0 [x, x, x, x, x, x, x, x, x, x]\n", 10
    depth = 1
    while width ** depth <= ALIAS_BUDGET:
        text += f"level{depth}: &l{depth} [{', '.join([f'*l{depth - 1}'] * width)}]\n"
        depth += 1
    text += f"datasets: {{d: {{backend: {{kind: local, path: *l{depth - 1}}}, rules: []}}}}\n"
    started = time.perf_counter()
    problems = problems_of(text)
    assert time.perf_counter() - started < 1.0
    assert len(problems) == 1 and "aliases repeat" in problems[0] and f"{ALIAS_BUDGET:,}" in problems[0]


def test_nesting_too_deep_is_a_problem_not_a_crash() -> None:
    assert problems_of("version: 1\ndatasets: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "(top level): the YAML is nested too deeply"]


# -- check-config, startup, reload ------------------------------------------------------------------

def test_check_config_refuses_a_dataset_defined_twice(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], capture_output=True,
                              text=True, timeout=60, cwd=ROOT, env=env)

    path.write_text(office_twice(tmp_path, second=False))
    assert check().returncode == 0
    text = office_twice(tmp_path)
    path.write_text(text)
    result = check()
    assert result.returncode == 1
    assert f"  - {office_problem(text)}\n" in result.stderr


def test_startup_refuses_a_dataset_defined_twice(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = office_twice(tmp_path)
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        create_app(Settings(config=path, signing_key="k" * 32))
    assert caught.value.source == str(path)
    assert caught.value.problems == [office_problem(text)]


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_reload_keeps_the_policy_in_force(gateway_server: Callable[..., RunningGateway], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"a")
    path = tmp_path / "policy.yaml"
    path.write_text(office_twice(data, second=False))
    gw = gateway_server(config=path, reload_interval=0.1)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        version = client.get("/readyz").json()["policy_version"]
        assert client.get("/v1/datasets/office/objects/a.bin").status_code == 401  # loopback is not the office
        text = office_twice(data)
        path.write_text(text)
        assert wait_until(lambda: client.get("/readyz").json()["last_reload_error"] is not None)
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded" and ready["policy_version"] == version
        assert office_problem(text) in ready["last_reload_error"]
        assert client.get("/v1/datasets/office/objects/a.bin").status_code == 401  # still office-only
