"""When the session cookie is sent again: never on an ordinary authenticated answer, only when the
idle clock moves on (a use at least ``idle_ttl / 4`` after the session was last recorded as seen),
and then once, with the attributes of the sign-in cookie, as a cookie that works and whose idle
deadline has moved. ``/v1/auth/session`` and the sign-in page never send it: they do not touch the
session at all (so polling them does not keep a browser signed in).

Against the real oidc-provider, on the module gateway (local datasets: the session's reads are
302 redirects or JSON) and on a gateway with a ``delivery: proxy`` dataset (the bytes, streamed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.delivery.conftest import BUCKET, OBJECTS, PREFIX, s3_env, s3_store
from tests.e2e.helpers import assert_error
from tests.oidc.harness import Provider
from tests.signin.conftest import EMBEDDER, SignInGateway
from tests.signin.support import Jar, MovableClock, gateway_app, session_key, sign_in, with_proxy_dataset, write_policy
from tests.support import RunningGateway, serve_app

__all__ = ["s3_env", "s3_store"]  # the delivery tests' s3rver, as fixtures of this module
COOKIE = "__Host-gateway_session"
OBJECT = "/v1/datasets/ml/objects/tiny.png"
VAULT = "/v1/datasets/vault/objects/tiny.png"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
SESSION_TTL = 60 * 60  # write_policy's defaults: session_ttl 1h, idle_ttl 30m
IDLE_TTL = 30 * 60
RENEWAL = IDLE_TTL // 4  # the idle clock moves on once this long has passed since it last did


# -- helpers ----------------------------------------------------------------------------------


def session_header(value: str | None) -> dict[str, str]:
    assert value
    return {"Cookie": f"{COOKIE}={value}"}


def session_cookies(response: httpx.Response) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE + "=")]


def attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """(value, {attribute name in lower case: its value}) of one Set-Cookie header."""
    first, *rest = (part.strip() for part in set_cookie.split(";"))
    name, _, value = first.partition("=")
    assert name == COOKIE, set_cookie
    attrs: dict[str, str] = {}
    for part in rest:
        key, _, val = part.partition("=")
        assert key.lower() not in attrs, set_cookie  # no attribute twice
        attrs[key.lower()] = val
    return value, attrs


def sign_in_cookie(jar: Jar) -> str:
    [issued] = [c for c in jar.set_cookies if c.startswith(COOKIE + "=")]
    return issued


def read(url: str, value: str | None, how: str = "redirect") -> httpx.Response:
    """One ordinary read of an object with the session, as a browser would make it."""
    headers = {**SAME_ORIGIN, **session_header(value)}
    if how == "redirect":
        response = httpx.get(url, headers=headers, follow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
    elif how == "head":
        response = httpx.head(url, headers=headers, timeout=10)
        assert response.status_code == 302, response.headers
    elif how == "json":
        response = httpx.get(url, params={"format": "json"}, headers=headers, timeout=10)
        assert response.status_code == 200 and response.json()["url"], response.text
    elif how == "accept-json":
        response = httpx.get(url, headers={**headers, "Accept": "application/json"}, timeout=10)
        assert response.status_code == 200 and response.json()["url"], response.text
    elif how == "embedder":
        response = httpx.get(url, headers={**session_header(value), "Sec-Fetch-Site": "cross-site",
                                           "Sec-Fetch-Mode": "cors", "Origin": EMBEDDER},
                             follow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        assert response.headers["access-control-allow-origin"] == EMBEDDER
    elif how == "stream":
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert response.content == OBJECTS["tiny.png"]
    else:
        raise AssertionError(how)
    return response


def status(gw: SignInGateway, value: str | None) -> httpx.Response:
    response = httpx.get(f"{gw.url}/v1/auth/session", headers={**SAME_ORIGIN, **session_header(value)}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def stamp(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def assert_renewed_like_sign_in(renewed: str, issued: str) -> str:
    """The re-issued cookie has the sign-in cookie's attributes (all but Max-Age, which counts
    down to the session's end) and a new value; returns the value."""
    new_value, new_attrs = attributes(renewed)
    old_value, old_attrs = attributes(issued)
    assert new_value and new_value != old_value
    same = {k: v for k, v in new_attrs.items() if k != "max-age"}
    assert same == {k: v for k, v in old_attrs.items() if k != "max-age"}, (renewed, issued)
    assert same == {"path": "/", "secure": "", "httponly": "", "samesite": "None"}, renewed  # __Host-: no Domain
    assert int(old_attrs["max-age"]) == SESSION_TTL
    assert 0 < int(new_attrs["max-age"]) < SESSION_TTL, renewed
    return new_value


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy_clock() -> MovableClock:
    return MovableClock()


