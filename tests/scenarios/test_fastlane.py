"""The hot path (grants, gateway/api/fastlane.py) over a real socket: a repeated request gets the
answer the full path would give, and nothing that changes the answer is served from a grant."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.client import sign_request
from tests.auth.support import FakeClock, Idp, SigningKey
from tests.support import RunningGateway

SECRET = "vendor-secret-" + "x" * 32
OFFICE = "10.1.2.3"
POLICY = """
version: 1
defaults: {{url_ttl: 120s, max_url_ttl: 1h, min_remaining: 0.5}}
auth:
  vendors:
    - name: aquarium
      keys: [{{id: aq-2026, secret_env: AQ_SECRET}}]
  oidc:
    - {{name: okta, issuer: "{issuer}", audience: "api://default", leeway: 0s}}
cors:
  allow_origins: [http://vendor.example]
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
datasets:
  team:
    backend: {{kind: local, path: "{root}"}}
    allow_keys: ["*.png"]
    rules:
      - {{name: ml-team-in-office, groups: [{group}], issuers: [okta], networks: [10.0.0.0/8]}}
      - {{name: vendor-servers, vendors: [aquarium]}}
  limited:
    backend: {{kind: local, path: "{root}"}}
    rate_limit: {{requests: 2, per: 1m}}
    rules: [{{name: office, anonymous: true, networks: [10.0.0.0/8]}}]
"""


class Setup:
    def __init__(self, tmp_path: Path, idp: Idp, key: SigningKey, start: Callable[..., RunningGateway],
                 **settings: Any) -> None:
        self.idp, self.key = idp, key
        self.root = tmp_path / "objects"
        self.root.mkdir()
        for name in ("a.png", "b.png", "c.png", "d.png", "secret.txt"):
            (self.root / name).write_bytes(b"\x89PNG " + name.encode())
        self.audit = tmp_path / "audit.jsonl"
        self.config = tmp_path / "policy.yaml"
        self.write_policy("ml-team")
        self.clock = FakeClock(time.time())
        self.gw = start(config=self.config, clock=self.clock, trusted_proxies=["127.0.0.1/32"],
                        environ={"AQ_SECRET": SECRET}, **settings)

    def write_policy(self, group: str) -> None:
        self.config.write_text(POLICY.format(issuer=self.idp.issuer, audit=self.audit, root=self.root, group=group))

    def token(self, *, groups: tuple[str, ...] = ("ml-team",), lifetime: float = 600) -> str:
        now = int(self.clock.now)
        return self.key.sign({"iss": self.idp.issuer, "aud": "api://default", "sub": "00u1ada",
                              "email": "ada@acme.example", "groups": list(groups), "iat": now - 5,
                              "exp": now + lifetime})

    def get(self, key: str = "a.png", *, token: str | None = None, ip: str = OFFICE, dataset: str = "team",
            query: str = "", **headers: str) -> httpx.Response:
        sent = {"X-Forwarded-For": ip, **{k.replace("_", "-"): v for k, v in headers.items()}}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return httpx.get(f"{self.gw.url}/v1/datasets/{dataset}/objects/{key}{query}", headers=sent)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.gw.url + "/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def grant_hits(self) -> float:
        return self.metric("gateway_cache_requests_total", level="grant", result="hit")

    def session_hits(self) -> float:
        return self.metric("gateway_cache_requests_total", level="session", result="hit")

    def audit_records(self) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 5
        while True:  # the writer thread flushes every 25 ms
            records = [orjson.loads(line) for line in self.audit.read_bytes().splitlines() if line.strip()]
            if time.monotonic() > deadline or records:
                return records
            time.sleep(0.05)


@pytest.fixture
def setup(tmp_path: Path, idp: Idp, idp_key: SigningKey, gateway_server: Callable[..., RunningGateway]) -> Setup:
    return Setup(tmp_path, idp, idp_key, gateway_server, reload_interval=0.05)


def _exp(response: httpx.Response) -> int:
    return int(parse_qs(urlsplit(response.headers["location"]).query)["exp"][0])


def test_a_repeat_gets_the_same_answer_and_its_own_audit_record(setup: Setup) -> None:
    token = setup.token()
    first = setup.get(token=token, Origin="http://vendor.example", User_Agent="thumbs/1")
    repeats = [setup.get(token=token, Origin="http://vendor.example", User_Agent="thumbs/1") for _ in range(3)]
    assert first.status_code == 302
    # The first repeat (a URL cache hit) kept the grant; the others were answered from it...
    assert setup.grant_hits() == 2
    for response in repeats:  # ...with what the full path answered
        assert response.status_code == 302
        for name in ("location", "cache-control", "referrer-policy", "vary", "content-length",
                     "access-control-allow-origin", "access-control-expose-headers"):
            assert response.headers.get(name) == first.headers.get(name), name
        assert response.content == b""
    ids = {r.headers["x-request-id"] for r in [first, *repeats]}
    assert len(ids) == 4
    # The URL still works: the grant holds a real signed URL.
    assert httpx.get(first.headers["location"]).content == b"\x89PNG a.png"

    time.sleep(0.3)
    records = setup.audit_records()
    redirects = [r for r in records if r["action"] == "redirect"]
    assert len(redirects) == 4
    assert {r["request_id"] for r in redirects} == ids
    for record in redirects:
        assert (record["decision"], record["status"], record["rule"]) == ("allow", 302, "ml-team-in-office")
        assert (record["dataset"], record["key"], record["client_ip"]) == ("team", "a.png", OFFICE)
        assert record["user_agent"] == "thumbs/1"
        assert record["principal"]["subject"] == "00u1ada"
        assert "expires_at" not in record["principal"]  # the credential's expiry is not an identifier
    assert [r["cache"] for r in redirects] == ["miss", "hit", "hit", "hit"]
    assert setup.metric("gateway_requests_total", route="objects", status="302") == 4
    assert setup.metric("gateway_decisions_total", decision="allow", reason="rule") == 4
    assert setup.metric("gateway_request_seconds_count", route="objects") == 4


def test_another_credential_client_or_key_is_decided_again(setup: Setup) -> None:
    token = setup.token()
    assert setup.get(token=token).status_code == 302
    # Another token (same path, same client) whose holder is not in the group.
    assert setup.get(token=setup.token(groups=("everyone",))).status_code == 403
    # The same token from outside the office network (the client IP comes from X-Forwarded-For).
    assert setup.get(token=token, ip="203.0.113.9").status_code == 403
    # No credential at all.
    assert setup.get().status_code == 401
    # A malformed credential is refused, never matched to the grant.
    assert setup.get(token=token + "x").status_code == 401
    # Another key under the same token is decided (and granted) on its own.
    assert setup.get("b.png", token=token).status_code == 302
    assert setup.grant_hits() == 0
    assert [setup.get(token=token).status_code for _ in range(2)] == [302, 302]
    assert setup.grant_hits() == 1


def test_a_grant_ends_when_the_token_expires(setup: Setup) -> None:
    setup.clock.now = (setup.clock.now // 60 + 1) * 60 + 1  # the start of a URL time bucket (60 s wide)
    token = setup.token(lifetime=30)
    assert [setup.get(token=token).status_code for _ in range(2)] == [302, 302]  # the second keeps a grant
    setup.clock.advance(20)
    assert setup.get(token=token).status_code == 302
    assert setup.grant_hits() == 1
    setup.clock.advance(11)  # past exp (leeway 0s)
    response = setup.get(token=token)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_grant_never_serves_a_url_with_less_than_its_minimum_life(setup: Setup) -> None:
    token = setup.token(lifetime=3600)
    first = setup.get(token=token)
    seen = {first.headers["location"]}
    # url_ttl 120s and min_remaining 0.5: every URL served must have at least 60 s left.
    for _ in range(12):
        setup.clock.advance(10)
        response = setup.get(token=token)
        assert response.status_code == 302
        assert _exp(response) - setup.clock.now >= 60
        seen.add(response.headers["location"])
    assert len(seen) >= 2  # a new bucket, a new URL
    assert setup.grant_hits() >= 4


def test_a_policy_reload_ends_every_grant(setup: Setup) -> None:
    token = setup.token()
    assert [setup.get(token=token).status_code for _ in range(3)] == [302, 302, 302]
    assert setup.grant_hits() == 1
    version = httpx.get(setup.gw.url + "/readyz").json()["policy_version"]
    setup.write_policy("data-eng")  # ml-team loses access
    deadline = time.monotonic() + 10
    while httpx.get(setup.gw.url + "/readyz").json()["policy_version"] == version:
        assert time.monotonic() < deadline, "the policy was not reloaded"
        time.sleep(0.05)
    assert setup.get(token=token).status_code == 403


def test_rate_limits_json_queries_and_vendor_signatures_are_never_granted(setup: Setup) -> None:
    # A rate-limited dataset counts every request, repeated or not.
    assert [setup.get(dataset="limited").status_code for _ in range(3)] == [302, 302, 429]
    token = setup.token()
    # JSON answers, by Accept or by query, are always built in full.
    for _ in range(2):
        response = setup.get(token=token, Accept="application/json")
        assert response.status_code == 200 and "url" in response.json()
        response = setup.get(token=token, query="?format=json")
        assert response.status_code == 200 and "url" in response.json()
    # Vendor HMAC: each signature once; the same signed request again is a replay.
    headers = sign_request("GET", f"{setup.gw.url}/v1/datasets/team/objects/a.png", key_id="aq-2026",
                           secret=SECRET)
    assert httpx.get(f"{setup.gw.url}/v1/datasets/team/objects/a.png", headers=headers).status_code == 302
    assert httpx.get(f"{setup.gw.url}/v1/datasets/team/objects/a.png", headers=headers).status_code == 401
    assert setup.grant_hits() == 0


def test_cors_is_decided_per_request_on_the_hot_path(setup: Setup) -> None:
    token = setup.token()
    assert [setup.get(token=token).status_code for _ in range(2)] == [302, 302]
    allowed = setup.get(token=token, Origin="http://vendor.example")
    foreign = setup.get(token=token, Origin="http://evil.example")
    assert setup.grant_hits() == 2
    assert allowed.headers["access-control-allow-origin"] == "http://vendor.example"
    assert "access-control-allow-origin" not in foreign.headers


@pytest.mark.parametrize(("entries", "hits"), [(0, 0), (1, 0), (2, 1)])
def test_the_grant_cache_size_is_a_setting(tmp_path: Path, idp: Idp, idp_key: SigningKey,
                                           gateway_server: Callable[..., RunningGateway], entries: int,
                                           hits: int) -> None:
    setup = Setup(tmp_path, idp, idp_key, gateway_server, grant_cache_entries=entries)
    token = setup.token()
    # Grants are kept on the first repeat (the 3rd and 4th request). With room for one, b's pushes
    # a's out before a comes back; with room for two, the last request is answered from a's.
    for key in ("a.png", "b.png", "a.png", "b.png", "a.png"):
        assert setup.get(key, token=token).status_code == 302
    assert setup.grant_hits() == hits


def test_a_failure_on_the_hot_path_is_a_json_500_without_a_traceback(setup: Setup, monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    token = setup.token()
    assert [setup.get(token=token).status_code for _ in range(2)] == [302, 302]

    async def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(setup.gw.app.runtime.service, "regrant", broken)
    response = setup.get(token=token, Origin="http://vendor.example")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and body["request_id"] == response.headers["x-request-id"]
    assert "injected" not in response.text and "Traceback" not in response.text
    assert response.headers["access-control-allow-origin"] == "http://vendor.example"
    assert any(r.getMessage() == "unhandled error" for r in caplog.records)


# -- sessions: a new key for a credential just seen ------------------------------------------------------

def test_a_new_key_for_a_known_credential_is_still_decided_signed_and_audited(setup: Setup) -> None:
    token = setup.token()
    assert setup.get("a.png", token=token).status_code == 302  # the full path: authenticates
    b = setup.get("b.png", token=token, User_Agent="thumbs/2")
    outside = setup.get("secret.txt", token=token)  # outside allow_keys
    missing = setup.get("x.png", token=token, dataset="nope", Origin="http://vendor.example")
    assert setup.session_hits() == 3  # all three skipped authentication...
    assert b.status_code == 302  # ...and were decided by the policy
    assert httpx.get(b.headers["location"]).content == b"\x89PNG b.png"
    assert outside.status_code == 403 and outside.json()["error"] == "forbidden"
    assert outside.json()["request_id"] == outside.headers["x-request-id"]
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "http://vendor.example"
    time.sleep(0.3)
    records = {r["request_id"]: r for r in setup.audit_records()}
    assert records[b.headers["x-request-id"]]["key"] == "b.png"
    assert records[b.headers["x-request-id"]]["user_agent"] == "thumbs/2"
    assert records[b.headers["x-request-id"]]["principal"]["subject"] == "00u1ada"
    assert records[outside.headers["x-request-id"]]["reason"] == "key_not_allowed"
    assert records[missing.headers["x-request-id"]]["reason"] == "unknown_dataset"
    assert setup.metric("gateway_requests_total", route="objects", status="403") == 1
    assert setup.metric("gateway_requests_total", route="objects", status="404") == 1


def test_a_session_ends_with_the_token_and_with_a_reload(setup: Setup) -> None:
    token = setup.token(lifetime=30)
    assert setup.get("a.png", token=token).status_code == 302
    setup.clock.advance(31)
    response = setup.get("b.png", token=token)
    assert response.status_code == 401 and "expired" in response.json()["detail"]

    token = setup.token()
    assert setup.get("c.png", token=token).status_code == 302
    version = httpx.get(setup.gw.url + "/readyz").json()["policy_version"]
    setup.write_policy("data-eng")
    deadline = time.monotonic() + 10
    while httpx.get(setup.gw.url + "/readyz").json()["policy_version"] == version:
        assert time.monotonic() < deadline, "the policy was not reloaded"
        time.sleep(0.05)
    assert setup.get("d.png", token=token).status_code == 403
    assert setup.session_hits() == 0  # neither request could use the old session


def test_sessions_keep_rate_limits_and_their_retry_after(setup: Setup) -> None:
    responses = [setup.get(f"{name}.png", dataset="limited") for name in "abc"]
    assert [r.status_code for r in responses] == [302, 302, 429]
    assert setup.session_hits() == 2
    assert int(responses[2].headers["retry-after"]) >= 1


def test_odd_headers_never_reach_a_grant_or_a_session(setup: Setup) -> None:
    token = setup.token()
    assert [setup.get(token=token).status_code for _ in range(3)] == [302, 302, 302]
    hits = (setup.grant_hits(), setup.session_hits())
    url = f"{setup.gw.url}/v1/datasets/team/objects/a.png"
    # A second Authorization header: the full path sees "Bearer x, Bearer <t>" and refuses it.
    doubled = httpx.get(url, headers=[("Authorization", "Bearer x"), ("Authorization", f"Bearer {token}"),
                                      ("X-Forwarded-For", OFFICE)])
    assert doubled.status_code == 401
    # A stray vendor header beside a good token: half a vendor signature is refused, never ignored.
    stray = httpx.get(url, headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": OFFICE,
                                    "X-Gateway-Signature": "00" * 32})
    assert stray.status_code == 401
    # Two X-Forwarded-For lines are joined and read right to left by the full path: the office
    # address is nearest, so this is allowed, but decided afresh, not matched to the grant.
    forwarded = httpx.get(url, headers=[("Authorization", f"Bearer {token}"), ("X-Forwarded-For", "203.0.113.9"),
                                        ("X-Forwarded-For", OFFICE)])
    assert forwarded.status_code == 302
    assert (setup.grant_hits(), setup.session_hits()) == hits
