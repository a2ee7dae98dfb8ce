"""A real Prometheus on loopback scrapes a real ``gateway serve --workers 2`` with a real Redis,
under a little load that includes the failures the alerts are about. Every recording rule, every
dashboard query, every series selector and every template variable must return data; the alerts
those failures call for must be pending or firing. A name that does not exist returns nothing, so
it fails here too (and statically, in test_monitoring_files.py)."""

from __future__ import annotations

import contextlib
import json
import math
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.auth.support import SigningKey, claims_for, running_idp
from tests.deploy.monitoring import (
    GRAFANA_BUILTINS,
    RULES,
    PrometheusServer,
    Query,
    alerts,
    panel_queries,
    prometheus,
    records,
    rule_queries,
    rules,
    selectors,
    substitute,
    variable_queries,
)
from tests.redis.procs import (
    SA_KEY,
    VENDOR,
    VENDOR_KEY_ID,
    VENDOR_SECRET_ENV,
    GatewayProcess,
    RedisHolder,
    gateway_env,
    metric,
    metric_samples,
    spawn_gateway,
    stop_gateway,
    vendor_headers,
    wait_serving,
    wait_until,
)

NAMESPACE, JOB = "ops-test", "gateway"  # what Kubernetes service discovery would label the targets with
VARIABLES = {**GRAFANA_BUILTINS, "$namespace": NAMESPACE, "$job": JOB}
# Alerts whose condition this setup does not create, and why. Each of their selectors must still
# return data (test_every_selector_returns_data); gateway.rules.test.yaml makes them fire.
QUIET_HERE = {
    "GatewayObjectLatencyHigh": "the gateway answers these object requests in milliseconds, far below 100 ms",
    "GatewayAuditRecordsDropped": "the audit queue (10000) never fills with a few hundred requests",
}
# Rules and panels that may legitimately return nothing here, with the reason. None do.
NO_DATA: dict[str, str] = {}
Request = tuple[str, str, dict[str, str], bytes]


def call(port: int, method: str, target: str, headers: dict[str, str] | None = None,
         body: bytes = b"") -> tuple[int, bytes]:
    """One request on a connection of its own (``Connection: close``), so requests spread over the
    workers. A plain socket: an HTTP client per request would cost more than the request."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), payload


def _policy(root: Path, okta: str, partner: str) -> str:
    data = root / "data"
    return f"""\
version: 1
audit:
  sinks: [{{kind: file, path: "{root / 'audit.jsonl'}"}}]
auth:
  vendors:
    - name: {VENDOR}
      keys: [{{id: {VENDOR_KEY_ID}, secret_env: {VENDOR_SECRET_ENV}}}]
  oidc:
    - {{name: okta, issuer: "{okta}", audience: "api://default", jwks_refetch_interval: 1s}}
    - {{name: partner, issuer: "{partner}", audience: "api://default", jwks_refetch_interval: 1s}}
