"""One gateway (in this process, on a real socket) with a private Redis it loses: fail-closed replay,
the Redis stream audit sink in fail-closed mode, and the metrics an operator needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import redis

from gateway.audit.chain import verify_lines
from tests.redis.procs import (
    VENDOR,
    VENDOR_KEY_ID,
    VENDOR_SECRET,
    VENDOR_SECRET_ENV,
    RedisHolder,
    metric,
    metric_samples,
    vendor_headers,
    wait_until,
)
from tests.support import RunningGateway

ERROR_KEYS = {"error", "detail", "request_id"}
Start = Callable[..., RunningGateway]


def policy(tmp_path: Path, audit: str = "", extra: str = "") -> Path:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "images" / "a.png").write_bytes(b"png")
    path = tmp_path / "policy.yaml"
    path.write_text(f"""\
version: 1
{audit}
auth:
  vendors:
    - name: {VENDOR}
      keys: [{{id: {VENDOR_KEY_ID}, secret_env: {VENDOR_SECRET_ENV}}}]
datasets:
  open:
    backend: {{kind: local, path: "{data}"}}
    rules:
      - {{name: anon, anonymous: true, networks: [127.0.0.0/8]}}
      - {{name: vendor, vendors: [{VENDOR}]}}
{extra}""")
    return path


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS and body["error"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]


def get(gateway: RunningGateway, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(gateway.url + path, headers=headers, timeout=10.0)


# -- 6: fail-closed replay protection --------------------------------------------------------------------

def test_fail_closed_replay_refuses_vendor_requests_while_redis_is_down(
        tmp_path: Path, private_redis: RedisHolder, gateway_server: Start) -> None:
    gateway = gateway_server(config=policy(tmp_path, 'audit: {sinks: [{kind: file, path: "%s"}]}'
                                           % (tmp_path / "audit.jsonl")),
                             redis_url=private_redis.url, replay_fail_closed=True,
                             environ={VENDOR_SECRET_ENV: VENDOR_SECRET})
    path = "/v1/datasets/open/objects/images/a.png"
    assert get(gateway, path, vendor_headers(path)).status_code == 302
    private_redis.kill()
    refused = get(gateway, path + "?again=1", vendor_headers(path + "?again=1"))
    assert_error(refused, 503, "unavailable")
    assert int(refused.headers["retry-after"]) >= 1
    assert get(gateway, path).status_code == 302  # anonymous requests do not need the replay store


# -- 8: the Redis stream sink, and fail-closed audit ----------------------------------------------------

def test_redis_stream_sink_appends_sealed_records_and_stays_bounded(
        tmp_path: Path, private_redis: RedisHolder, gateway_server: Start) -> None:
    audit = "audit: {fail_closed: true, sinks: [{kind: redis_stream, stream: s, maxlen: 100}]}"
    gateway = gateway_server(config=policy(tmp_path, audit), redis_url=private_redis.url,
                             environ={VENDOR_SECRET_ENV: VENDOR_SECRET})
    r = redis.Redis.from_url(private_redis.url, socket_timeout=2.0)
    try:
        with httpx.Client(base_url=gateway.url, timeout=10.0) as client:
            for i in range(10):
                assert client.get(f"/v1/datasets/open/objects/images/{i}.png").status_code == 302
            assert r.xlen("s") == 10  # fail-closed: each record was written before the answer
            entries = r.xrange("s")
            lines = [fields[b"record"] + b"\n" for _, fields in entries]
            records = [orjson.loads(line) for line in lines]
            assert [rec["key"] for rec in records] == [f"images/{i}.png" for i in range(10)]
            assert all(len(rec["hash"]) == 64 and len(rec["prev_hash"]) == 64 for rec in records)
            assert records[1]["prev_hash"] == records[0]["hash"]
            result = verify_lines(lines)
            assert (result.ok, result.records, result.chains) == (True, 10, 1)
            assert all(b"sig=" not in line for line in lines)

            for i in range(290):
                assert client.get(f"/v1/datasets/open/objects/more/{i}.png").status_code == 302
            length = r.xlen("s")
            assert 100 <= length < 200, length  # MAXLEN ~ 100: trimmed in whole nodes, but bounded
            last = orjson.loads(r.xrevrange("s", count=1)[0][1][b"record"])
            assert last["key"] == "more/289.png" and last["seq"] == 300

            private_redis.kill()
            before = metric(metric_samples(gateway.url), "gateway_audit_dropped_total")
            refused = client.get("/v1/datasets/open/objects/images/1.png")
            assert_error(refused, 503, "unavailable")
            assert int(refused.headers["retry-after"]) >= 1
            assert metric(metric_samples(gateway.url), "gateway_audit_dropped_total") > before
    finally:
        r.close()


# -- 9: metrics -----------------------------------------------------------------------------------------

EXPECTED = {
    "gateway_requests_total": {"route", "status"},
    "gateway_decisions_total": {"decision", "reason"},
    "gateway_cache_requests_total": {"level", "result"},
    "gateway_sign_seconds_count": {"backend"},
    "gateway_redis_errors_total": set(),
    "gateway_audit_dropped_total": set(),
    "gateway_policy_reloads_total": {"result"},
    "gateway_rate_limited_total": set(),
    "gateway_redis_fallbacks_total": {"use"},
}


def test_metrics_cover_the_gateway_and_never_label_with_keys_or_principals(
        tmp_path: Path, private_redis: RedisHolder, gateway_server: Start) -> None:
    extra = f"""\
  closed:
    backend: {{kind: local, path: "{tmp_path / 'data'}"}}
    rules: [{{name: elsewhere, anonymous: true, networks: [10.0.0.0/8]}}]
  limited:
    backend: {{kind: local, path: "{tmp_path / 'data'}"}}
    rules: [{{name: anon, anonymous: true, networks: [127.0.0.0/8]}}]
    rate_limit: {{requests: 1, per: 1m}}
