"""The chart's PrometheusRule and dashboard ConfigMap: off by default, and with both switches on
(ci/monitoring-values.yaml) the very files of deploy/monitoring/, checked by promtool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import SCENARIOS, Rendered, scenario_file
from tests.deploy.helm import template
from tests.deploy.monitoring import RUNBOOK_BASE, alerts, load_dashboard, load_rules, promtool


def _base(r: Rendered) -> str:
    base: str = r.values["prometheusRule"]["runbookBaseUrl"]
    return base


def test_the_prometheus_rule_holds_the_rules_file(rendered: dict[str, Rendered]) -> None:
    r = rendered["monitoring"]
    rule = r.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == "gw-gateway" and rule["metadata"]["namespace"] == "data"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Exactly the rules file, with the runbook links moved to the configured base.
    expected = json.loads(json.dumps(load_rules()["groups"]).replace(RUNBOOK_BASE, _base(r)))
    assert rule["spec"]["groups"] == expected
    links = [a["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for a in g["rules"] if "alert" in a]
    assert len(links) == len(alerts())
    assert all(link.startswith(_base(r) + "#gateway") for link in links)


def test_the_rendered_rules_pass_promtool(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    # The Prometheus Operator hands spec.groups to Prometheus as a rule file: check it as one.
    groups = rendered["monitoring"].one("PrometheusRule")["spec"]["groups"]
    path = tmp_path / "rendered.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in load_rules()["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_the_dashboard_configmap_is_for_grafanas_sidecar(rendered: dict[str, Rendered]) -> None:
    r = rendered["monitoring"]
    configmap = r.one("ConfigMap", "gw-gateway-dashboards")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Data gateway"}
    [(key, text)] = configmap["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == load_dashboard()


@pytest.mark.parametrize("scenario", ["default", *[s for s in SCENARIOS if s != "monitoring"]])
def test_both_are_off_unless_switched_on(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    assert not r.all("PrometheusRule")
    assert not [c for c in r.all("ConfigMap") if c["metadata"]["name"].endswith("-dashboards")]


def test_each_switch_alone(helm_bin: Path) -> None:
    out = template(helm_bin, "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.namespace=monitoring")
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "monitoring"
    links = {a["annotations"]["runbook_url"].split("#")[0] for g in rule["spec"]["groups"] for a in g["rules"]
             if "alert" in a}
    assert links == {RUNBOOK_BASE}  # the default base is the rules file's own
    assert not [o for o in objects if o["metadata"]["name"].endswith("-dashboards")]
    out = template(helm_bin, "--set", "dashboards.enabled=true")
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    [configmap] = [o for o in objects if o["metadata"]["name"] == "gw-gateway-dashboards"]
    assert configmap["metadata"]["namespace"] == "data"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert not [o for o in objects if o["kind"] == "PrometheusRule"]


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "prometheusRule.enabled=yes"], "prometheusRule"),
    (["--set", "prometheusRule.runbookBaseUrl=ftp://wiki/runbook"], "runbookBaseUrl"),
    (["--set", "dashboards.labels.grafana_dashboard=1"], "grafana_dashboard"),  # a number: the sidecar wants "1"
    (["--set", "dashboards.folder=x"], "folder"),
])
def test_bad_monitoring_values_are_refused(helm_bin: Path, args: list[str], message: str) -> None:
    result = template(helm_bin, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_monitoring_scenario_switches_both_on() -> None:
    values = yaml.safe_load(scenario_file("monitoring").read_text())
    assert values["prometheusRule"]["enabled"] is True and values["dashboards"]["enabled"] is True
