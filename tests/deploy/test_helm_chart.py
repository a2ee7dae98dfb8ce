"""The Helm chart: lint, render every CI scenario, validate the objects, and check what must hold."""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_policy
from gateway.settings import Settings
from tests.deploy.conftest import SCENARIOS, Rendered, scenario_file
from tests.deploy.helm import CHART, KUBE_VERSION, helm, template
from tests.support import need

ALL = ["default", *SCENARIOS]
ROLE_ARN = "eks.amazonaws.com/role-arn"
GSA = "iam.gke.io/gcp-service-account"


def _pod(r: Rendered, deployment: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = (deployment or r.gateway())["spec"]["template"]["spec"]
    return spec


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_required_scenarios_exist() -> None:
    assert {"s3-irsa", "gcs-workload-identity", "azure-workload-identity", "ingress-tls", "existing-secret",
            "monitoring", "proxy-delivery", "browser-sign-in"} <= set(SCENARIOS)


def test_azure_workload_identity_labels_the_pods(rendered: dict[str, Rendered]) -> None:
    """The webhook injects the federated token only into pods with this label."""
    assert _pod_labels(rendered["azure-workload-identity"]).get("azure.workload.identity/use") == "true"
    assert "azure.workload.identity/use" not in _pod_labels(rendered["default"])


def _pod_labels(r: Rendered) -> dict[str, str]:
    labels: dict[str, str] = r.gateway()["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.parametrize("scenario", ALL)
def test_helm_lint_strict(helm_bin: Path, scenario: str) -> None:
    args = [] if scenario == "default" else ["-f", str(scenario_file(scenario))]
    result = helm(helm_bin, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *args)
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_rendered_objects_are_valid_kubernetes(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    need(importlib.util.find_spec("kubernetes_validate") is not None,
         "kubernetes-validate is not installed (it is in uv.lock's dev group: make sync)")
    files = []
    for name, r in rendered.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(r.text)
        files.append(str(path))
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBE_VERSION, "--quiet", *files],
        capture_output=True, text=True, timeout=120, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Only the Prometheus Operator's CRDs have no schema in kubernetes-validate; nothing else may be
    # unchecked (the PrometheusRule's rules are checked by promtool in test_helm_monitoring.py).
    unchecked = [line for line in output.splitlines()
                 if line.startswith("WARN") and "ServiceMonitor" not in line and "PrometheusRule" not in line]
    assert not unchecked, output


@pytest.mark.parametrize("scenario", ALL)
def test_every_pod_is_hardened(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    deployments = r.all("Deployment")
    assert deployments
    for deployment in deployments:
        pod = _pod(r, deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert not sc.get("privileged", False)
            assert "resources" in container
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


@pytest.mark.parametrize("scenario", ALL)
def test_probes_and_port(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    container = r.container()
    # Probes and metrics use the operators' listener; the public port serves only the API.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = r.env()
    assert ports == {"http": int(env["GATEWAY_PORT"]), "admin": int(env["GATEWAY_ADMIN_PORT"])}
    assert ports["admin"] != ports["http"]
    # DNS rebinding protection, with the Service's own names so that in-cluster callers still work.
    hosts = env["GATEWAY_ALLOWED_HOSTS"].split(",")
    assert "gw-gateway" in hosts and "gw-gateway.data.svc.cluster.local" in hosts
    assert env["GATEWAY_HOST"] == "0.0.0.0"
    service = r.one("Service", "gw-gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert _matches(service["spec"]["selector"], r.gateway()["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize("scenario", ALL)
def test_the_policy_is_a_directory_mount(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    pod = _pod(r)
    container = r.container()
    # No mount uses subPath: a subPath mount never sees ConfigMap or Secret updates.
    assert all("subPath" not in m and "subPathExpr" not in m for m in container["volumeMounts"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
    volume = next(v for v in pod["volumes"] if v["name"] == "policy")
    config_path = Path(r.env()["GATEWAY_CONFIG"])
    assert config_path.parent == Path(mount["mountPath"])
    cm_name = volume["configMap"]["name"]
    existing = r.values.get("policy", {}).get("existingConfigMap")
    if existing:
        assert cm_name == existing
        assert not r.all("ConfigMap")
        assert config_path.name == r.values["policy"]["fileName"]
    else:
        configmap = r.one("ConfigMap", cm_name)
        assert set(configmap["data"]) == {config_path.name}
        # The same check as `gateway check-config`: the chart never ships a policy the gateway refuses.
        parse_policy(configmap["data"][config_path.name], f"{scenario}: ConfigMap {cm_name}")


@pytest.mark.parametrize("scenario", ALL)
def test_checksum_for_the_secret_only(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    annotations = r.gateway()["spec"]["template"]["metadata"].get("annotations", {})
    # The policy is hot-reloaded: a checksum on it would restart every pod for each policy edit.
    assert not [k for k in annotations if "config" in k or "policy" in k]
    if r.all("Secret"):
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])
    else:
        assert "checksum/secret" not in annotations


@pytest.mark.parametrize("scenario", ALL)
def test_secrets_come_from_the_chart_or_an_existing_secret(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    container = r.container()
    refs = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
    # (The external Redis's password and CA Secrets are the user's, named in externalRedis.)
    secret_volumes = [v["secret"]["secretName"] for v in _pod(r)["volumes"]
                      if "secret" in v and not v["name"].startswith("redis-")]
    existing = r.values.get("secrets", {}).get("existingSecret")
    if existing:
        assert not r.all("Secret")
        assert refs == [existing]
        assert secret_volumes == [existing]
    elif r.all("Secret"):
        secret = r.one("Secret")
        assert refs == [secret["metadata"]["name"]] == secret_volumes
        expected = set(r.values.get("secrets", {}).get("vendorKeys", {}))
        expected |= {"GATEWAY_SIGNING_KEY"} if r.values["secrets"].get("signingKey") else set()
        expected |= {"GATEWAY_REDIS_URL"} if r.values["secrets"].get("redisUrl") else set()
        expected |= {"GATEWAY_SESSION_KEYS"} if r.values["secrets"].get("sessionKeys") else set()
        expected |= set(r.values["secrets"].get("oidcClientSecrets", {}))
        assert set(secret["data"]) == expected
    else:
        assert refs == [] and secret_volumes == []
    # Nothing secret is ever a plain env value in the Deployment.
    for name in ("GATEWAY_SIGNING_KEY", "GATEWAY_SESSION_KEYS"):
        assert name not in r.env()


@pytest.mark.parametrize("scenario", ALL)
def test_env_vars_are_gateway_settings(rendered: dict[str, Rendered], scenario: str) -> None:
    fields = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    names = [n for n in rendered[scenario].env() if n.startswith("GATEWAY_")]
    assert set(names) <= fields, set(names) - fields
    Settings.model_validate({n.removeprefix("GATEWAY_").lower(): v for n, v in rendered[scenario].env().items()
                             if n.startswith("GATEWAY_")})


@pytest.mark.parametrize("scenario", ALL)
def test_network_policy(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    policy = r.one("NetworkPolicy", "gw-gateway")
    pod_labels = r.gateway()["spec"]["template"]["metadata"]["labels"]
    assert _matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Ingress: exactly the HTTP port, from the configured peers (or any peer), and the admin port
    # only from its own peers: with none, no rule opens it (docs/hardening.md, docs/deploy.md).
    api, *admin = policy["spec"]["ingress"]
    assert api["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert api.get("from", []) == r.values.get("networkPolicy", {}).get("ingressFrom", [])
    admin_peers = r.values.get("networkPolicy", {}).get("adminIngressFrom", [])
    if admin_peers:
        assert admin == [{"ports": [{"port": "admin", "protocol": "TCP"}], "from": admin_peers}]
    else:
        assert admin == []
    egress = policy["spec"]["egress"]
    ports = {(p["port"], p["protocol"]) for e in egress for p in e.get("ports", [])}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP")} <= ports
    open_everywhere = [e for e in egress if "to" not in e]
    assert all({p["port"] for p in e["ports"]} <= {53, 6379, 6380, 26379} for e in open_everywhere)
    sentinel = r.values.get("externalRedis", {}).get("url", "").startswith(("redis+sentinel:", "rediss+sentinel:"))
    assert ((26379, "TCP") in ports) is sentinel
    # Object stores on other ports (proxy delivery reads through them), exactly where configured.
    for store in r.values.get("networkPolicy", {}).get("egress", {}).get("storageEndpoints", []):
        assert {"to": [{"ipBlock": {"cidr": store["cidr"]}}],
                "ports": [{"port": store["port"], "protocol": "TCP"}]} in egress


def test_bundled_redis_is_reachable_only_from_the_gateway(rendered: dict[str, Rendered]) -> None:
    r = rendered["gcs-workload-identity"]
    redis = r.one("Deployment", "gw-gateway-redis")
    service = r.one("Service", "gw-gateway-redis")
    assert _matches(service["spec"]["selector"], redis["spec"]["template"]["metadata"]["labels"])
    assert r.env()["GATEWAY_REDIS_URL"] == "redis://gw-gateway-redis:6379/0"
    policy = r.one("NetworkPolicy", "gw-gateway-redis")
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    gateway_labels = r.gateway()["spec"]["template"]["metadata"]["labels"]
    assert _matches(peer["podSelector"]["matchLabels"], gateway_labels)
    assert not _matches(peer["podSelector"]["matchLabels"], redis["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["egress"] == []
    # The gateway's own selector must not pick the Redis pods up (Service, PDB, NetworkPolicy).
    selector = r.gateway()["spec"]["selector"]["matchLabels"]
    assert not _matches(selector, redis["spec"]["template"]["metadata"]["labels"])
    assert "GATEWAY_REDIS_URL" not in rendered["default"].env()


@pytest.mark.parametrize(("scenario", "expected"), [
    ("s3-irsa", {ROLE_ARN: "arn:aws:iam::123456789012:role/url-signing-gateway"}),
    ("gcs-workload-identity", {GSA: "url-signing-gateway@acme-data.iam.gserviceaccount.com"}),
    ("azure-workload-identity", {"azure.workload.identity/client-id": "00000000-1111-2222-3333-444444444444"}),
    ("ingress-tls", {}),
    ("default", {}),
])
def test_service_account_annotations(rendered: dict[str, Rendered], scenario: str, expected: dict[str, str]) -> None:
    r = rendered[scenario]
    account = r.one("ServiceAccount")
    assert account["metadata"].get("annotations", {}) == expected
    assert account["automountServiceAccountToken"] is False
    assert _pod(r)["serviceAccountName"] == account["metadata"]["name"]


def test_existing_service_account_is_used_not_created(rendered: dict[str, Rendered]) -> None:
    r = rendered["existing-secret"]
    assert not r.all("ServiceAccount")
    assert _pod(r)["serviceAccountName"] == "gateway-runtime"


def test_ingress_with_tls(rendered: dict[str, Rendered]) -> None:
    r = rendered["ingress-tls"]
    ingress = r.one("Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["data-gateway.example.com"], "secretName": "data-gateway-tls"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "data-gateway.example.com"
    service = r.one("Service", "gw-gateway")
    for path in rule["http"]["paths"]:
        # Only the API is public: /healthz, /readyz and /metrics are not routed.
        assert path["path"] == "/v1"
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    env = r.env()
    assert env["GATEWAY_PUBLIC_URL"] == "https://data-gateway.example.com"
    for cidr in env["GATEWAY_TRUSTED_PROXIES"].split(","):
        ipaddress.ip_network(cidr)
    assert not rendered["default"].all("Ingress")


def test_autoscaling_pdb_and_service_monitor(rendered: dict[str, Rendered]) -> None:
    r = rendered["ingress-tls"]
    hpa = r.one("HorizontalPodAutoscaler")
    deployment = r.gateway()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}
    monitor = r.one("ServiceMonitor")
    service = r.one("Service", "gw-gateway")
    assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("admin", "/metrics")
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "admin"}

    default = rendered["default"]
    assert default.gateway()["spec"]["replicas"] == 2
    assert default.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not default.all("HorizontalPodAutoscaler") and not default.all("ServiceMonitor")


@pytest.mark.parametrize("scenario", ALL)
def test_topology_spread_selects_the_gateway_pods(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    pod = _pod(r)
    labels = r.gateway()["spec"]["template"]["metadata"]["labels"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in pod["topologySpreadConstraints"]:
        assert _matches(constraint["labelSelector"]["matchLabels"], labels)


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "bogus=1"], "bogus"),
    (["--set", "image.pullPolicy=Sometimes"], "pullPolicy"),
    (["--set", "secrets.signingKey=too-short"], "signingKey"),
    (["--set", "secrets.existingSecret=x", "--set", "secrets.redisUrl=redis://r:6379/0"], "existingSecret"),
    (["--set", "redis.enabled=true", "--set", "secrets.redisUrl=redis://r:6379/0"], "both set"),
    (["--set", "policy.content=version: [1"], "not valid YAML"),
    (["--set", "policy.content=datasets: {}"], "no `version`"),
    (["--set", "serviceAccount.awsRoleArn=my-role"], "awsRoleArn"),
    (["--set", "externalRedis.url=redis+cluster://r:6379/", "--set", "redis.enabled=true"], "choose one Redis"),
    (["--set", "externalRedis.url=rediss://:pw@r:6379/0"], "/externalRedis/url"),  # no credentials in values
    (["--set", "externalRedis.username=gw"], "externalRedis.url is empty"),
    (["--set", "externalRedis.url=rediss+cluster://r:6379/", "--set", "externalRedis.auth=elasticache-iam"],
     "needs externalRedis.username"),
    (["--set", "externalRedis.url=redis://r:6379/0", "--set", "externalRedis.auth=ldap"], "auth"),
    (["--set", "secrets.sessionKeys={short}"], "sessionKeys"),
    (["--set", "secrets.existingSecret=x", "--set", "secrets.oidcClientSecrets.OKTA=s"], "existingSecret"),
])
def test_contradictory_or_invalid_values_are_refused(helm_bin: Path, args: list[str], message: str) -> None:
    result = template(helm_bin, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths.extend(_leaves(value, f"{path}."))
        else:
            paths.append(path)
    return paths


def test_every_value_is_documented_and_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    free_form = {"podSecurityContext", "securityContext", "resources", "updateStrategy", "redis.resources",
                 "dashboards.labels"}
    undocumented, unschemed = [], []
    for path in _leaves(values):
        if not any(path == f or path.startswith(f"{f}.") for f in free_form) and f"`{path}`" not in readme:
            undocumented.append(path)
        node = schema
        for part in path.split("."):
            props = node.get("properties", {})
            if part not in props:
                if node.get("additionalProperties", True) is False:
                    unschemed.append(path)
                break
            node = props[part]
    assert not undocumented, f"values missing from the chart README: {undocumented}"
    assert not unschemed, f"values missing from values.schema.json: {unschemed}"
    for section in free_form:
        assert f"`{section}`" in readme


@pytest.mark.parametrize(("args", "warned"), [
    (["--set", "ingress.enabled=true"], True),
    (["--set", "ingress.enabled=true", "--set", "gateway.trustedProxies={10.0.0.0/8}"], False),
    ([], False),
])
def test_notes_warn_about_untrusted_ingress_proxies(helm_bin: Path, args: list[str], warned: bool) -> None:
    result = helm(helm_bin, "install", "gw", str(CHART), "--dry-run=client", *args)
    notes = result.stdout.partition("NOTES:")[2]
    assert "gateway check-config" in notes
    assert ("gateway.trustedProxies is empty" in notes) is warned


@pytest.mark.parametrize("scenario", [s for s in ALL if s != "existing-secret"])
def test_vendor_secrets_named_by_the_policy_are_delivered(rendered: dict[str, Rendered], scenario: str) -> None:
    r = rendered[scenario]
    configmap = r.one("ConfigMap", "gw-gateway-policy")
    [text] = configmap["data"].values()
    policy = parse_policy(text)
    secrets = r.all("Secret")
    keys = set(secrets[0]["data"]) if secrets else set()
    mount = next((m["mountPath"] for m in r.container()["volumeMounts"] if m["name"] == "secrets"), None)
    browser = [issuer.browser for issuer in policy.auth.oidc if issuer.browser is not None]
    if browser:  # browser sign-in needs its session keys and client secrets
        assert "GATEWAY_SESSION_KEYS" in keys
        Settings(session_keys=base64.b64decode(secrets[0]["data"]["GATEWAY_SESSION_KEYS"]).decode())
    for sign_in in browser:
        file = sign_in.client_secret_file
        assert sign_in.client_secret_env in keys or (file is not None and file.name in keys)
    for vendor in policy.auth.vendors:
        for key in vendor.keys:
            if key.secret_env is not None:
                assert key.secret_env in keys, f"{key.id}: {key.secret_env} is not in the Secret"
            if key.secret_file is not None:
                assert mount is not None and key.secret_file.parent == Path(mount)
                assert key.secret_file.name in keys


@pytest.mark.parametrize(("scenario", "expected"), [
    ("elasticache-cluster-iam", {"GATEWAY_REDIS_AUTH": "elasticache-iam", "GATEWAY_REDIS_IAM_CACHE": "gateway-cache",
                                 "GATEWAY_REDIS_USERNAME": "data-gateway", "GATEWAY_REPLAY_FAIL_CLOSED": "true"}),
    ("sentinel-tls", {"GATEWAY_REDIS_PASSWORD_FILE": "/etc/gateway/redis-password/password",
                      "GATEWAY_REDIS_CA_FILE": "/etc/gateway/redis-ca/ca.crt", "GATEWAY_REDIS_USERNAME": "gateway"}),
    ("memorystore-cluster", {"GATEWAY_REDIS_AUTH": "memorystore-iam", "GATEWAY_REDIS_READ_FROM_REPLICAS": "true",
                             "GATEWAY_REDIS_CA_FILE": "/etc/gateway/redis-ca/ca.crt"}),
])
def test_external_redis_values_become_settings_and_mounts(rendered: dict[str, Rendered], scenario: str,
                                                           expected: dict[str, str]) -> None:
    r = rendered[scenario]
    env = r.env()
    assert env["GATEWAY_REDIS_URL"] == r.values["externalRedis"]["url"]
    assert expected.items() <= env.items()
    settings = Settings.model_validate({n.removeprefix("GATEWAY_").lower(): v for n, v in env.items()
                                        if n.startswith("GATEWAY_") and n != "GATEWAY_REDIS_CA_FILE"})
    assert settings.redis_url == r.values["externalRedis"]["url"]
    mounts = {m["name"]: m["mountPath"] for m in r.container()["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod(r)["volumes"]}
    for name, variable in (("redis-password", "GATEWAY_REDIS_PASSWORD_FILE"), ("redis-ca", "GATEWAY_REDIS_CA_FILE")):
        if variable in env:
            assert env[variable].startswith(mounts[name] + "/")  # a directory mount: rotations reach the pod
            [item] = volumes[name]["secret"]["items"]
            assert env[variable].endswith("/" + item["path"])
        else:
            assert name not in mounts
    # The sentinels' password comes from its Secret, never as a plain value.
    sentinel = [e for e in r.container()["env"] if e["name"] == "GATEWAY_REDIS_SENTINEL_PASSWORD"]
    assert all("valueFrom" in e and "value" not in e for e in sentinel)


def test_the_admin_port_is_closed_by_default(rendered: dict[str, Rendered]) -> None:
    """Finding 9 of issue 25: the default policy opened the admin port (metrics, the detailed
    readiness) to any source. Every rule that names the admin port must name its peers."""
    for name, r in rendered.items():
        ingress = r.one("NetworkPolicy", "gw-gateway")["spec"]["ingress"]
        for rule in ingress:
            if any(port["port"] == "admin" for port in rule["ports"]):
                assert rule.get("from"), f"{name}: the admin port is open to any source"
    default = rendered["default"].one("NetworkPolicy", "gw-gateway")["spec"]["ingress"]
    assert [port["port"] for rule in default for port in rule["ports"]] == ["http"]


def test_a_service_monitor_needs_the_admin_port_opened_to_prometheus(helm_bin: Path) -> None:
    """Prometheus scrapes the admin port: a ServiceMonitor without adminIngressFrom would scrape
    nothing, so the chart refuses to render it and says what to set."""
    refused = template(helm_bin, "--set", "metrics.serviceMonitor.enabled=true", check=False)
    assert refused.returncode != 0
    assert "networkPolicy.adminIngressFrom" in refused.stderr
    opened = template(helm_bin, "--set", "metrics.serviceMonitor.enabled=true",
                      "--set", "networkPolicy.adminIngressFrom[0].podSelector.matchLabels.app=prometheus")
    assert "kind: ServiceMonitor" in opened.stdout
    without_policy = template(helm_bin, "--set", "metrics.serviceMonitor.enabled=true",
                              "--set", "networkPolicy.enabled=false")
    assert "kind: ServiceMonitor" in without_policy.stdout
