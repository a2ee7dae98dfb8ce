"""Browser sign-in without Redis, against the real oidc-provider: what docs/browser-sign-in.md says
holds across replicas and restarts, and what does not.

Two in-process gateways with the same session keys and the same public URL are two replicas
behind one load balancer; each keeps its spent sign-ins and its sign-outs in its own memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.settings import Settings
from tests.e2e.helpers import assert_error
from tests.oidc.harness import Provider
from tests.signin.conftest import data, gateway_ports, port_pool, provider  # noqa: F401 - fixtures
from tests.signin.support import (
    CLIENT_SECRET,
    SECRET_ENV,
    VENDOR_SECRET,
    Jar,
    callback,
    idp_login,
    running_gateway,
    session_key,
    start_login,
    write_policy,
)
from tests.support import RunningGateway, serve_app

OBJECT = "/v1/datasets/ml/objects/tiny.png"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@contextlib.contextmanager
def replica_of(first: RunningGateway, port: int, policy: Path, keys: list[str]) -> Iterator[RunningGateway]:
    """Another replica of ``first``: same keys, same public URL (the issuer sends browsers back there)."""
    settings = Settings(port=port, config=policy, public_url=first.url, session_keys=",".join(keys),
                        signing_key="s" * 32, allowed_hosts=["*"])
    environ = {SECRET_ENV: CLIENT_SECRET, "GW_TEST_VENDOR_SECRET": VENDOR_SECRET}
    with serve_app(create_app(settings, environ=environ), port) as gateway:
        yield gateway


def read(gateway: RunningGateway, jar: Jar) -> int:
    return httpx.get(gateway.url + OBJECT, headers={**jar.header(), **SAME_ORIGIN}).status_code


def test_a_callback_replayed_on_another_replica_is_refused_by_the_issuer(
        provider: Provider, port_pool: Iterator[int], data: Path, tmp_path: Path) -> None:  # noqa: F811
    policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer)
    keys = [session_key()]
    with running_gateway(next(port_pool), policy, keys=keys) as one, \
            replica_of(one, next(port_pool), policy, keys) as two:
        # The control: a sign-in started on one replica completes on the other.
        jar = Jar()
        url = idp_login(start_login(one.url, jar).headers["location"], "ada")
        login_cookies = dict(jar.values)
        copied = Jar(dict(login_cookies))
        assert callback(two.url, url, jar).status_code == 303
        assert read(one, jar) == 302
        # Replayed, with the login's cookie, on the replica that has not seen its state: the gateway
        # lets it through, and the issuer refuses the spent code (RFC 6749 section 4.1.2).
        replayed = callback(one.url, url, copied)
        body = assert_error(replayed, 400, "sign_in_failed")
        assert body["detail"] == "the identity provider refused the code (invalid_grant)"
        assert copied.session is None
        # On the replica that completed it, the gateway refuses it itself, before asking the issuer.
        again = Jar(dict(login_cookies))
        body = assert_error(callback(two.url, url, again), 400, "sign_in_failed")
        assert "completed already" in body["detail"]


def test_a_sign_out_is_forgotten_when_the_process_restarts(
        provider: Provider, port_pool: Iterator[int], data: Path, tmp_path: Path) -> None:  # noqa: F811
    policy = write_policy(tmp_path / "policy.yaml", data, provider.issuer)
    keys = [session_key()]
    port = next(port_pool)
    with running_gateway(port, policy, keys=keys) as gateway:
        jar = Jar()
        url = idp_login(start_login(gateway.url, jar).headers["location"], "ada")
        assert callback(gateway.url, url, jar).status_code == 303
        kept = Jar(dict(jar.values))  # a copy of the cookie, as a thief (or a second tab) would hold it
        signed_out = httpx.post(gateway.url + "/v1/auth/logout", headers={**jar.header(), "Origin": gateway.url})
        assert signed_out.status_code == 200, signed_out.text
        assert read(gateway, kept) == 401
    with running_gateway(port, policy, keys=keys) as restarted:
        # Without Redis the sign-out lived in that process's memory only: the copy works again
        # until the session's own expiry (session_ttl, idle_ttl). With Redis it would not.
        assert read(restarted, kept) == 302
