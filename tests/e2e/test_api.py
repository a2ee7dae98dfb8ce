"""The HTTP API's contract over a real socket: redirects and their headers, JSON mode, batch
signing, health, readiness, metrics, CORS and the absence of any open redirect."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.e2e.conftest import A_BIN, make_data_dir
from tests.e2e.helpers import FakeClock, assert_error, local_policy, metric_samples, raw_request
from tests.support import RunningGateway, free_port, serve_app

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
APP_ORIGIN = "http://app.example.test:3000"
PUBLIC = "https://files.example.test"


def _exp(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["exp"][0])


def _parse_rfc3339(text: str) -> float:
    assert RFC3339_UTC.match(text), text
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def client(shared_gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_gateway.url, timeout=10, follow_redirects=False) as c:
        yield c


# -- the object route -------------------------------------------------------------------------

def test_redirect_headers(client: httpx.Client) -> None:
    response = client.get("/v1/datasets/local/objects/a.bin")
    now = time.time()
    assert response.status_code == 302
    assert response.content == b""
    assert response.headers["referrer-policy"] == "no-referrer"
    match = re.fullmatch(r"private, max-age=(\d+)", response.headers["cache-control"])
    assert match, response.headers["cache-control"]
    remaining = _exp(response.headers["location"]) - now
    assert 0 <= int(match.group(1)) < remaining
    assert "accept" in response.headers.get("vary", "").lower()
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])


def test_same_url_within_a_time_bucket(client: httpx.Client) -> None:
    first = client.get("/v1/datasets/local/objects/hello.txt").headers["location"]
    second = client.get("/v1/datasets/local/objects/hello.txt").headers["location"]
    assert first == second


@pytest.mark.parametrize(("query", "headers"), [
    ("?format=json", {}),
    ("", {"Accept": "application/json"}),
    ("?format=json", {"Accept": "text/html"}),
])
def test_json_mode(client: httpx.Client, query: str, headers: dict[str, str]) -> None:
    response = client.get(f"/v1/datasets/local/objects/a.bin{query}", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "location" not in response.headers
    body = response.json()
    assert set(body) == {"url", "expires_at"}
    assert _parse_rfc3339(body["expires_at"]) == _exp(body["url"])
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"].startswith("private, max-age=")
    assert httpx.get(body["url"], timeout=10).content == A_BIN


def test_browser_accept_still_redirects(client: httpx.Client) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,application/json;q=0.8,*/*;q=0.7"
    assert client.get("/v1/datasets/local/objects/a.bin", headers={"Accept": accept}).status_code == 302
    assert client.get("/v1/datasets/local/objects/a.bin?format=xml").status_code == 302


def test_head_on_object_route(shared_gateway: RunningGateway) -> None:
    response = raw_request(shared_gateway.port, b"/v1/datasets/local/objects/a.bin", method=b"HEAD")
    assert response.status == 302
    assert response.body == b""
    assert (response.header("location") or "").startswith(f"{shared_gateway.url}/v1/local/local/a.bin?")
    assert response.header("referrer-policy") == "no-referrer"


def test_signing_never_looks_an_object_up(client: httpx.Client) -> None:
    present = client.get("/v1/datasets/local/objects/a.bin")
    absent = client.get("/v1/datasets/local/objects/no-such-file.bin")
    assert present.status_code == absent.status_code == 302
    assert httpx.get(absent.headers["location"], timeout=10).status_code == 404


def test_cached_url_keeps_its_minimum_life(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Invariant 7: across a whole time bucket, every URL handed out has >= half its life left."""
    clock = FakeClock(now=1_800_000_000.0)
    gw: RunningGateway = gateway_server(clock=clock, local_dir=make_data_dir(tmp_path))
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        for step in range(0, 400, 7):
            clock.now = 1_800_000_000.0 + step
            response = c.get("/v1/datasets/local/objects/a.bin")
            remaining = _exp(response.headers["location"]) - clock.now
            assert remaining >= 150, (step, remaining)  # url_ttl 300s, min_remaining 0.5
            max_age = int(response.headers["cache-control"].rsplit("=", 1)[1])
            assert max_age < remaining


# -- batch --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("restricted")
    data = make_data_dir(root)
    policy = local_policy(root / "policy.yaml", data, allow_keys=["nested/**", "*.bin"])
    port = free_port()
    app = create_app(Settings(port=port, config=policy, signing_key="r" * 32, public_url=PUBLIC,
                              cors_origins=[APP_ORIGIN]))
    with serve_app(app, port) as running:
        yield running


@pytest.fixture(scope="module")
def public(data_dir: Path) -> Iterator[RunningGateway]:
    """The embedded default behind a configured public URL (GATEWAY_PUBLIC_URL)."""
    port = free_port()
    app = create_app(Settings(port=port, local_dir=data_dir, signing_key="p" * 32, public_url=PUBLIC + "/"))
    with serve_app(app, port) as running:
        yield running


