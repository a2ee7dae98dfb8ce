"""The policy file: durations, complete validation with locations, the embedded default, check-config."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config import PolicyFile, default_policy, load_policy, parse_duration, parse_policy
from gateway.errors import ConfigError

POLICIES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy(textwrap.dedent(text), "test.yaml")
    assert info.value.source == "test.yaml"
    return info.value.problems


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest valid policy document, as data, with top-level overrides."""
    doc: dict[str, Any] = {
        "version": 1,
        "datasets": {"d": {"backend": {"kind": "local", "path": "./data"},
                           "rules": [{"name": "r", "groups": ["g"]}]}},
    }
    doc.update(extra)
    return doc


def problems_of_doc(doc: dict[str, Any]) -> list[str]:
    return problems_of(yaml.safe_dump(doc))


# -- durations ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300s", 300), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("2d", 172_800), ("90", 90),
     (90, 90), (1.5, 1.5), ("1.5h", 5400), (" 10s ", 10), ("0", 0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "five minutes", "5 minutes", "1h30m", "5x", "s", "-5s", "-1", -1, "1e3s", None, True, [5], "5 m s"]
)
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_inside_a_policy() -> None:
    policy = parse_policy(yaml.safe_dump(minimal(defaults={"url_ttl": "5m", "max_url_ttl": "2h"})))
    assert (policy.defaults.url_ttl, policy.defaults.max_url_ttl) == (300, 7200)
    problems = problems_of_doc(minimal(defaults={"max_url_ttl": "soon"}))
    assert any(p.startswith("defaults.max_url_ttl:") for p in problems)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), ".nan", ".inf"])
def test_non_finite_durations_are_rejected(value: object) -> None:
    if isinstance(value, str):
        problems = problems_of(f"version: 1\ndefaults: {{url_ttl: {value}, max_url_ttl: {value}}}\ndatasets: {{}}\n")
        assert any(p.startswith("defaults.url_ttl") for p in problems)
    else:
        with pytest.raises(ValueError):
            parse_duration(value)


# -- every problem at once, with its location -----------------------------------------------------

def test_every_problem_is_reported_with_its_location() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(POLICIES / "many-errors.yaml")
    problems = info.value.problems
    expected_locations = [
        "defaults.url_ttl:",
        "datasets.raw.backend.colour:",
        "datasets.raw.rules.0:",
        "datasets.raw.rules.1:",
        "datasets.cooked.rules.0:",
    ]
    for location in expected_locations:
        assert sum(p.startswith(location) for p in problems) == 1, (location, problems)
    assert len(problems) == len(expected_locations), problems
    assert str(POLICIES / "many-errors.yaml") == info.value.source


def test_cross_section_problems_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(POLICIES / "cross-errors.yaml")
    problems = info.value.problems
    assert any(p.startswith("defaults.url_ttl:") and "max_url_ttl" in p for p in problems)
    assert any(p.startswith("datasets.raw.url_ttl:") and "max_url_ttl" in p for p in problems)
    assert any(p.startswith("datasets.raw.rules.0.vendors:") and "ghost-vendor" in p for p in problems)
    assert any(p.startswith("datasets.raw.rules.1.issuers:") and "auth0" in p for p in problems)


def test_schema_and_cross_section_problems_are_reported_together() -> None:
    problems = problems_of("""\
        version: 1
        defaults: {url_ttl: soon}
        datasets:
          raw:
            backend: {kind: local, path: ./data}
            rules: [{name: staff, issuers: [auth0]}]
        """)
    assert any(p.startswith("defaults.url_ttl") for p in problems)
    assert any("auth0" in p for p in problems)


def test_the_full_sample_policy_is_valid() -> None:
    policy, raw = load_policy(POLICIES / "valid.yaml")
    assert raw == (POLICIES / "valid.yaml").read_bytes()
    assert set(policy.datasets) == {"driving-2024", "medical", "scratch"}
    assert policy.datasets["driving-2024"].url_ttl == 120
    assert policy.datasets["driving-2024"].rate_limit is not None
    assert policy.datasets["driving-2024"].rate_limit.per == 60
    assert policy.datasets["scratch"].allow_keys == ["**"]  # default: everything under the prefix
    assert policy.cors.max_age == 600


# -- unknown keys, at every level -----------------------------------------------------------------

