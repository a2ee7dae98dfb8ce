"""The gateway's rows: one production-like server measured under the loads users really send.

``hot`` (one token, 200 keys: a page of thumbnails reloaded), ``users`` (thousands of employees with
their own tokens, each asking for keys nobody asked for just before), ``cold`` (a new key every
request), ``fresh-tokens`` (a token nobody has verified yet on every request), ``hmac`` (vendor
servers, single-use signatures checked against Redis), the batch rows, and ``gcs-cold``.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
import uuid
from pathlib import Path

from bench import fixtures as fx
from bench.harness import Row, Run, expect_redirect, expect_status, percentile, truncate
from bench.load import WrkResult, presigned_file_script, unique_paths_script, user_pairs_script
from bench.procs import BenchError, Server, running, status_kb

USER_KEY_PREFIX = "images/users/"
FRESH_TOKEN_SECONDS = 10.0  # the fresh-tokens row is shorter: every request needs its own signed token


def cold_scripts(run: Run, name: str, dataset: str, prefix: str, suffix: str, token: str) -> tuple[Path, Path]:
    """wrk scripts for a new key per request (this run's keys only), and for their warm-up."""
    auth = {"Authorization": f"Bearer {token}"}
    run_id = uuid.uuid4().hex[:6]

    def script(tag: str) -> Path:
        paths = unique_paths_script(fx.objects_path(dataset, f"{prefix}{run_id}{tag}/"), suffix, auth)
        return run.script(f"{name}{tag}", paths)

    return script(""), script("-warmup")


def users_scripts(run: Run, tokens: list[str], *, name: str = "users", dataset: str = fx.S3_DATASET,
                  headers: dict[str, str] | None = None) -> tuple[Path, Path]:
    """The ``users`` load and its warm-up, which walks a disjoint part of the (user, key) space."""
    prefix = fx.objects_path(dataset, USER_KEY_PREFIX)

    def script(tag: str, start: int) -> Path:
        text = user_pairs_script(tokens, prefix, ".jpg", run.o.user_keys, threads=run.o.threads, start=start,
                                 headers=headers)
        return run.script(f"{name}{tag}", text)

    return script("", 0), script("-warmup", len(tokens) * run.o.user_keys // 2)


def gateway(run: Run, policy: Path, audit: Path, redis_url: str, identity: fx.Identity, issuer: str, token: str,
            hot: Path) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    cold, cold_warm = cold_scripts(run, "cold", fx.S3_DATASET, "images/cold/", ".jpg", token)
    run.log(f"users: signing {run.o.users:,} employees' tokens")
    tokens = fx.user_tokens(identity, issuer, run.o.users if run.wants("users") else 2)
    users, users_warm = users_scripts(run, tokens)
    # The users load as browsers' <img> tags send it to a delivery: auto dataset: still redirects.
    auto_img, auto_img_warm = users_scripts(run, tokens, name="auto-img", dataset=fx.AUTO_DATASET,
                                            headers=fx.IMG_FETCH_METADATA)
    with running(run.gateway_server("gateway", policy, redis_url)) as server:
        first = fx.HOT_KEYS[0]
        expect_redirect(server.port, fx.objects_path(fx.S3_DATASET, first), auth,
                        f"{fx.S3_ENDPOINT}{fx.S3_BUCKET}/{fx.S3_PREFIX}{first}?X-Amz-Algorithm=")
        expect_status(server.port, fx.objects_path(fx.S3_DATASET, first), {"Authorization": "Bearer x.y.z"}, 401)
        expect_status(server.port, fx.objects_path(fx.S3_DATASET, "secrets/x.jpg"), auth, 403)
        user_key = f"{USER_KEY_PREFIX}000000.jpg"
        expect_redirect(server.port, fx.objects_path(fx.S3_DATASET, user_key), {"Authorization": f"Bearer {tokens[0]}"},
                        f"{fx.S3_BUCKET}/{fx.S3_PREFIX}{user_key}?X-Amz-Algorithm=")
        expect_redirect(server.port, fx.objects_path(fx.AUTO_DATASET, user_key),
                        {"Authorization": f"Bearer {tokens[0]}", **fx.IMG_FETCH_METADATA},
                        f"{fx.S3_BUCKET}/{fx.S3_PREFIX}{user_key}?X-Amz-Algorithm=")
        outsider = identity.token(issuer, groups=["everyone"], subject="00u0outsider")
        expect_status(server.port, fx.objects_path(fx.S3_DATASET, user_key), {"Authorization": f"Bearer {outsider}"},
                      403)

        for name, label, script, warm in (
            ("hot", "gateway (S3, one Okta JWT, 200 keys)", hot, None),
            ("users", f"gateway ({run.o.users:,} users' JWTs, {run.o.user_keys:,} keys)", users, users_warm),
            ("cold", "gateway (S3, a new key every request)", cold, cold_warm),
            ("auto-img", "gateway, delivery: auto, <img> requests (users load)", auto_img, auto_img_warm),
        ):
            if not run.wants(name) or (run.o.quick and name == "auto-img"):  # a target, not a guard: full runs
                continue
            row = Row(name, label, "gateway")
            run.measure(row, server, script, warmup_script=warm, audit=audit)
            run.audit_check(row, audit)
            run.rows.append(row)

        if run.wants("fresh-tokens"):
            fresh_tokens(run, server, identity, issuer, audit)
        if not run.o.quick and run.wants("hmac"):
            hmac(run, server, audit)
        if run.wants("batch-cold"):
            batch(run, server, token, audit)


def fresh_tokens(run: Run, server: Server, identity: fx.Identity, issuer: str, audit: Path) -> None:
    """Every request carries a token the gateway has never verified: the RS256 verify is its floor."""
    row = Row("fresh-tokens", "gateway (a never-seen JWT every request)", "gateway")
    seconds = min(run.o.seconds, FRESH_TOKEN_SECONDS)
    # Enough single-use tokens for half the users row's rate (a verify costs more than a cache hit).
    count = int(max(5_000, run.rps_of("users", 10_000) * 1.0 * seconds + 2_000))
    run.log(f"fresh-tokens: signing {count:,} tokens")
    data = fx.fresh_token_requests(run.tmp / "fresh-tokens.tsv", identity, issuer, count, dataset=fx.S3_DATASET,
                                   keys=fx.HOT_KEYS)
    script = run.script(row.name, presigned_file_script(data, run.o.threads, "/healthz"))
    run.measure(row, server, script, seconds=seconds, warmup=0, audit=audit)
    row.extra["single_use_tokens"] = count
    run.audit_check(row, audit)
    run.rows.append(row)


def hmac(run: Run, server: Server, audit: Path, row: Row | None = None) -> WrkResult:
    row = row or Row("hmac", "gateway (vendor HMAC, Redis replay check)", "gateway")
    # Each signature is accepted once: enough single-use requests for the run at 1.5x the hot rate.
    count = int(max(20_000, run.rps_of("hot", 20_000.0) * 1.5 * run.o.seconds + 5_000))
    run.log(f"{row.name}: signing {count:,} single-use requests")
    data = fx.hmac_requests(run.tmp / f"{row.name}-requests.tsv", count, dataset=fx.S3_DATASET, keys=fx.HOT_KEYS)
    from gateway.vendor_signing import sign_request

    path = fx.objects_path(fx.S3_DATASET, fx.HOT_KEYS[1]) + "?n=preflight"
    headers = sign_request("GET", path, key_id=fx.VENDOR_KEY_ID, secret=fx.VENDOR_SECRET)
    expect_redirect(server.port, path, headers, f"{fx.S3_ENDPOINT}{fx.S3_BUCKET}/")
    expect_status(server.port, path, headers, 401)  # the same signature again: a replay
    script = run.script(row.name, presigned_file_script(data, run.o.threads, "/healthz"))
    result = run.measure(row, server, script, warmup=0, audit=audit)
    row.extra["single_use_requests"] = count
    run.audit_check(row, audit)
    run.rows.append(row)
    return result


def batch(run: Run, server: Server, token: str, audit: Path) -> None:
    """POST /v1/sign with 1000 keys, sequentially on one keep-alive connection: median time."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    run_id = uuid.uuid4().hex[:6]

    def body(keys: list[str]) -> bytes:
        return json.dumps({"dataset": fx.S3_DATASET, "keys": keys}).encode()

    warm_keys = [f"images/batch/{run_id}/warm/{i:04d}.jpg" for i in range(1000)]
    for label, make in (
        ("batch-cold", lambda n: [f"images/batch/{run_id}/{n}/{i:04d}.jpg" for i in range(1000)]),
        ("batch-warm", lambda n: warm_keys),
    ):
        row = Row(label, "gateway POST /v1/sign, 1000 S3 keys", "batch")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        times: list[float] = []
        failures = 0
        try:
            for n in range(-3, run.o.batch_requests):  # three unmeasured warm-up requests
                payload = body(make(n))
                t0 = time.perf_counter()
                conn.request("POST", "/v1/sign", body=payload, headers=headers)
                response = conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - t0
                results = json.loads(data).get("results", []) if response.status == 200 else []
                if response.status != 200 or len(results) != 1000 or not all("url" in r for r in results):
                    failures += 1
                    row.extra.setdefault("first_failure", f"HTTP {response.status}: {data[:300]!r}")
                if n >= 0:
                    times.append(elapsed * 1000)
        finally:
            conn.close()
        row.extra.update(
            requests=len(times), keys_per_request=1000, failures=failures,
            median_ms=round(statistics.median(times), 2), p90_ms=round(percentile(times, 90), 2),
            min_ms=round(min(times), 2), max_ms=round(max(times), 2), response_bytes=len(data),
        )
        row.peak_rss_kb = [status_kb(pid, "VmHWM") or 0 for pid in server.worker_pids()]
        row.peak_rss_cumulative = True
        run.log(f"{label}: median {row.extra['median_ms']} ms, p90 {row.extra['p90_ms']} ms "
                f"({len(times)} requests, {failures} failures)")
        run.rows.append(row)
    truncate(audit)


def gcs_cold(run: Run, issuer: str, redis_url: str, token: str) -> None:
    row = Row("gcs-cold", "gateway (GCS RSA key, Redis URL cache)", "gateway")
    try:
        import gateway.backends.gcs  # noqa: F401 - is the backend importable at all?
    except Exception as exc:
        row.status, row.reason = "skipped", f"the GCS backend does not import: {type(exc).__name__}: {exc}"
        run.rows.append(row)
        return
    audit = run.tmp / "audit-gcs.jsonl"
    credentials = fx.gcs_service_account(run.tmp / "gcs-service-account.json")
    policy = run.tmp / "policy-gcs.yaml"
    policy.write_text(fx.policy_yaml(issuer=issuer, audit_path=audit, gcs_credentials=credentials))
    auth = {"Authorization": f"Bearer {token}"}
    script, warm = cold_scripts(run, "gcs-cold", fx.GCS_DATASET, "cold/", ".dcm", token)
    try:
        with running(run.gateway_server("gateway-gcs", policy, redis_url)) as server:
            expect_redirect(server.port, fx.objects_path(fx.GCS_DATASET, "cold/preflight.dcm"), auth,
                            "https://storage.googleapis.com/acme-scans/ct/cold/preflight.dcm?")
            run.measure(row, server, script, warmup_script=warm, audit=audit)
            run.audit_check(row, audit)
    except (BenchError, AssertionError) as exc:
        row.status, row.reason = "skipped", f"GCS backend not ready: {str(exc).splitlines()[0][:300]}"
    run.rows.append(row)