datasets:
  open:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
  vendor:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: vendor, vendors: [{VENDOR}]}}]
  driving:
    backend: {{kind: s3, bucket: acme-raw, prefix: driving/, region: us-west-2}}
    rules: [{{name: ml-team, issuers: [okta, partner], groups: [ml-team]}}]
  medical:
    backend: {{kind: gcs, bucket: acme-med, credentials_file: "{SA_KEY}"}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
  broken:
    # No HMAC key in the environment: every signing call fails, as with a pod that lost its identity.
    backend: {{kind: gcs, bucket: acme-broken, signer: hmac, hmac_access_id_env: GW_LIVE_UNSET_ID,
              hmac_secret_env: GW_LIVE_UNSET_SECRET}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
  limited:
    backend: {{kind: local, path: "{data}"}}
    rate_limit: {{requests: 3, per: 60s}}
    rules: [{{name: loopback, anonymous: true, networks: [127.0.0.0/8]}}]
"""


@dataclass
class Setup:
    prometheus: PrometheusServer
    gateway: GatewayProcess
    statuses: Counter[tuple[str, int]]  # (route prefix, status) of every request sent


def _round(n: int, scale: int, good: str, partner: str) -> list[Request]:
    """About 120 x ``scale`` requests: 40% good, 40% refused, 20% rate limited, 6% 5xx."""
    bearer = {"Authorization": f"Bearer {good}"}
    out: list[Request] = []
    for s in range(scale):
        out += [("GET", f"/v1/datasets/open/objects/images/{i % 4}.png", {}, b"") for i in range(12)]  # cache hits
        out += [("GET", f"/v1/datasets/driving/objects/images/{n}-{s}-{i}.png", bearer, b"") for i in range(10)]
        out += [("GET", f"/v1/datasets/medical/objects/scans/{i % 6}.dcm", {}, b"") for i in range(10)]  # redis
        for i in range(5):
            path = f"/v1/datasets/vendor/objects/images/{n}-{s}-{i}.png"
            out.append(("GET", path, vendor_headers(path), b""))  # HMAC, its replay nonce in Redis
        keys = json.dumps({"dataset": "open", "keys": [f"images/{i}.png" for i in range(5)]}).encode()
        out += [("POST", "/v1/sign", {"Content-Type": "application/json"}, keys)] * 2
        out.append(("OPTIONS", "/v1/sign", {"Origin": "https://app.vendor.example",
                                             "Access-Control-Request-Method": "POST"}, b""))
        # 404: an unknown dataset, asked by a caller with a credential (strangers get the 401 of any
        # dataset they may not read)
        out += [("GET", p, vendor_headers(p), b"") for p in (f"/v1/datasets/nope-{n}-{s}-{i}/objects/a.png"
                                                              for i in range(16))]
        out += [("GET", "/v1/datasets/open/objects/%2e%2e/secret", {}, b"")] * 8  # 400
        out += [("GET", f"/v1/datasets/vendor/objects/{i}.png", {}, b"") for i in range(8)]  # 401, no credential
        out += [("GET", "/v1/datasets/driving/objects/a.png", {"Authorization": "Bearer not.a.jwt"}, b"")] * 16
        out += [("GET", f"/v1/datasets/limited/objects/{n}-{s}-{i}.png", {}, b"") for i in range(24)]  # 429
        out += [("GET", f"/v1/datasets/broken/objects/{n}-{s}-{i}.png", {}, b"") for i in range(4)]  # 503: signing
        out += [("GET", f"/v1/datasets/driving/objects/p-{n}-{s}-{i}.png", {"Authorization": f"Bearer {partner}"},
                 b"") for i in range(3)]  # 503: the identity provider is down
    return out


def _send(port: int, requests: list[Request], statuses: Counter[tuple[str, int]]) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda r: call(port, r[0], r[1], r[2], r[3]), requests))
    for (_, target, _, _), (status, _) in zip(requests, results, strict=True):
        statuses[(target.split("/")[2], status)] += 1


def _local_fetches(port: int, statuses: Counter[tuple[str, int]]) -> None:
    """JSON answers, and the gateway's own local-disk URLs they hold (route local)."""
    for i in range(3):
        status, body = call(port, "GET", f"/v1/datasets/open/objects/images/{i}.png?format=json")
        statuses[("datasets", status)] += 1
        url = urlsplit(json.loads(body)["url"])
        status, _ = call(port, "GET", f"{url.path}?{url.query}")
        statuses[("local", status)] += 1


def _failing(gateway: GatewayProcess) -> float:
    return metric(metric_samples(gateway.url, Connection="close"), "gateway_policy_reload_failing")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("live")
    (root / "data" / "images").mkdir(parents=True)
    for i in range(5):
        (root / "data" / "images" / f"{i}.png").write_bytes(b"png")
    with contextlib.ExitStack() as stack:
        redis = RedisHolder()
        stack.callback(redis.stop)
        okta = stack.enter_context(running_idp())
        partner = stack.enter_context(running_idp())
        okta_key = SigningKey("k1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        okta.keys = [okta_key.jwk()]
        partner.down = True
        partner_key = SigningKey("p1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        good = okta_key.sign(claims_for(okta, time.time, groups=["ml-team"]))
        unreachable = partner_key.sign(claims_for(partner, time.time, groups=["ml-team"]))
        policy = root / "policy.yaml"
        text = _policy(root, okta.issuer, partner.issuer)
        policy.write_text(text)
        env = gateway_env(TMPDIR=str(root), GATEWAY_REDIS_URL=redis.url, GATEWAY_CORS_ORIGINS="https://app.vendor.example",
                          AWS_ACCESS_KEY_ID="AKIDOPSTEST", AWS_SECRET_ACCESS_KEY="ops-test-secret",  # noqa: S106
                          AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(root / "none"),
                          AWS_SHARED_CREDENTIALS_FILE=str(root / "none"))
        gateway = spawn_gateway(policy, root / "logs", env, workers=2, name="live")
        stack.callback(stop_gateway, gateway)
        # The port Prometheus scrapes. Today /metrics is on the gateway's own port; with an admin
        # listener (GATEWAY_ADMIN_PORT) this becomes that port, and nothing else here changes.
        scrape_port = gateway.port
        server = stack.enter_context(prometheus(root / "prometheus", [f"127.0.0.1:{scrape_port}"],
                                                labels={"namespace": NAMESPACE}, rule_files=[RULES], job=JOB))
        wait_serving(gateway, timeout=60)
        statuses: Counter[tuple[str, int]] = Counter()
        port = gateway.port

        def scraped() -> bool:
            return bool(server.query('gateway_sign_errors_total{backend="gcs"}'))

        # Warm up: every series exists once Prometheus has scraped it, so that the load after it
        # shows as increases (a labelled series' first value is no increase to rate()).
        _send(port, _round(0, 1, good, unreachable), statuses)
        _local_fetches(port, statuses)
        wait_until(scraped, 20, "Prometheus scraped the gateway")
        time.sleep(1.2)
        # The load comes in rounds more than a second (a scrape, and jwks_refetch_interval) apart.
        # rate(...[5m]) over a test this short is the increase / 300 s: the rounds carry enough
        # refusals (about 430) and 429s (about 220) to cross the alerts' floors of 1/s and 0.5/s.
        _send(port, _round(1, 3, good, unreachable), statuses)

        # Redis goes away: the URL cache, replay nonces and rate limits fall back to in-process.
        redis.kill()
        for batch in range(2):
            outage: list[Request] = [("GET", f"/v1/datasets/medical/objects/outage/{batch}-{i}.dcm", {}, b"")
                                     for i in range(6)]
            for i in range(3):
                path = f"/v1/datasets/vendor/objects/outage-{batch}-{i}.png"
                outage.append(("GET", path, vendor_headers(path), b""))
            outage += [("GET", f"/v1/datasets/limited/objects/outage-{batch}-{i}.png", {}, b"") for i in range(3)]
            _send(port, outage, statuses)
            time.sleep(1.2)
        redis.restart()

        # A refused policy file, a valid one, and a refused one again (left in place).
        policy.write_text(text.replace("rate_limit: {requests: 3", "rate_limit: {requests: -3"))
        wait_until(lambda: _failing(gateway) == 1, 10, "the broken policy file refused")
        policy.write_text(text + "# reviewed\n")
        wait_until(lambda: _failing(gateway) == 0, 10, "the fixed policy file loaded")
        policy.write_text(text.replace("rate_limit: {requests: 3", "rate_limit: {requests: 0"))
        wait_until(lambda: _failing(gateway) == 1, 10, "the second broken policy file refused")

        _send(port, _round(2, 3, good, unreachable), statuses)
        time.sleep(1.2)
        _send(port, _round(3, 3, good, unreachable), statuses)
        # Until Prometheus has every object request (workers add their counts once a second), then
        # two more scrapes and rule evaluations.
        sent = sum(n for (prefix, _), n in statuses.items() if prefix == "datasets")
        wait_until(lambda: _sum(server, 'gateway_requests_total{route="objects"}') == sent, 20,
                   f"Prometheus sees all {sent} object requests")
        time.sleep(2.5)
        yield Setup(server, gateway, statuses)


def _sum(server: PrometheusServer, selector: str) -> float:
    result = server.query(f"sum({selector})")
    return float(result[0]["value"][1]) if result else -1.0


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


def test_the_load_had_what_the_alerts_are_about(live: Setup) -> None:
    # The setup itself: if these fail, the checks below prove less than they say.
    s = live.statuses
    for expected in [("datasets", 302), ("datasets", 200), ("datasets", 404), ("datasets", 400), ("datasets", 401),
                     ("datasets", 429), ("datasets", 503), ("local", 200), ("sign", 200), ("sign", 204)]:
        assert s[expected] > 0, (expected, s)


def test_prometheus_loaded_every_rule_and_evaluates_it(live: Setup) -> None:
    loaded = [rule for group in live.prometheus.api("rules")["groups"] for rule in group["rules"]]
    assert sorted(r["name"] for r in loaded) == sorted(r.get("record") or r["alert"] for r in rules())
    unhealthy = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not unhealthy


@pytest.mark.parametrize("query", rule_queries() + panel_queries(), ids=str)
def test_every_rule_and_panel_query_returns_data(live: Setup, query: Query) -> None:
    name = query.where.removeprefix("alert ")
    result = live.prometheus.query(substitute(query.expr, VARIABLES))
    if name in QUIET_HERE or query.where in NO_DATA:
        return  # listed, with the reason; its selectors are checked below
    assert _has_data(result), f"{query}: no data for {query.expr}"


@pytest.mark.parametrize("name", [r["record"] for r in records()])
def test_prometheus_records_every_recording_rule(live: Setup, name: str) -> None:
    # The recorded series themselves, as Prometheus' rule manager wrote them (not just the expressions).
    assert _has_data(live.prometheus.query(f'{name}{{namespace="{NAMESPACE}", job="{JOB}"}}')), name


def _all_selectors() -> list[str]:
    found = {f"{name}{matchers}" for q in rule_queries() + panel_queries() for name, matchers in selectors(q.expr)}
    return sorted(found)


@pytest.mark.parametrize("selector", _all_selectors())
def test_every_selector_returns_data(live: Setup, selector: str) -> None:
    """Every series selector of every rule and panel, on its own: a misspelled metric or label
    value hides behind no `or` or `and` here."""
    assert live.prometheus.query(substitute(selector, VARIABLES)), f"no series for {selector}"


@pytest.mark.parametrize(("variable", "selector", "label"), variable_queries())
def test_every_dashboard_variable_has_values(live: Setup, variable: str, selector: str, label: str) -> None:
    values = live.prometheus.api(f"label/{label}/values", **{"match[]": substitute(selector, VARIABLES)})
    assert VARIABLES[f"${variable}"] in values, (variable, values)


def test_the_alerts_this_setup_calls_for_are_pending_or_firing(live: Setup) -> None:
    expected = {alert["alert"] for alert in alerts()} - set(QUIET_HERE)
    assert len(expected) == len(alerts()) - len(QUIET_HERE)

    def active() -> dict[str, dict[str, Any]]:
        return {a["labels"]["alertname"]: a for a in live.prometheus.api("alerts")["alerts"]}

    wait_until(lambda: expected <= set(active()), 10, f"alerts {sorted(expected - set(active()))} active")
    for name, alert in active().items():
        assert alert["state"] in {"pending", "firing"}
        assert alert["labels"]["namespace"] == NAMESPACE and alert["labels"]["job"] == JOB
        for text in alert["annotations"].values():
            assert "<no value>" not in text and "NaN" not in text, (name, text)