def _with_auth(doc: dict[str, Any]) -> dict[str, Any]:
    doc["auth"] = {
        "vendors": [{"name": "v", "keys": [{"id": "k1", "secret_env": "V_SECRET"}]}],
        "oidc": [{"name": "okta", "issuer": "https://okta.example", "audience": "gw"}],
    }
    doc["datasets"]["d"]["rate_limit"] = {"requests": 5, "per": "1s"}
    doc["audit"] = {"sinks": [{"kind": "file", "path": "/tmp/audit.jsonl"}]}
    return doc


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ((), "surprise"),
        (("defaults",), "defaults.surprise"),
        (("cors",), "cors.surprise"),
        (("auth",), "auth.surprise"),
        (("auth", "vendors", 0), "auth.vendors.0.surprise"),
        (("auth", "vendors", 0, "keys", 0), "auth.vendors.0.keys.0.surprise"),
        (("auth", "oidc", 0), "auth.oidc.0.surprise"),
        (("audit",), "audit.surprise"),
        (("audit", "sinks", 0), "audit.sinks.0"),
        (("datasets", "d"), "datasets.d.surprise"),
        (("datasets", "d", "backend"), "datasets.d.backend.surprise"),
        (("datasets", "d", "rules", 0), "datasets.d.rules.0.surprise"),
        (("datasets", "d", "rate_limit"), "datasets.d.rate_limit.surprise"),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(path: tuple[str | int, ...], location: str) -> None:
    doc = _with_auth(minimal(defaults={}, cors={}))
    parse_policy(yaml.safe_dump(doc))  # valid before the change
    node: Any = doc
    for part in path:
        node = node[part]
    node["surprise"] = True
    problems = problems_of_doc(doc)
    assert any(p.startswith(location) and "surprise" in p for p in problems) or any(
        p.startswith(location) and "xtra" in p for p in problems), problems


@pytest.mark.parametrize("kind", [
    {"kind": "s3", "bucket": "acme-raw"},
    {"kind": "gcs", "bucket": "acme-raw"},
    {"kind": "local", "path": "./data"},
])
def test_unknown_keys_are_rejected_in_every_backend_kind(kind: dict[str, str]) -> None:
    doc = minimal()
    doc["datasets"]["d"]["backend"] = dict(kind, bukket="typo")
    assert any(p.startswith("datasets.d.backend.bukket") for p in problems_of_doc(doc))


# -- rules ----------------------------------------------------------------------------------------

def _rule_problems(rule: dict[str, Any]) -> list[str]:
    doc = _with_auth(minimal())
    doc["datasets"]["d"]["rules"] = [rule]
    return problems_of_doc(doc)


def test_anonymous_rule_without_networks_is_rejected() -> None:
    problems = _rule_problems({"name": "open", "anonymous": True})
    assert any(p.startswith("datasets.d.rules.0") and "network" in p for p in problems), problems


def test_anonymous_rule_with_identity_conditions_is_rejected() -> None:
    problems = _rule_problems({"name": "mixed", "anonymous": True, "networks": ["10.0.0.0/8"], "groups": ["g"]})
    assert any(p.startswith("datasets.d.rules.0") for p in problems)


def test_rule_without_conditions_is_rejected() -> None:
    problems = _rule_problems({"name": "bare"})
    assert any(p.startswith("datasets.d.rules.0") and "condition" in p for p in problems), problems


@pytest.mark.parametrize("condition", ["networks", "vendors", "issuers", "groups", "subjects", "emails",
                                       "email_domains"])
def test_empty_condition_lists_are_rejected(condition: str) -> None:
    problems = _rule_problems({"name": "empty", condition: []})
    assert any(p.startswith("datasets.d.rules.0") and "empty" in p for p in problems), problems


def test_empty_vendor_key_list_is_rejected() -> None:
    doc = _with_auth(minimal())
    doc["auth"]["vendors"][0]["keys"] = []
    assert any(p.startswith("auth.vendors.0.keys") for p in problems_of_doc(doc))


def test_empty_allow_keys_is_rejected() -> None:
    doc = minimal()
    doc["datasets"]["d"]["allow_keys"] = []
    assert any(p.startswith("datasets.d.allow_keys") for p in problems_of_doc(doc))


def test_empty_audit_sinks_is_rejected() -> None:
    assert any(p.startswith("audit.sinks") for p in problems_of_doc(minimal(audit={"sinks": []})))


