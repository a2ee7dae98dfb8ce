"""Capabilities over HTTP, against the real oidc-provider: the connect page, the capability's use in
the path and as a bearer token, its scope, address, page, expiry and session, and its renewal."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import assert_error, local_policy
from tests.oidc.harness import Provider
from tests.signin.conftest import EMBEDDER, SignInGateway
from tests.signin.support import Jar, MovableClock, running_gateway, session_key, sign_in, write_policy
from tests.support import RunningGateway

_PAYLOAD = re.compile(r"postMessage\((\{.*?\}),(\"[^\"]*\")\)")


def connect(gw: str, jar: Jar, *, origin: str = EMBEDDER, datasets: str = "ml", prefixes: str | None = None,
            headers: dict[str, str] | None = None) -> httpx.Response:
    params = {"origin": origin, "datasets": datasets, **({"prefixes": prefixes} if prefixes else {})}
    return httpx.get(f"{gw}/v1/auth/connect", params=params, headers={**jar.header(), **(headers or {})},
                     follow_redirects=False)


def capability_of(response: httpx.Response) -> tuple[str, dict[str, object]]:
    assert response.status_code == 200, response.text
    match = _PAYLOAD.search(response.text)
    assert match, response.text
    message = json.loads(match.group(1))
    assert json.loads(match.group(2)) == EMBEDDER  # to that page only
    return str(message["capability"]), message


@pytest.fixture(scope="module")
def signed_in(gw: SignInGateway) -> Jar:
    return sign_in(gw.url, "ada")


@pytest.fixture
def capability(gw: SignInGateway, signed_in: Jar) -> str:
    return capability_of(connect(gw.url, signed_in, datasets="ml,open"))[0]


def get(gw: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(gw + path, headers=headers, follow_redirects=False, timeout=10)


def test_connect_sends_a_browser_without_a_session_to_sign_in_and_back(gw: SignInGateway) -> None:
    response = connect(gw.url, Jar())
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(f"{gw.url}/v1/auth/login?") and "return_to=" in location
    assert "%2Fv1%2Fauth%2Fconnect" in location and response.headers["cache-control"] == "no-store"


def test_connect_hands_the_capability_to_the_embedder_page_only(gw: SignInGateway, signed_in: Jar) -> None:
    response = connect(gw.url, signed_in)
    token, message = capability_of(response)
    assert token.startswith("gwc1.") and message["datasets"] == ["ml"]
    assert int(str(message["expires_at"])) > 0
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'nonce-" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store" and response.headers["x-frame-options"] == "DENY"
    # A site that is not an embedder gets nothing.
    refused = connect(gw.url, signed_in, origin="https://evil.example")
    assert_error(refused, 403, "cross_site_refused")
    assert "gwc1." not in refused.text
    for bad in ({"origin": "https://app.vendor.example/path"}, {"datasets": ""}, {"datasets": "nope"}):
        assert connect(gw.url, signed_in, **bad).status_code == 400  # type: ignore[arg-type]


def test_a_capability_reads_like_its_session(gw: SignInGateway, capability: str) -> None:
    redirect = get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin")
    assert redirect.status_code == 302 and redirect.headers["location"].startswith(f"{gw.url}/v1/local/ml/a.bin?")
    assert redirect.headers["cache-control"] == "private, no-store"  # nothing cached outlives a sign-out
    # A relative URL resolved against a capability URL keeps it (a .gltf's .bin).
    relative = httpx.URL(f"{gw.url}/v1/c/{capability}/datasets/ml/objects/nested/model.gltf").join("../a.bin")
    assert get(gw.url, relative.raw_path.decode()).status_code == 302
    # The bearer form, for header-based loaders.
    bearer = get(gw.url, "/v1/datasets/ml/objects/a.bin", authorization=f"Bearer {capability}")
    assert bearer.status_code == 302
    records = [r for r in gw.audit_records() if r["principal"]["method"] == "capability"]
    assert records and all(r["principal"]["email"] == "ada@acme.test" for r in records)
    assert capability not in gw.audit.read_text()


def test_a_capability_is_held_to_its_scope(gw: SignInGateway, signed_in: Jar) -> None:
    token, _ = capability_of(connect(gw.url, signed_in, datasets="ml", prefixes="nested/"))
    assert get(gw.url, f"/v1/c/{token}/datasets/ml/objects/nested/x.bin").status_code == 302
    assert_error(get(gw.url, f"/v1/c/{token}/datasets/ml/objects/a.bin"), 403, "capability_out_of_scope")
    assert_error(get(gw.url, f"/v1/c/{token}/datasets/staff/objects/a.bin"), 403, "capability_out_of_scope")


def test_each_refusal_has_its_own_code(gw: SignInGateway, capability: str, clock: MovableClock) -> None:
    tampered = capability[:-6] + ("AAAAAA" if not capability.endswith("AAAAAA") else "BBBBBB")
    assert_error(get(gw.url, f"/v1/c/{tampered}/datasets/ml/objects/a.bin"), 401, "capability_invalid")
    assert_error(get(gw.url, "/v1/c/gwc1.x/datasets/ml/objects/a.bin"), 401, "capability_malformed")
    other_page = get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin", origin="https://evil.example")
    assert_error(other_page, 401, "capability_wrong_origin")
    two = get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin", authorization="Bearer something-else")
    assert_error(two, 401, "ambiguous_credentials")
    clock.offset = 16 * 60  # past its 15 minutes
    assert_error(get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin"), 401, "capability_expired")


def test_a_capability_is_in_no_log_line_and_no_metric(gw: SignInGateway, capability: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tampered = capability[:-6] + ("AAAAAA" if not capability.endswith("AAAAAA") else "BBBBBB")
    answers = [get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin"),
               get(gw.url, f"/v1/c/{capability}/datasets/staff/objects/a.bin"),  # out of scope
               get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin", origin="https://evil.example"),
               get(gw.url, f"/v1/c/{tampered}/datasets/ml/objects/a.bin"),
               get(gw.url, "/v1/datasets/ml/objects/a.bin", authorization=f"Bearer {tampered}")]
    assert [a.status_code for a in answers] == [302, 403, 401, 401, 401]
    metrics = httpx.get(f"{gw.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "gateway_requests_total" in metrics.text
    # The server's own lines (the test's HTTP client logs its URLs; uvicorn's access log is off under
    # `gateway serve`, which tests/e2e/test_quickstart.py checks on a real process).
    server_lines = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records
                             if r.name.startswith(("gateway", "uvicorn.error", "starlette", "fastapi")))
    signature = capability.rsplit(".", 1)[-1]
    for text in (server_lines, metrics.text, gw.audit.read_text(), *(a.text for a in answers)):
        assert signature not in text and tampered.rsplit(".", 1)[-1] not in text


def test_the_session_cookie_beside_a_capability_is_not_read(gw: SignInGateway, capability: str,
                                                            signed_in: Jar) -> None:
    # Browsers that allow third-party cookies send the gateway's cookie along: it changes nothing.
    response = get(gw.url, f"/v1/c/{capability}/datasets/ml/objects/a.bin", **signed_in.header())
    assert response.status_code == 302


def test_renewal_while_the_session_lives_and_the_end_with_sign_out(gw: SignInGateway) -> None:
    jar = sign_in(gw.url, "ada")
    token, _ = capability_of(connect(gw.url, jar))
    renewed = httpx.post(f"{gw.url}/v1/c/{token}/renew", headers={"Origin": EMBEDDER}, timeout=10)
    assert renewed.status_code == 200, renewed.text
    assert renewed.headers["access-control-allow-origin"] == EMBEDDER
    fresh = renewed.json()["capability"]
    assert fresh != token and get(gw.url, f"/v1/c/{fresh}/datasets/ml/objects/a.bin").status_code == 302
    assert httpx.get(f"{gw.url}/v1/c/{token}/renew").status_code == 405
    # Signing out ends the session, and every capability of it with it.
    out = httpx.post(f"{gw.url}/v1/auth/logout", headers={"Origin": gw.url, **jar.header()}, timeout=10)
    assert out.status_code == 200, out.text
    for used in (token, fresh):
        assert_error(get(gw.url, f"/v1/c/{used}/datasets/ml/objects/a.bin"), 401, "capability_revoked")
    assert_error(httpx.post(f"{gw.url}/v1/c/{fresh}/renew", timeout=10), 401, "capability_revoked")


@pytest.fixture
def proxied_gateway(provider: Provider, port_pool: Iterator[int], data: Path,
                    tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway behind a trusted proxy (127.0.0.1), so that a test can speak from several addresses."""
    policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer, embedders=[EMBEDDER])
    with running_gateway(next(port_pool), policy, keys=[session_key()], trusted_proxies=["127.0.0.1/32"]) as gw:
        yield gw


