"""The monitoring files without a Prometheus: generated files are up to date, every metric they name
exists in gateway/metrics.py, and every alert says what it means and where its runbook is."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.monitoring import (
    DASHBOARD,
    RULES,
    RUNBOOK,
    RUNBOOK_BASE,
    Query,
    alerts,
    exposed_metrics,
    generator,
    load_dashboard,
    name_problems,
    panel_queries,
    recorded_labels,
    records,
    rule_queries,
    rules,
    selectors,
)

DOCS = RULES.parents[2] / "docs"
# Labels whose values come from small fixed sets (or from the operator's own config: issuer names).
FIXED_LABELS = {"namespace", "job", "issuer", "use", "backend", "route"}


def test_the_committed_files_are_what_generate_py_writes() -> None:
    # The dashboard JSON, and the chart's copies of it and of the rules (Helm reads only its own files).
    module = generator()
    stale = [str(path) for path, content in module.outputs().items()
             if not path.exists() or path.read_text(encoding="utf-8") != content]
    assert not stale, f"out of date (run python3 deploy/monitoring/generate.py): {stale}"
    assert DASHBOARD.read_text(encoding="utf-8") == module.render()


def test_every_metric_named_exists_in_gateway_metrics() -> None:
    queries = rule_queries() + panel_queries()
    assert len(queries) > 40
    assert name_problems(queries, recorded_labels()) == []


@pytest.mark.parametrize(("expr", "expected"), [
    ("sum(rate(gateway_request_total[5m]))", "gateway_request_total is neither"),   # a typo in a name
    ("rate(gateway_requests_total{rout=\"objects\"}[5m])", "has no label 'rout'"),  # and in a label
    ("gateway:requests:rate1m", "gateway:requests:rate1m is neither"),              # a rule that is not recorded
    ("sum by (backnd) (gateway:signs:rate5m)", "no metric has a label 'backnd'"),
    ("sum(up)", "names no gateway metric"),
])
def test_the_name_check_catches_what_does_not_exist(expr: str, expected: str) -> None:
    problems = name_problems([Query("test", expr)], recorded_labels())
    assert len(problems) == 1 and expected in problems[0], problems


def test_every_recording_rule_is_used_by_an_alert_or_the_dashboard() -> None:
    used = {name for query in rule_queries() + panel_queries() for name, _ in selectors(query.expr)}
    unused = [rule["record"] for rule in records() if rule["record"] not in used]
    assert not unused, f"recorded but never read: {unused}"
    names = [rule["record"] for rule in records()]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"gateway:[a-z0-9_]+:[a-z0-9_]+", name), f"{name}: level:metric:operations"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE):
        out.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_explains_itself_and_links_its_runbook_section(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    assert re.fullmatch(r"Gateway[A-Z][A-Za-z]+", name)
    assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
    assert alert["labels"]["severity"] in {"critical", "warning"}
    assert set(alert["labels"]) == {"severity"}  # labels hold fixed values; the rest come from the series
    summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
    assert 20 < len(summary) <= 120 and summary.endswith(".")
    assert len(description) > len(summary)
    url = alert["annotations"]["runbook_url"]
    assert url == f"{RUNBOOK_BASE}#{name.lower()}"
    runbook = RUNBOOK.read_text()
    assert name.lower() in _anchors(runbook), f"docs/runbook.md has no section {name}"
    section = runbook.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
    # What to check, and what to do: each section names both.
    assert "**Check**" in section and "**Do**" in section, f"runbook section {name}"
    # Annotations show only labels of fixed values that the expression keeps, and the value; never
    # a template query (which could pull anything into a notification).
    known = {**exposed_metrics(), **recorded_labels()}
    read = set().union(*(known[metric] for metric, _ in selectors(alert["expr"])))
    for label in re.findall(r"\$labels\.(\w+)", summary + description):
        assert label in FIXED_LABELS and label in read | {"namespace", "job"}, f"{name}: {label}"
    assert not re.search(r"\{\{[^}]*\bquery\b", summary + description)


def test_every_runbook_section_belongs_to_an_alert() -> None:
    names = {alert["alert"] for alert in alerts()}
    sections = set(re.findall(r"^## (Gateway\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    assert sections == names


def test_the_operations_guide_names_every_alert_and_the_slo_numbers() -> None:
    guide = (DOCS / "operations.md").read_text()
    for alert in alerts():
        assert f"`{alert['alert']}`" in guide, alert["alert"]
    # The SLO numbers of the guide are the rules' numbers.
    text = RULES.read_text()
    assert "99.9%" in guide and "0.001" in text
    assert "100 ms" in guide and 'route="objects"} > 0.1' in text
    assert "generate.py" in guide


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = load_dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    titles = {panel["title"] for panel in board["panels"]}
    # What the issue asks to see.
    for wanted in ("Requests by route and status", "Latency percentiles by route", "Decisions by reason",
                   "Cache hit ratio per level", "Signing time per backend", "JWKS and discovery fetches",
                   "Redis errors and fallbacks", "Audit records dropped", "Policy reloads"):
        assert wanted in titles
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # Every query is scoped by the namespace and job variables.
            assert 'namespace=~"$namespace", job=~"$job"' in target["expr"], (panel["title"], target["expr"])
            assert target["datasource"] == panel["datasource"]


def test_legends_show_only_labels_of_fixed_values() -> None:
    for panel in load_dashboard()["panels"]:
        for target in panel.get("targets", []):
            for label in re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]):
                assert label in FIXED_LABELS | {"instance", "le", "status", "decision", "reason", "method", "level",
                                                "result"}, (panel["title"], label)
    assert all("alert" in rule or "record" in rule for rule in rules())