def test_duplicate_rule_names_are_rejected() -> None:
    doc = minimal()
    doc["datasets"]["d"]["rules"] = [{"name": "same", "groups": ["a"]}, {"name": "other", "groups": ["b"]},
                                     {"name": "same", "groups": ["c"]}]
    problems = problems_of_doc(doc)
    assert any(p.startswith("datasets.d.rules") and "same" in p for p in problems), problems
    assert not any("other" in p for p in problems)


def test_rules_may_name_only_configured_vendors_and_issuers() -> None:
    ok = _with_auth(minimal())
    ok["datasets"]["d"]["rules"] = [
        {"name": "by-vendor-name", "vendors": ["v"]},
        {"name": "by-key-id", "vendors": ["k1"]},
        {"name": "by-vendor-jwt-issuer", "vendors": ["okta"]},
        {"name": "by-issuer", "issuers": ["okta"]},
    ]
    parse_policy(yaml.safe_dump(ok))
    bad = _with_auth(minimal())
    bad["datasets"]["d"]["rules"] = [{"name": "a", "vendors": ["nobody"]}, {"name": "b", "issuers": ["v"]}]
    problems = problems_of_doc(bad)
    assert any(p.startswith("datasets.d.rules.0.vendors") and "nobody" in p for p in problems)
    # A vendor's name is not an OIDC issuer.
    assert any(p.startswith("datasets.d.rules.1.issuers") and "'v'" in p for p in problems)


def test_duplicate_vendor_key_ids_are_rejected() -> None:
    doc = _with_auth(minimal())
    doc["auth"]["vendors"].append({"name": "w", "keys": [{"id": "k1", "secret_env": "W_SECRET"}]})
    assert any(p.startswith("auth.vendors") and "k1" in p for p in problems_of_doc(doc))


@pytest.mark.parametrize(("defaults", "dataset_ttl", "location"), [
    ({"url_ttl": "2h", "max_url_ttl": "1h"}, None, "defaults.url_ttl"),
    ({"max_url_ttl": "10m"}, "11m", "datasets.d.url_ttl"),
    ({}, "5s", "datasets.d.url_ttl"),
])
def test_url_ttl_bounds(defaults: dict[str, str], dataset_ttl: str | None, location: str) -> None:
    doc = minimal(defaults=defaults)
    if dataset_ttl:
        doc["datasets"]["d"]["url_ttl"] = dataset_ttl
    assert any(p.startswith(location) for p in problems_of_doc(doc))


def test_url_ttl_equal_to_the_maximum_is_allowed() -> None:
    doc = minimal(defaults={"url_ttl": "1h", "max_url_ttl": "1h"})
    doc["datasets"]["d"]["url_ttl"] = "3600s"
    assert parse_policy(yaml.safe_dump(doc)).datasets["d"].url_ttl == 3600


def test_default_url_ttl_has_the_same_minimum() -> None:
    assert any(p.startswith("defaults.url_ttl") for p in problems_of_doc(minimal(defaults={"url_ttl": "0s"})))


@pytest.mark.parametrize("doc", [
    minimal(version=2),
    minimal(cors={"allow_origins": ["app.example.com"]}),
    minimal(auth={"oidc": [{"name": "x", "issuer": "https://x", "audience": "a", "algorithms": ["HS256"]}]}),
    minimal(auth={"oidc": [{"name": "x", "issuer": "https://x", "audience": "a", "algorithms": ["none"]}]}),
    minimal(auth={"vendors": [{"name": "v", "keys": [{"id": "k"}]}]}),
    minimal(datasets={"bad name!": {"backend": {"kind": "local", "path": "x"}}}),
    minimal(datasets={"d": {"backend": {"kind": "ftp", "path": "x"}}}),
    minimal(datasets={"d": {"backend": {"kind": "local", "path": "x"}, "allow_keys": ["/abs/**"]}}),
    minimal(datasets={"d": {"backend": {"kind": "local", "path": "x"},
                            "rules": [{"name": "n", "networks": ["10.0.0.300/8"]}]}}),
])
def test_other_schema_errors(doc: dict[str, Any]) -> None:
    assert problems_of_doc(doc)


# -- YAML itself ----------------------------------------------------------------------------------

def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(POLICIES / "bad-yaml.yaml")
    [problem] = info.value.problems
    assert problem.startswith("line 3,"), problem  # the fixture's tab is on line 3
    assert "YAML" in problem


@pytest.mark.parametrize("text", ["- version: 1\n- datasets: {}\n", "just a string\n", "42\n", ""])
def test_the_top_level_must_be_a_mapping(text: str) -> None:
    [problem] = problems_of(text)
    assert problem.startswith("(top level)")