def test_a_capability_works_only_from_the_address_it_was_handed_to(proxied_gateway: RunningGateway) -> None:
    jar = sign_in(proxied_gateway.url, "ada")
    token, _ = capability_of(connect(proxied_gateway.url, jar, headers={"X-Forwarded-For": "10.0.0.1"}))
    path = f"/v1/c/{token}/datasets/ml/objects/a.bin"
    assert get(proxied_gateway.url, path, **{"X-Forwarded-For": "10.0.0.1"}).status_code == 302
    assert_error(get(proxied_gateway.url, path, **{"X-Forwarded-For": "10.0.0.2"}), 401,
                 "capability_wrong_address")


def test_a_capability_ends_with_an_idle_session(provider: Provider, port_pool: Iterator[int], data: Path,
                                                tmp_path: Path) -> None:
    """A session that went idle ends its capabilities too, though they have time left of their own."""
    policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer, embedders=[EMBEDDER], idle_ttl="2m")
    clock = MovableClock()
    with running_gateway(next(port_pool), policy, keys=[session_key()], clock=clock) as gw:
        token, message = capability_of(connect(gw.url, sign_in(gw.url, "ada")))
        path = f"/v1/c/{token}/datasets/ml/objects/a.bin"
        assert get(gw.url, path).status_code == 302
        clock.offset = 3 * 60  # idle for longer than idle_ttl, well inside the capability's 15 minutes
        assert int(str(message["expires_at"])) > clock()
        assert_error(get(gw.url, path), 401, "capability_session_ended")


def test_a_gateway_without_browser_sign_in_offers_no_capabilities(
        gateway_server: Callable[..., RunningGateway], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"x")
    gw = gateway_server(config=local_policy(tmp_path / "policy.yaml", data))
    response = get(gw.url, "/v1/c/gwc1.AAAA/datasets/local/objects/a.bin")
    assert_error(response, 401, "capability_not_offered")
    assert "gwc1." not in response.text