@pytest.fixture(scope="module")
def proxy_gw(provider: Provider, port_pool: Iterator[int], data: Path, s3_store: str, s3_env: None,
             proxy_clock: MovableClock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway whose dataset ``vault`` is ``delivery: proxy`` (the object's bytes, streamed)."""
    root = tmp_path_factory.mktemp("reissue-proxy")
    policy = write_policy(root / "policy.yaml", data, provider.issuer, embedders=[EMBEDDER])
    with_proxy_dataset(policy, s3_store, bucket=BUCKET, prefix=PREFIX)
    port = next(port_pool)
    with serve_app(gateway_app(port, policy, keys=[session_key()], clock=proxy_clock), port) as server:
        yield server


@pytest.fixture
def moved_proxy_clock(proxy_clock: MovableClock) -> Iterator[MovableClock]:
    proxy_clock.offset = 0.0
    yield proxy_clock
    proxy_clock.offset = 0.0


# -- (a) no Set-Cookie on ordinary answers ----------------------------------------------------


@pytest.mark.parametrize("how", ["redirect", "head", "json", "accept-json", "embedder"])
def test_ordinary_reads_right_after_sign_in_set_no_cookie(gw: SignInGateway, how: str) -> None:
    jar = sign_in(gw.url, "ada")
    for path in (OBJECT, OBJECT, "/v1/datasets/staff/objects/hello.txt", OBJECT):
        response = read(gw.url + path, jar.session, how)
        assert response.headers.get_list("set-cookie") == [], response.headers
    assert jar.session == attributes(sign_in_cookie(jar))[0]  # still the sign-in cookie, still good
    read(gw.url + OBJECT, jar.session)


def test_ordinary_streamed_reads_set_no_cookie(proxy_gw: RunningGateway) -> None:
    jar = sign_in(proxy_gw.url, "ada")
    for _ in range(3):
        response = read(proxy_gw.url + VAULT, jar.session, "stream")
        assert response.headers.get_list("set-cookie") == [], response.headers
        assert response.headers["cache-control"] == "private, no-store"


def test_refused_reads_with_a_live_session_set_no_cookie(gw: SignInGateway) -> None:
    bob = sign_in(gw.url, "bob")  # staff, not ml-team
    for _ in range(2):
        response = httpx.get(gw.url + OBJECT, headers={**SAME_ORIGIN, **session_header(bob.session)}, timeout=10)
        assert_error(response, 403, "forbidden")
        assert response.headers.get_list("set-cookie") == [], response.headers


def test_ordinary_reads_until_just_before_the_renewal_point_set_no_cookie(gw: SignInGateway,
                                                                         clock: MovableClock) -> None:
    jar = sign_in(gw.url, "ada")
    for offset in (60, RENEWAL // 2, RENEWAL - 30):
        clock.offset = offset
        response = read(gw.url + OBJECT, jar.session)
        assert response.headers.get_list("set-cookie") == [], (offset, response.headers)


# -- (b) past the renewal point: re-issued once, the same cookie, working -----------------------


@pytest.mark.parametrize("how", ["redirect", "head", "json", "embedder"])
def test_past_the_renewal_point_one_answer_reissues_the_cookie(gw: SignInGateway, clock: MovableClock,
                                                              how: str) -> None:
    jar = sign_in(gw.url, "ada")
    signed_in_at = time.time()
    issued = sign_in_cookie(jar)
    clock.offset = RENEWAL + 5
    answers = []
    for _ in range(4):  # the browser keeps whatever cookie it was last sent
        response = read(gw.url + OBJECT, jar.session, how)
        answers.append(session_cookies(response))
        assert len(response.headers.get_list("set-cookie")) == len(answers[-1])  # no other cookie
        jar.take(response)
    assert [len(a) for a in answers] == [1, 0, 0, 0], answers
    [renewed] = answers[0]
    value = assert_renewed_like_sign_in(renewed, issued)
    assert jar.session == value
    # Max-Age: what is left of the session's hour (it never grows past the sign-in's end).
    max_age = int(attributes(renewed)[1]["max-age"])
    left = SESSION_TTL - (clock() - signed_in_at)
    assert left - 3 <= max_age <= left + 1, (max_age, left)
    # The new cookie works, and its idle clock has moved on: 31 minutes after sign-in the first
    # cookie is idle, the re-issued one is not.
    clock.offset = IDLE_TTL + 60
    old = httpx.get(gw.url + OBJECT, headers={**SAME_ORIGIN, "Cookie": issued.split(";", 1)[0]}, timeout=10)
    body = assert_error(old, 401, "unauthenticated")
    assert "idle" in body["detail"], body
    again = read(gw.url + OBJECT, value, how)
    assert len(session_cookies(again)) == 1  # past the next renewal point too: re-issued again, once
    jar.take(again)
    assert read(gw.url + OBJECT, jar.session, how).headers.get_list("set-cookie") == []


def test_past_the_renewal_point_a_streamed_read_reissues_the_cookie_once(
        proxy_gw: RunningGateway, moved_proxy_clock: MovableClock) -> None:
    jar = sign_in(proxy_gw.url, "ada")
    issued = sign_in_cookie(jar)
    moved_proxy_clock.offset = RENEWAL + 5
    answers = []
    for _ in range(3):
        response = read(proxy_gw.url + VAULT, jar.session, "stream")
        answers.append(session_cookies(response))
        jar.take(response)
    assert [len(a) for a in answers] == [1, 0, 0], answers
    value = assert_renewed_like_sign_in(answers[0][0], issued)
    # The second and third reads were made with the re-issued cookie, and got the bytes. (The clock
    # stays within s3rver's 15-minute tolerance for the gateway's SigV4 dates, so the idle check
    # is in the test above.)
    assert jar.session == value


def test_a_client_that_keeps_the_old_cookie_is_sent_a_new_one_each_time(gw: SignInGateway,
                                                                       clock: MovableClock) -> None:
    # The idle clock lives in the cookie (no Redis): until the browser stores the new cookie, each
    # answer past the renewal point carries one, and each is a different working cookie.
    jar = sign_in(gw.url, "ada")
    clock.offset = RENEWAL + 5
    renewed = [session_cookies(read(gw.url + OBJECT, jar.session)) for _ in range(2)]
    assert [len(r) for r in renewed] == [1, 1], renewed
    values = {attributes(r[0])[0] for r in renewed}
    assert len(values) == 2 and jar.session not in values
    for value in values:
        assert read(gw.url + OBJECT, value).headers.get_list("set-cookie") == []


# -- /v1/auth/session and the page never re-issue it ------------------------------------------


def test_the_session_endpoint_does_not_reissue_the_cookie(gw: SignInGateway, clock: MovableClock) -> None:
    jar = sign_in(gw.url, "ada")
    first = status(gw, jar.session)
    assert first.json()["signed_in"] is True
    assert first.headers.get_list("set-cookie") == []
    deadline = stamp(first.json()["idle_expires_at"])
    for offset in (RENEWAL + 5, IDLE_TTL - 60):  # past the renewal point, and nearly idle
        clock.offset = offset
        for method in ("GET", "HEAD"):
            response = httpx.request(method, f"{gw.url}/v1/auth/session",
                                     headers={**SAME_ORIGIN, **session_header(jar.session)}, timeout=10)
            assert response.status_code == 200
            assert response.headers.get_list("set-cookie") == [], (offset, method, response.headers)
        body = status(gw, jar.session).json()
        # It does not touch the session either: the idle deadline stays where the sign-in put it.
        assert body["signed_in"] is True and stamp(body["idle_expires_at"]) == deadline, body
        page = httpx.get(f"{gw.url}/v1/auth/", headers=session_header(jar.session), timeout=10)
        assert page.status_code == 200 and "ada@acme.test" in page.text
        assert page.headers.get_list("set-cookie") == [], page.headers
    # So polling it does not keep the browser signed in: idle after idle_ttl without an object read.
    clock.offset = IDLE_TTL + 5
    gone = status(gw, jar.session)
    assert gone.json()["signed_in"] is False and gone.json()["reason"] == "idle", gone.json()
    assert gone.headers.get_list("set-cookie") == []


def test_an_object_read_moves_the_idle_deadline_the_session_endpoint_shows(gw: SignInGateway,
                                                                         clock: MovableClock) -> None:
    jar = sign_in(gw.url, "ada")
    before = stamp(status(gw, jar.session).json()["idle_expires_at"])
    clock.offset = RENEWAL + 5
    response = read(gw.url + OBJECT, jar.session)
    [renewed] = session_cookies(response)
    value = attributes(renewed)[0]
    after = stamp(status(gw, value).json()["idle_expires_at"])
    assert RENEWAL <= after - before <= RENEWAL + 10, (before, after)
    assert stamp(status(gw, jar.session).json()["idle_expires_at"]) == before  # the old cookie's is where it was