def test_a_list_file_is_not_a_policy() -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(POLICIES / "not-a-mapping.yaml")
    assert [p.split(":")[0] for p in info.value.problems] == ["(top level)"]


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert "UTF-8" in info.value.problems[0]


# -- the embedded default ---------------------------------------------------------------------------

def test_default_policy_is_anonymous_loopback_only(tmp_path: Path) -> None:
    policy = default_policy(tmp_path)
    assert isinstance(policy, PolicyFile)
    [(name, dataset)] = policy.datasets.items()
    assert dataset.backend.kind == "local"
    assert dataset.backend.path == tmp_path
    [rule] = dataset.rules
    assert rule.anonymous
    assert rule.networks is not None
    assert set(rule.networks) == {ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")}
    assert policy.cors.allow_origins == []
    assert [sink.kind for sink in policy.audit.sinks] == ["stdout"]
    assert default_policy(tmp_path, ["http://localhost:3000"]).cors.allow_origins == ["http://localhost:3000"]


# -- gateway check-config ---------------------------------------------------------------------------

def test_check_config_accepts_a_valid_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(POLICIES / "valid.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    for name in ("driving-2024", "medical", "scratch"):
        assert name in out


def test_check_config_lists_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    path = POLICIES / "many-errors.yaml"
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err
    expected = {p for p in _problems(path)}
    assert len(expected) >= 4
    for problem in expected:
        assert f"  - {problem}" in err.splitlines()


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    return info.value.problems


def test_check_config_reports_invalid_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(POLICIES / "bad-yaml.yaml")]) == 1
    assert "line 3" in capsys.readouterr().err


def test_check_config_with_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check-config", str(missing)]) == 1
    captured = capsys.readouterr()
    assert str(missing) in captured.err
    assert "cannot read" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("name", ["local", "s3", "gcs"])
def test_locations_keep_dataset_names_that_equal_a_backend_kind(name: str) -> None:
    doc = minimal(datasets={name: {"backend": {"kind": "local", "path": "x"}, "rules": [{"name": "bare"}]}})
    assert any(p.startswith(f"datasets.{name}.rules.0") for p in problems_of_doc(doc))


def test_check_config_takes_config_or_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    valid, broken = POLICIES / "valid.yaml", POLICIES / "many-errors.yaml"
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    assert main(["check-config", "--config", str(valid)]) == 0
    assert main(["check-config"]) == 1
    assert "GATEWAY_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_CONFIG", str(broken))
    assert main(["check-config"]) == 1
    assert "datasets.raw.rules.0" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_CONFIG", str(valid))
    assert main(["check-config"]) == 0


def test_a_ttl_too_short_for_whole_second_buckets_is_rejected() -> None:
    # URLs are signed at whole seconds: 10 s with min_remaining 0.95 would need a 0.5 s bucket.
    problems = problems_of("""\
        version: 1
        defaults: {min_remaining: 0.95}
        datasets:
          raw:
            backend: {kind: local, path: ./data}
            url_ttl: 10s
            rules: [{name: lo, anonymous: true, networks: [127.0.0.0/8]}]
        """)
    assert any(p.startswith("datasets.raw.url_ttl:") and "20s" in p for p in problems)


def test_empty_names_in_identity_conditions_are_rejected() -> None:
    problems = problems_of("""\
        version: 1
        datasets:
          raw:
            backend: {kind: local, path: ./data}
            rules: [{name: r, emails: [""]}]
        """)
    assert any("empty name" in p for p in problems)


# -- one validation, every problem at once (issue 25, findings 13-15) -------------------------------

def test_an_empty_list_does_not_hide_the_ttl_problems() -> None:
    """The schema failing in one rule used to stop before the cross-section checks ran."""
    problems = problems_of("""\
        version: 1
        defaults: {url_ttl: 2h, max_url_ttl: 1h}
        datasets:
          a:
            backend: {kind: local, path: ./data}
            url_ttl: 5s
            rules: [{name: r, anonymous: true, networks: []}]
          b:
            backend: {kind: local, path: ./data}
            url_ttl: 3h
            rules: [{name: lo, anonymous: true, networks: [127.0.0.0/8]}]
        """)
    assert "datasets.a.rules.0: an empty list matches nothing; remove the condition or fill it" in problems
    assert "defaults.url_ttl: exceeds defaults.max_url_ttl" in problems
    assert "datasets.a.url_ttl: must be at least 10s" in problems
    assert "datasets.b.url_ttl: exceeds defaults.max_url_ttl" in problems