def test_batch_results_in_order_with_per_key_errors(restricted: RunningGateway) -> None:
    keys = ["a.bin", "../etc/passwd", "hello.txt", "nested/x/y.bin", "", 42, "a" * 1025, "empty.bin", "a.bin"]
    with httpx.Client(base_url=restricted.url, timeout=10) as c:
        response = c.post("/v1/sign", json={"dataset": "local", "keys": keys})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    results = response.json()["results"]
    assert len(results) == len(keys)
    expected = ["url", "invalid_key", "forbidden", "url", "invalid_key", "invalid_key", "invalid_key", "url", "url"]
    for key, result, outcome in zip(keys, results, expected, strict=True):
        if outcome == "url":
            assert set(result) == {"key", "url", "expires_at"}, result
            assert result["key"] == key
            assert result["url"].startswith(f"{PUBLIC}/v1/local/local/")
            assert _parse_rfc3339(result["expires_at"]) == _exp(result["url"])
        else:
            assert set(result) == {"key", "error", "detail"}, result
            assert result["error"] == outcome, result
    assert results[0]["url"] == results[-1]["url"]
    assert results[3]["url"].startswith(f"{PUBLIC}/v1/local/local/nested/x/y.bin?")


def test_batch_same_urls_as_redirects(shared_gateway: RunningGateway, client: httpx.Client) -> None:
    batch = client.post("/v1/sign", json={"dataset": "local", "keys": ["a.bin"]}).json()["results"][0]["url"]
    assert client.get("/v1/datasets/local/objects/a.bin").headers["location"] == batch


def test_key_outside_allow_keys_is_403(restricted: RunningGateway) -> None:
    with httpx.Client(base_url=restricted.url, timeout=10) as c:
        assert c.get("/v1/datasets/local/objects/a.bin").status_code == 302
        assert_error(c.get("/v1/datasets/local/objects/hello.txt"), 403, "forbidden")


# -- health, readiness, metrics --------------------------------------------------------------

def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert re.fullmatch(r"[0-9a-f]{12}", body["policy_version"])
    assert body["last_reload_error"] is None
    assert body["backends"]["local"]["ok"] is True


