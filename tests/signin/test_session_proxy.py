"""A browser session reading a ``delivery: proxy`` dataset: the bytes come through the gateway for
a signed-in employee (and for nobody else), the answer is never stored, a navigation without a
session is sent to sign in, and the session is refused from a site that is not an embedder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.delivery.conftest import BUCKET, OBJECTS, PREFIX, s3_env, s3_store
from tests.e2e.helpers import assert_error
from tests.oidc.harness import Provider
from tests.signin.conftest import EMBEDDER
from tests.signin.support import Jar, gateway_app, session_key, sign_in, with_proxy_dataset, write_policy
from tests.support import RunningGateway, serve_app

__all__ = ["s3_env", "s3_store"]  # the delivery tests' s3rver, as fixtures of this module
COOKIE = "__Host-gateway_session"
OBJECT = "/v1/datasets/vault/objects/tiny.png"
NAVIGATE = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


@pytest.fixture(scope="module")
def gw(provider: Provider, port_pool: Iterator[int], data: Path, s3_store: str, s3_env: None,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("proxy-session")
    policy = write_policy(root / "policy.yaml", data, provider.issuer, embedders=[EMBEDDER])
    with_proxy_dataset(policy, s3_store, bucket=BUCKET, prefix=PREFIX)
    port = next(port_pool)
    with serve_app(gateway_app(port, policy, keys=[session_key()]), port) as server:
        yield server


def cookie(jar: Jar) -> dict[str, str]:
    assert jar.session
    return {"Cookie": f"{COOKIE}={jar.session}"}


def test_a_signed_in_member_gets_the_bytes_and_they_are_never_stored(gw: RunningGateway) -> None:
    ada = sign_in(gw.url, "ada")
    response = httpx.get(gw.url + OBJECT, headers={"Sec-Fetch-Site": "same-origin", **cookie(ada)})
    assert response.status_code == 200, response.text
    assert response.content == OBJECTS["tiny.png"]
    assert response.headers["cache-control"] == "private, no-store"
    assert "location" not in response.headers and BUCKET not in str(response.headers)


def test_a_session_the_policy_does_not_admit_is_403(gw: RunningGateway) -> None:
    bob = sign_in(gw.url, "bob")  # staff, not ml-team
    response = httpx.get(gw.url + OBJECT, headers={"Sec-Fetch-Site": "same-origin", **cookie(bob)})
    assert_error(response, 403, "forbidden")


def test_a_navigation_without_a_session_is_sent_to_sign_in(gw: RunningGateway) -> None:
    response = httpx.get(gw.url + OBJECT, headers=NAVIGATE, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith(gw.url + "/v1/auth/login?")
    # a subresource (an <img>) gets the 401 instead, with where to sign in
    image = httpx.get(gw.url + OBJECT, headers={"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"})
    body = assert_error(image, 401, "unauthenticated")
    assert "/v1/auth/login" in body["detail"]


def test_the_session_is_refused_from_a_site_that_is_not_an_embedder(gw: RunningGateway) -> None:
    ada = sign_in(gw.url, "ada")
    response = httpx.get(gw.url + OBJECT, headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test",
                                                   **cookie(ada)})
    assert_error(response, 403, "cross_site_refused")
    embedded = httpx.get(gw.url + OBJECT, headers={"Sec-Fetch-Site": "cross-site", "Origin": EMBEDDER,
                                                   **cookie(ada)})
    assert embedded.status_code == 200 and embedded.content == OBJECTS["tiny.png"]
