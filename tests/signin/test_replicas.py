"""Several gateway processes (``gateway serve``) sharing GATEWAY_SESSION_KEYS: a session issued by
one is accepted by the others; with Redis a sign-out and a spent sign-in reach every replica."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.helpers import assert_error
from tests.oidc.harness import Provider
from tests.redis.procs import REPO, GatewayProcess, gateway_env, stop_gateway, wait_serving
from tests.signin.support import (
    CLIENT_SECRET,
    SECRET_ENV,
    VENDOR_SECRET,
    Jar,
    callback,
    idp_login,
    session_key,
    start_login,
    write_policy,
)
from tests.support import RedisServer, start_redis, stop_redis

OBJECT = "/v1/datasets/ml/objects/tiny.png"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@contextlib.contextmanager
def replicas(ports: list[int], policy: Path, logs: Path, *,
             redis_url: str | None = None) -> Iterator[list[GatewayProcess]]:
    keys = ",".join([session_key(), session_key()])
    started: list[GatewayProcess] = []
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for port in ports:
            env = gateway_env(GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}", GATEWAY_SESSION_KEYS=keys,
                              GW_TEST_VENDOR_SECRET=VENDOR_SECRET, **{SECRET_ENV: CLIENT_SECRET},
                              **({"GATEWAY_REDIS_URL": redis_url} if redis_url else {}))
            out, err = logs / f"gw-{port}.stdout", logs / f"gw-{port}.stderr"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(  # noqa: S603 - fixed argv
                    [sys.executable, "-m", "gateway", "serve", "--config", str(policy), "--port", str(port)],
                    cwd=REPO, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
            started.append(GatewayProcess(port, process, out, err))
        for gateway in started:
            wait_serving(gateway)
        yield started
    finally:
        for gateway in started:
            stop_gateway(gateway)


def read(gw: GatewayProcess, jar: Jar) -> httpx.Response:
    return httpx.get(gw.url + OBJECT, headers={**jar.header(), **SAME_ORIGIN}, follow_redirects=False)


def logout(gw: GatewayProcess, jar: Jar) -> None:
    response = httpx.post(gw.url + "/v1/auth/logout", headers={**jar.header(), "Origin": gw.url})
    assert response.status_code == 200, response.text


def test_a_second_process_with_the_same_keys_accepts_the_session(
        provider: Provider, port_pool: Iterator[int], data: Path, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer)
    with replicas([next(port_pool), next(port_pool)], policy, tmp_path / "logs") as (one, two):
        jar = Jar()
        started = start_login(one.url, jar)
        assert callback(one.url, idp_login(started.headers["location"], "ada"), jar).status_code == 303
        assert read(two, jar).status_code == 302  # issued by one, accepted by the other
        logout(one, jar)
        assert_error(read(one, jar), 401, "unauthenticated")
        # Without Redis a sign-out is remembered by the process that saw it only (documented in
        # docs/browser-sign-in.md): configure Redis to end sessions everywhere at once.
        assert read(two, jar).status_code == 302


def test_with_redis_sign_out_and_spent_sign_ins_reach_every_replica(
        provider: Provider, port_pool: Iterator[int], data: Path, tmp_path: Path) -> None:
    redis: RedisServer = start_redis()
    try:
        policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer)
        with replicas([next(port_pool), next(port_pool)], policy, tmp_path / "logs", redis_url=redis.url) as (one, two):
            jar = Jar()
            started = start_login(one.url, jar)
            url = idp_login(started.headers["location"], "ada")
            copied = Jar(dict(jar.values))
            assert callback(one.url, url, jar).status_code == 303
            assert read(two, jar).status_code == 302
            # The same callback replayed on the other replica, with its cookie: refused.
            replayed = callback(two.url, url, copied)
            body = assert_error(replayed, 400, "sign_in_failed")
            assert "completed already" in body["detail"]
            logout(two, jar)
            assert_error(read(one, jar), 401, "unauthenticated")  # at once, on the replica that issued it
            assert_error(read(two, jar), 401, "unauthenticated")
            cookie = jar.session
        assert cookie is not None and len(cookie) < 200  # only a sealed id: the session is in Redis
    finally:
        stop_redis(redis)


def test_logs_hold_no_cookie_code_or_state(provider: Provider, port_pool: Iterator[int], data: Path,
                                           tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer)
    with replicas([next(port_pool)], policy, tmp_path / "logs") as (one,):
        jar = Jar()
        started = start_login(one.url, jar)
        url = idp_login(started.headers["location"], "ada")
        assert callback(one.url, url, jar).status_code == 303
        assert read(one, jar).status_code == 302
        httpx.get(one.url + "/v1/auth/callback?" + url.split("?", 1)[1])  # a failing replay, logged
    secrets = [jar.session or "", *(v for v in url.split("?", 1)[1].split("&") if v.startswith(("code=", "state=")))]
    text = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "sign_in" in text
    for secret in secrets:
        value = secret.split("=", 1)[-1]
        assert value and value not in text, secret[:10]
