"""Generate the gateway's Grafana dashboard, and copy it and the rules into the Helm chart.

    python3 deploy/monitoring/generate.py           # write the files
    python3 deploy/monitoring/generate.py --check   # exit 1 if a committed file is out of date

The dashboard is code so that its queries are easy to review and stay in step with the metric
names: tests/deploy/test_monitoring_files.py checks that the committed JSON is exactly what this
script writes, that every metric it names exists in gateway/metrics.py (or is a recording rule of
gateway.rules.yaml), and a real Prometheus scraping a real gateway runs every query. Most panels
read the recording rules, so install the rules with the dashboard. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHART_FILES = HERE.parent / "helm" / "gateway" / "files"
DASHBOARD = "gateway.dashboard.json"
RULES = "gateway.rules.yaml"
UID = "url-signing-gateway"

# Every query is filtered by these two template variables (regexes; "All" is ".*").
F = 'namespace=~"$namespace", job=~"$job"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto", "refId": ref,
            "range": True, "instant": False}


def panel(title: str, description: str, unit: str, *queries: tuple[str, str], kind: str = "timeseries",
          bars: bool = False, thresholds: list[tuple[float | None, str]] | None = None,
          mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                                "mappings": mappings or []}
    options: dict[str, Any]
    if kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto"}
    else:
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {"drawStyle": "bars" if bars else "line", "fillOpacity": 30 if bars else 10,
                              "lineWidth": 1, "showPoints": "never", "spanNulls": False,
                              "stacking": {"mode": "normal" if bars else "none", "group": "A"}}
        options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"],
                              "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def sections() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The dashboard, top to bottom: (row, its panels)."""
    return [
        (row("Service level"), [
            panel("Availability (API, 1h)",
                  "Share of API requests (objects, sign, local) answered without a 5xx over the last hour. "
                  "SLO: 99.9% over 30 days (docs/operations.md).",
                  "percentunit", (f"1 - gateway:api_request_errors:ratio_rate1h{{{F}}}", "{{namespace}}/{{job}}"),
                  kind="stat", thresholds=[(None, "red"), (0.999, "green")]),
            panel("Error budget burn rate (1h)",
                  "How fast 5xx answers use the 30-day error budget: 1 uses it up in exactly 30 days; "
                  "14.4 (over 1 hour) pages.",
                  "none", (f"gateway:api_request_errors:ratio_rate1h{{{F}}} / 0.001", "{{namespace}}/{{job}}"),
                  kind="stat", thresholds=[(None, "green"), (1, "orange"), (14.4, "red")]),
            panel("Object redirect p99 (5m)",
                  "99th percentile latency of GET/HEAD /v1/datasets/.../objects/...; SLO: 100 ms.",
                  "s", (f'gateway:request_seconds:p99_rate5m{{{F}, route="objects"}}', "{{namespace}}/{{job}}"),
                  kind="stat", thresholds=[(None, "green"), (0.1, "red")]),
            panel("Audit records dropped (time range)",
                  "Decisions the audit log does not show. Anything but 0 is an incident.",
                  "short", (f"sum by (namespace, job) (increase(gateway_audit_dropped_total{{{F}}}[$__range]))",
                            "{{namespace}}/{{job}}"),
                  kind="stat", thresholds=[(None, "green"), (1, "red")]),
            panel("Policy file",
                  "Refused: the last policy file seen does not validate, and the previous policy is still in "
                  "force (/readyz shows why).",
                  "none", (f"max by (namespace, job) (gateway_policy_reload_failing{{{F}}})", "{{namespace}}/{{job}}"),
                  kind="stat", thresholds=[(None, "green"), (1, "red")],
                  mappings=[{"type": "value", "options": {"0": {"text": "valid", "index": 0},
                                                          "1": {"text": "refused", "index": 1}}}]),
            panel("Policy in force since",
                  "When the policy in force was loaded (the newest of all pods).",
                  "dateTimeFromNow",
                  (f"max by (namespace, job) (gateway_policy_loaded_timestamp_seconds{{{F}}}) * 1000",
                   "{{namespace}}/{{job}}"),
                  kind="stat"),
        ]),
        (row("Traffic"), [
            panel("Requests by route", "Requests per second, by route (probes and /metrics included).", "reqps",
                  (f"sum by (route) (gateway:requests:rate5m{{{F}}})", "{{route}}")),
            panel("Requests by route and status", "Requests per second, by route and HTTP status.", "reqps",
                  (f"sum by (route, status) (gateway:requests:rate5m{{{F}}})", "{{route}} {{status}}")),
            panel("5xx share of API requests",
                  "The availability SLI, over 5 minutes and 1 hour; the SLO allows 0.1%.", "percentunit",
                  (f"gateway:api_request_errors:ratio_rate5m{{{F}}}", "5m {{namespace}}/{{job}}"),
                  (f"gateway:api_request_errors:ratio_rate1h{{{F}}}", "1h {{namespace}}/{{job}}")),
            panel("Latency percentiles by route", "p50, p90 and p99 request latency, by route.", "s",
                  *[(f"histogram_quantile({q}, sum by (route, le) (gateway:request_seconds_bucket:rate5m{{{F}}}))",
                     f"p{round(q * 100)} {{{{route}}}}") for q in (0.5, 0.9, 0.99)]),
            panel("Requests by instance", "Requests per second per pod (or process group), to spot imbalance.",
                  "reqps", (f"sum by (instance) (rate(gateway_requests_total{{{F}}}[$__rate_interval]))",
                            "{{instance}}")),
        ]),
        (row("Decisions and credentials"), [
            panel("Decisions by reason", "Policy decisions per second: allowed (rule) or denied, by reason.", "ops",
                  (f"sum by (decision, reason) (gateway:decisions:rate5m{{{F}}})", "{{decision}} {{reason}}")),
            panel("Rejected credentials", "Credentials refused with 401, by method and reason.", "ops",
                  (f"sum by (method, reason) (gateway:auth_failures:rate5m{{{F}}})", "{{method}} {{reason}}")),
            panel("Refusals and rate limiting",
                  "Share of decisions and credential checks that were refusals (a deny spike may be probing), "
                  "and share of API requests refused by a rate limit.", "percentunit",
                  (f"gateway:refusals:ratio_rate5m{{{F}}}", "refused {{namespace}}/{{job}}"),
                  (f"gateway:rate_limited:ratio_rate5m{{{F}}}", "rate limited {{namespace}}/{{job}}")),
        ]),
        (row("Caches and signing"), [
            panel("Cache hit ratio per level",
                  "Hits / lookups of signed URLs, in process (memory) and shared (redis).", "percentunit",
                  (f"gateway:cache_hits:ratio_rate5m{{{F}}}", "{{level}} {{namespace}}/{{job}}")),
            panel("Cache lookups by level and result", "Lookups per second.", "ops",
                  (f"sum by (level, result) (gateway:cache_requests:rate5m{{{F}}})", "{{level}} {{result}}")),
            panel("Signing time per backend", "p50 and p99 of one signing call (cache misses only).", "s",
                  *[(f"histogram_quantile({q}, sum by (backend, le) (gateway:sign_seconds_bucket:rate5m{{{F}}}))",
                     f"p{round(q * 100)} {{{{backend}}}}") for q in (0.5, 0.99)]),
            panel("Signing calls and errors per backend", "Successful and failed signing calls per second.", "ops",
                  (f"sum by (backend) (gateway:signs:rate5m{{{F}}})", "{{backend}} signed"),
                  (f"sum by (backend) (gateway:sign_errors:rate5m{{{F}}})", "{{backend}} failed")),
        ]),
        (row("Dependencies and audit"), [
            panel("JWKS and discovery fetches", "Fetches of identity providers' keys, by issuer and result.",
                  "short", (f"sum by (issuer, result) (increase(gateway_jwks_fetches_total{{{F}}}[$__rate_interval]))",
                            "{{issuer}} {{result}}"), bars=True),
            panel("Redis errors and fallbacks",
                  "Failed or skipped Redis calls, and fallbacks to in-process by store, per second.", "ops",
                  (f"sum(rate(gateway_redis_errors_total{{{F}}}[$__rate_interval]))", "errors"),
                  (f"sum by (use) (gateway:redis_fallbacks:rate5m{{{F}}})", "fallback {{use}}")),
            panel("Audit records dropped", "Records that could not be queued or written.", "short",
                  (f"sum by (namespace, job) (increase(gateway_audit_dropped_total{{{F}}}[$__rate_interval]))",
                   "{{namespace}}/{{job}}"), bars=True),
            panel("Policy reloads", "Reload attempts by result; a refused file keeps the old policy.", "short",
                  (f"sum by (result) (increase(gateway_policy_reloads_total{{{F}}}[$__rate_interval]))",
                   "{{result}}"), bars=True),
        ]),
    ]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-variable"}, "definition": query,
            "includeAll": True, "allValue": ".*", "multi": True, "refresh": 2, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0}


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for header, members in sections():
        panels.append({**header, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        y += 1
        x = 0
        for member in members:
            stat = member["type"] == "stat"
            w, h = (4, 4) if stat else (12, 8)
            if x + w > 24:
                x, y = 0, y + h
            panels.append({**member, "gridPos": {"h": h, "w": w, "x": x, "y": y}})
            x += w
        y += h
    for number, p in enumerate(panels, start=1):
        p["id"] = number
    return {
        "uid": UID,
        "title": "URL-signing gateway",
        "description": "Traffic, latency, decisions, caches, signing and dependencies of the URL-signing gateway. "
                       "Generated by deploy/monitoring/generate.py; needs the recording rules of gateway.rules.yaml.",
        "tags": ["url-signing-gateway"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1},
            variable("namespace", "Namespace", "label_values(gateway_requests_total, namespace)"),
            variable("job", "Job", 'label_values(gateway_requests_total{namespace=~"$namespace"}, job)'),
        ]},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def outputs() -> dict[Path, str]:
    """Every file this script owns, with the content it must have."""
    text = render()
    rules = (HERE / RULES).read_text(encoding="utf-8")
    return {HERE / DASHBOARD: text, CHART_FILES / DASHBOARD: text, CHART_FILES / RULES: rules}


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__, file=sys.stderr)
        return 2
    stale = []
    for path, content in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if check else 'wrote'}: {path.relative_to(HERE.parent.parent)}", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