def test_readyz_degraded_when_the_data_folder_disappears(gateway_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_data_dir(tmp_path)
    gw: RunningGateway = gateway_server(local_dir=data)
    assert httpx.get(f"{gw.url}/readyz", timeout=10).json()["status"] == "ready"
    data.rename(tmp_path / "moved")
    response = httpx.get(f"{gw.url}/readyz", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "degraded"


def test_metrics_labels_are_bounded(shared_gateway: RunningGateway, client: httpx.Client) -> None:
    secret_key = "private-patient-4711.bin"
    token = "eyJhbGciOiJSUzI1NiJ9.secret-token-value.sig"  # noqa: S105
    location = client.get(f"/v1/datasets/local/objects/{secret_key}").headers["location"]
    sig = parse_qs(urlsplit(location).query)["sig"][0]
    httpx.get(location, timeout=10)
    unauthorized = client.get("/v1/datasets/local/objects/a.bin", headers={"Authorization": f"Bearer {token}"})
    body = assert_error(unauthorized, 401)
    assert token not in body["detail"] and "www-authenticate" in unauthorized.headers
    client.get("/v1/datasets/local/objects/%2e%2e")
    client.get(f"/definitely-not-a-route/{secret_key}")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    samples = metric_samples(text)
    requests = {(lbl["route"], lbl["status"]): v for name, lbl, v in samples if name == "gateway_requests_total"}
    assert requests.get(("objects", "302"), 0) >= 1
    assert requests.get(("objects", "400"), 0) >= 1
    assert requests.get(("objects", "401"), 0) >= 1
    assert requests.get(("local", "200"), 0) >= 1
    assert requests.get(("other", "404"), 0) >= 1
    buckets = [lbl for name, lbl, _ in samples if name == "gateway_request_seconds_bucket"]
    assert any(lbl.get("route") == "objects" and lbl.get("le") == "+Inf" for lbl in buckets)
    assert any(name == "gateway_request_seconds_count" for name, _, _ in samples)
    for leak in (secret_key, "private-patient", token, "secret-token", sig, "127.0.0.1", "anonymous", "Bearer"):
        assert leak not in text, leak
    allowed_labels = {"route", "status", "le", "decision", "reason", "method", "level", "result", "backend",
                      "issuer"}
    for _, labels, _ in samples:
        assert set(labels) <= allowed_labels, labels


# -- CORS ----------------------------------------------------------------------------------

def _preflight(url: str, origin: str, headers: str = "authorization, range") -> httpx.Response:
    return httpx.options(url, timeout=10, headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": headers})


def test_preflight_allowed_origin(restricted: RunningGateway) -> None:
    response = _preflight(f"{restricted.url}/v1/datasets/local/objects/a.bin", APP_ORIGIN)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "range", "content-type"} <= allowed
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "origin" in response.headers["vary"].lower()
    # Preflights are answered without authentication, on every route.
    for path in ("/v1/sign", "/v1/local/local/a.bin", "/nope"):
        assert _preflight(f"{restricted.url}{path}", APP_ORIGIN).status_code == 204


@pytest.mark.parametrize("origin", ["http://evil.example", "http://app.example.test", "https://app.example.test:3000",
                                    "http://app.example.test:3000.evil.example", "null"])
def test_preflight_disallowed_origin(restricted: RunningGateway, origin: str) -> None:
    response = _preflight(f"{restricted.url}/v1/datasets/local/objects/a.bin", origin)
    assert_error(response, 403, "cors_origin_not_allowed")
    assert not [h for h in response.headers if h.startswith("access-control-")]


def test_simple_get_with_allowed_origin(restricted: RunningGateway) -> None:
    with httpx.Client(base_url=restricted.url, timeout=10, headers={"Origin": APP_ORIGIN}) as c:
        for response in (c.get("/v1/datasets/local/objects/a.bin"), c.get("/v1/datasets/local/objects/%2e%2e"),
                         c.post("/v1/sign", json={"dataset": "local", "keys": ["a.bin"]})):
            assert response.headers["access-control-allow-origin"] == APP_ORIGIN
            assert "origin" in response.headers["vary"].lower()
            assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
            assert "access-control-allow-credentials" not in response.headers
        other = c.get("/v1/datasets/local/objects/a.bin", headers={"Origin": "http://evil.example"})
        assert other.status_code == 302
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(shared_gateway: RunningGateway, client: httpx.Client) -> None:
    preflight = _preflight(f"{shared_gateway.url}/v1/datasets/local/objects/a.bin", "http://localhost:3000")
    assert_error(preflight, 403, "cors_origin_not_allowed")
    get = client.get("/v1/datasets/local/objects/a.bin", headers={"Origin": "http://localhost:3000"})
    location = get.headers["location"]
    fetched = httpx.get(location, timeout=10, headers={"Origin": "http://localhost:3000"})
    for response in (preflight, get, fetched):
        assert not [h for h in response.headers if h.startswith("access-control-")], response.headers


# -- no open redirect ------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "headers"), [
    (b"/v1/datasets/local/objects/a.bin", [(b"Host", b"evil.example")]),
    (b"/v1/datasets/local/objects/a.bin", [(b"X-Forwarded-Host", b"evil.example"),
                                           (b"X-Forwarded-Proto", b"http"), (b"X-Forwarded-Port", b"1")]),
    (b"/v1/datasets/local/objects/a.bin", [(b"Forwarded", b"host=evil.example;proto=http")]),
    (b"/v1/datasets/local/objects/a.bin?redirect=https://evil.example/x", []),
    (b"/v1/datasets/local/objects/a.bin?url=https%3A%2F%2Fevil.example%2F", []),
    (b"/v1/datasets/local/objects/a.bin?next=//evil.example&return_to=https://evil.example", []),
    (b"/v1/datasets/local/objects/@evil.example", []),
    (b"/v1/datasets/local/objects/%40evil.example%2Fx", []),
    (b"/v1/datasets/local/objects/https:%2F%2Fevil.example", []),
    (b"/v1/datasets/local/objects/a.bin%3Fredirect=https:%2F%2Fevil.example", []),
    (b"/v1/datasets/local/objects/a.bin%23@evil.example", []),
    (b"/v1/datasets/local/objects/%E2%80%AEevil.example", []),
    (b"http://evil.example/v1/datasets/local/objects/a.bin", []),  # absolute-form request target
])
def test_location_always_starts_at_the_public_url(public: RunningGateway, target: bytes,
                                                  headers: list[tuple[bytes, bytes]]) -> None:
    response = raw_request(public.port, target, headers=headers)
    assert response.status in (302, 400, 421), response.body  # 421: a Host the gateway does not serve
    if response.status != 302:
        assert_error(response, response.status)
        return
    location = response.header("location") or ""
    assert location.startswith(f"{PUBLIC}/v1/local/local/"), location
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc) == ("https", "files.example.test")
    assert "evil" not in parts.netloc and parts.path.startswith("/v1/local/local/")
    assert "@" not in location and "\u202e" not in location
    assert set(parse_qs(parts.query)) == {"exp", "sig"}
    assert parts.fragment == ""


def test_a_forged_host_is_refused_and_urls_never_come_from_host(public: RunningGateway) -> None:
    forged = raw_request(public.port, b"/v1/datasets/local/objects/a.bin?format=json",
                         headers=[(b"Host", b"evil.example:443")])
    assert_error(forged, 421, "host_not_allowed")
    # The public URL's own host is served, and the URL comes from GATEWAY_PUBLIC_URL, not from Host.
    response = raw_request(public.port, b"/v1/datasets/local/objects/a.bin?format=json",
                           headers=[(b"Host", b"FILES.example.test")])
    assert response.status == 200
    assert response.json()["url"].startswith(f"{PUBLIC}/v1/local/local/a.bin?")


def test_default_public_url_is_the_listen_address(shared_gateway: RunningGateway) -> None:
    response = raw_request(shared_gateway.port, b"/v1/datasets/local/objects/a.bin",
                           headers=[(b"Host", f"localhost:{shared_gateway.port}".encode())])
    assert (response.header("location") or "").startswith(f"http://127.0.0.1:{shared_gateway.port}/v1/local/")
