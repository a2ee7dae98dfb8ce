"""The rules checked by Prometheus' own promtool: valid, and every alert both fires and stays quiet
on the input series of gateway.rules.test.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.monitoring import RULES, RULES_TEST, alerts, promtool


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts()) + 21} rules found" in result.stdout, result.stdout


def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    cases = yaml.safe_load(RULES_TEST.read_text())
    assert cases["rule_files"] == [RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
            for expected in case["exp_alerts"]:
                # A firing case states the whole notification: labels and rendered annotations.
                assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}, test["name"]
                assert "<no value>" not in str(expected["exp_annotations"])
    names = {alert["alert"] for alert in alerts()}
    assert names - fires == set(), "alerts no test makes fire"
    assert names - quiet == set(), "alerts no test keeps quiet"
    assert fires | quiet <= names, "tests of alerts that do not exist"


@pytest.mark.parametrize(("alert", "old", "new"), [
    # A metric name that does not exist: its alert no longer fires.
    ("GatewayIdentityProviderUnreachable", "gateway_jwks_fetches_total", "gateway_jwks_fetch_total"),
    # A threshold moved: the quiet case near it fires, or the firing one goes quiet.
    ("GatewayDenySpike", "gateway:refusals:ratio_rate5m > 0.25", "gateway:refusals:ratio_rate5m > 0.05"),
    ("GatewayObjectLatencyHigh", 'gateway:request_seconds:p99_rate5m{route="objects"} > 0.1',
     'gateway:request_seconds:p99_rate5m{route="objects"} > 0.2'),
    # The short window of the fast burn dropped: a past outage keeps paging.
    ("GatewayErrorBudgetBurnFast", "and gateway:api_request_errors:ratio_rate5m > (14.4 * 0.001)", ""),
])
def test_the_rule_tests_catch_a_broken_rule(tmp_path: Path, alert: str, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    # Only this alert's cases, to keep it quick; they pass on the rules as they are.
    cases = yaml.safe_load(RULES_TEST.read_text())
    cases["tests"] = [t for t in cases["tests"] if any(c["alertname"] == alert for c in t["alert_rule_test"])]
    assert cases["tests"]
    (tmp_path / RULES_TEST.name).write_text(yaml.safe_dump(cases))
    (tmp_path / RULES.name).write_text(text)
    control = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert control.returncode == 0, control.stdout + control.stderr
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    result = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr, result.stdout