"""
    config = policy(tmp_path, 'audit: {sinks: [{kind: file, path: "%s"}]}' % (tmp_path / "audit.jsonl"), extra)
    gateway = gateway_server(config=config, redis_url=private_redis.url, reload_interval=0.1,
                             environ={VENDOR_SECRET_ENV: VENDOR_SECRET})
    secret_key = "images/private-name-7f3a.png"
    forbidden = {secret_key, "private-name-7f3a", VENDOR, VENDOR_KEY_ID}
    for _ in range(3):
        response = get(gateway, f"/v1/datasets/open/objects/{secret_key}")
        assert response.status_code == 302
        forbidden.update(parse_qs(urlsplit(response.headers["location"]).query)["sig"])
        forbidden.add(response.headers["x-request-id"])
    assert get(gateway, f"/v1/datasets/closed/objects/{secret_key}").status_code == 401  # no credential
    headers = vendor_headers(f"/v1/datasets/open/objects/{secret_key}")
    forbidden.add(headers["X-Gateway-Signature"])
    assert get(gateway, f"/v1/datasets/open/objects/{secret_key}", headers).status_code == 302
    bad = dict(headers, **{"X-Gateway-Signature": "0" * 64})
    assert get(gateway, f"/v1/datasets/open/objects/{secret_key}", bad).status_code == 401
    assert [get(gateway, f"/v1/datasets/limited/objects/{secret_key}").status_code for _ in range(2)] == [302, 429]
    assert get(gateway, "/v1/datasets/nope/objects/x").status_code == 401  # strangers cannot list datasets

    config.write_text(config.read_text() + "# edited\n")
    wait_until(lambda: metric(metric_samples(gateway.url), "gateway_policy_reloads_total", result="success") >= 1,
               5, "the policy reload was counted")

    private_redis.kill()
    assert get(gateway, f"/v1/datasets/limited/objects/{secret_key}").status_code in (302, 429)
    down = metric(metric_samples(gateway.url), "gateway_redis_errors_total")
    assert down >= 1
    for _ in range(3):
        get(gateway, f"/v1/datasets/limited/objects/{secret_key}")
        get(gateway, "/readyz")
    samples = metric_samples(gateway.url)
    assert metric(samples, "gateway_redis_errors_total") > down  # still counting while Redis is down
    assert metric(samples, "gateway_redis_fallbacks_total", use="ratelimit") >= 1

    for name, labels in EXPECTED.items():
        found = [have for n, have, _ in samples if n == name]
        assert found, f"{name} is missing"
        assert all(set(have) == labels for have in found), (name, found)
    assert metric(samples, "gateway_requests_total", route="objects", status="302") >= 5
    assert metric(samples, "gateway_decisions_total", decision="deny") >= 1
    # Repeats of a key are answered from the URL cache.
    assert metric(samples, "gateway_cache_requests_total", level="memory", result="hit") >= 2
    assert metric(samples, "gateway_cache_requests_total", level="memory", result="miss") >= 1
    assert metric(samples, "gateway_sign_seconds_count", backend="local") >= 1
    assert metric(samples, "gateway_rate_limited_total") >= 1

    # Invariant 6: label values come from small fixed sets, never keys, principals or signatures.
    values = {value for _, labels, _ in samples for value in labels.values()}
    leaks = sorted(f"{v!r} contains {f!r}" for v in values for f in forbidden if f and f in v)
    assert not leaks, leaks

