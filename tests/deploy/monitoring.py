"""The monitoring files (rules, dashboard) as data, the metric names the gateway exposes, and
Prometheus' own tools (promtool, the server) run on loopback."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import Metrics
from tests.support import free_port, need

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "gateway.rules.yaml"
RULES_TEST = MONITORING / "gateway.rules.test.yaml"
DASHBOARD = MONITORING / "gateway.dashboard.json"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_BASE = "https://git.example.com/platform/url-signing-gateway/blob/main/docs/runbook.md"
# Labels that Prometheus adds to every scraped series (Kubernetes service discovery adds namespace).
TARGET_LABELS = {"namespace", "job", "instance"}
# Grafana's built-in variables, and the dashboard's own, as a test setup gives them values.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def load_rules(path: Path = RULES) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def rules(path: Path = RULES) -> list[dict[str, Any]]:
    return [rule for group in load_rules(path)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def records() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "record" in rule]


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def generator() -> ModuleType:
    """deploy/monitoring/generate.py, imported from its path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("monitoring_generate", MONITORING / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Query:
    """One PromQL expression that ships: a rule's, a dashboard panel's, or a template variable's."""

    where: str  # e.g. "record gateway:requests:rate5m", "panel 'Requests by route' A"
    expr: str

    def __str__(self) -> str:
        return self.where


def rule_queries() -> list[Query]:
    return [Query(f"record {r['record']}" if "record" in r else f"alert {r['alert']}", r["expr"]) for r in rules()]


def panel_queries(dashboard: dict[str, Any] | None = None) -> list[Query]:
    board = dashboard or load_dashboard()
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append(Query(f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


def variable_queries(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(variable name, metric selector, label) of every ``label_values(selector, label)`` variable."""
    board = dashboard or load_dashboard()
    out = []
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: only label_values(selector, label) is supported: {query}"
        out.append((variable["name"], match[1], match[2]))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's variables replaced as Grafana would (longest names first, so $__range is not $__r...)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    leftover = re.findall(r"\$\w+", expr)
    assert not leftover, f"unknown Grafana variables {leftover} in {expr}"
    return expr


# -- metric names -------------------------------------------------------------------------------------

_SELECTOR = re.compile(r"(?<![\w:])(gateway[_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, matchers text or "") of every series selector of ``expr``. Every metric and
    recording rule of the gateway starts with ``gateway_`` or ``gateway:``; no label does."""
    return [(m[1], m[2] or "") for m in _SELECTOR.finditer(expr)]


def matcher_labels(matchers: str) -> list[str]:
    return [m[1] for m in _MATCHER.finditer(matchers)]


def grouping_labels(expr: str) -> list[str]:
    return [label.strip() for m in _GROUPING.finditer(expr) for label in m[1].split(",") if label.strip()]


def exposed_metrics() -> dict[str, set[str]]:
    """Every sample name the gateway can expose, with its label names, read from gateway/metrics.py
    (a Counter("gateway_requests") is gateway_requests_total; a Histogram adds _bucket, _count, _sum)."""
    metrics = Metrics(CollectorRegistry())
    out: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        labels = set(collector._labelnames)  # prometheus_client keeps label names only here
        for family in collector.describe():
            suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"],
                        "gauge": [""]}[family.type]
            for suffix in suffixes:
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def name_problems(queries: list[Query], recorded: dict[str, set[str]]) -> list[str]:
    """Every metric name that is neither exposed by the gateway nor recorded by the rules, and every
    label that the named metric does not have."""
    known = exposed_metrics()
    all_labels = set().union(*known.values(), *recorded.values()) | TARGET_LABELS
    problems = []
    for query in queries:
        found = selectors(query.expr)
        if not found:
            problems.append(f"{query}: names no gateway metric: {query.expr}")
        for name, matchers in found:
            labels = known.get(name, recorded.get(name))
            if labels is None:
                problems.append(f"{query}: {name} is neither a gateway metric nor a recording rule")
                continue
            for label in matcher_labels(matchers):
                if label not in labels | TARGET_LABELS:
                    problems.append(f"{query}: {name} has no label {label!r}")
        for label in grouping_labels(query.expr):
            if label not in all_labels:
                problems.append(f"{query}: no metric has a label {label!r} to group by")
    return problems


def recorded_labels() -> dict[str, set[str]]:
    """The labels each recording rule keeps: those of its outermost ``by (...)``, else its inputs'."""
    known = exposed_metrics()
    out: dict[str, set[str]] = {}
    for rule in records():
        by = re.match(r"\s*\w+\s+by\s*\(([^)]*)\)", rule["expr"])
        if by:
            out[rule["record"]] = {label.strip() for label in by[1].split(",")}
        else:
            names = [name for name, _ in selectors(rule["expr"])]
            out[rule["record"]] = set().union(*(known.get(n, out.get(n, set())) for n in names)) - {"le"}
    return out


# -- Prometheus' own tools ------------------------------------------------------------------------------

def tool(name: str) -> str:
    """promtool or prometheus from Debian's ``prometheus`` package (scripts/test installs it)."""
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (apt-get install prometheus)")
    assert path is not None
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120, check=False,
                          cwd=cwd)


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; fails the test on a PromQL error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]


@contextlib.contextmanager
def prometheus(workdir: Path, targets: list[str], *, labels: dict[str, str], rule_files: list[Path],
               job: str = "gateway", metrics_path: str = "/metrics") -> Iterator[PrometheusServer]:
    """A real Prometheus on 127.0.0.1 (a free port) scraping ``targets`` every second and
    evaluating ``rule_files`` every second; stopped by its PID on the way out."""
    binary = tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "metrics_path": metrics_path,
                            "static_configs": [{"targets": targets, "labels": labels}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"prometheus exited: {log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"prometheus not ready: {log.read_text()[-2000:]}"
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