def test_a_url_ttl_in_milliseconds_parses_but_is_below_the_minimum() -> None:
    assert parse_duration("250ms") == 0.25
    problems = problems_of_doc(minimal(defaults={"url_ttl": "250ms"}))
    assert problems == ["defaults.url_ttl: must be at least 10s"]


GCS_PROXY_HMAC = {"backend": {"kind": "gcs", "bucket": "acme-med", "signer": "hmac", "hmac_access_id_env": "ID",
                              "hmac_secret_env": "SECRET"},
                  "delivery": "proxy", "rules": [{"name": "r", "groups": ["g"]}]}


def test_check_config_refuses_what_serve_refuses_gcs_hmac_with_proxy(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gh.yaml"
    path.write_text(yaml.safe_dump(minimal(datasets={"scans": GCS_PROXY_HMAC})))
    assert main(["check-config", str(path)]) == 1
    assert "datasets.scans.delivery: proxy delivery reads GCS with an OAuth access token" in capsys.readouterr().err


def test_serve_refuses_it_with_the_same_words(tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.settings import Settings

    path = tmp_path / "gh.yaml"
    path.write_text(yaml.safe_dump(minimal(datasets={"scans": GCS_PROXY_HMAC})))
    with pytest.raises(ConfigError) as info:
        create_app(Settings(config=path, signing_key="k" * 32), environ={"ID": "GOOG1", "SECRET": "s" * 40})
    assert any(p.startswith("datasets.scans.delivery: proxy delivery reads GCS") for p in info.value.problems)


def test_the_gcs_check_is_reported_with_schema_problems_elsewhere() -> None:
    problems = problems_of_doc(minimal(datasets={"scans": GCS_PROXY_HMAC, "bad": {"backend": {"kind": "nope"}}}))
    assert any(p.startswith("datasets.scans.delivery:") for p in problems)
    assert any(p.startswith("datasets.bad.backend") for p in problems)


@pytest.mark.parametrize("rules", [[], None])
def test_a_dataset_without_rules_is_valid_and_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           rules: list[object] | None) -> None:
    """DESIGN.md: deny by default; a dataset without rules is unreachable. Valid, but said."""
    dataset: dict[str, Any] = {"backend": {"kind": "local", "path": str(tmp_path)}}
    if rules is not None:
        dataset["rules"] = rules
    path = tmp_path / "closed.yaml"
    path.write_text(yaml.safe_dump(minimal(datasets={"closed": dataset})))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: datasets.closed: no rules, so no request can reach it (deny by default)" in out


VENDORS = {"vendors": [{"name": "aq", "keys": [{"id": "aq-1", "secret_env": "AQ_ONE"},
                                               {"id": "aq-2", "secret_env": "AQ_TWO"}]}]}


def test_a_secret_absent_here_is_a_note_and_a_bad_one_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vendors.yaml"
    doc = minimal(auth=VENDORS)
    doc["datasets"]["d"]["rules"] = [{"name": "r", "vendors": ["aq"]}]
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.delenv("AQ_ONE", raising=False)
    monkeypatch.delenv("AQ_TWO", raising=False)
    assert main(["check-config", str(path)]) == 0  # CI holds no production secrets
    out = capsys.readouterr().out
    assert "note: auth.vendors.0.keys.0.secret_env: AQ_ONE is not set here; gateway serve reads it from the " \
           "environment at startup, and refuses to start without it" in out
    monkeypatch.setenv("AQ_ONE", "short")
    monkeypatch.setenv("AQ_TWO", "a-long-enough-secret-for-the-gateway")
    assert main(["check-config", str(path)]) == 1
    captured = capsys.readouterr()
    assert "  - auth.vendors.0.keys.0: the secret in environment variable AQ_ONE is shorter than 16 bytes" in \
        captured.err
    assert "short" not in captured.err.replace("shorter", "")  # the secret itself is never shown
    assert "AQ_TWO" not in captured.err


def test_settings_problems_and_policy_problems_come_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(minimal(defaults={"url_ttl": "5s"})))
    monkeypatch.setenv("GATEWAY_LOG_LEVEL", "loud")
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "  - GATEWAY_LOG_LEVEL: must be one of" in err
    assert "  - defaults.url_ttl: must be at least 10s" in err
