"""Which ``Host`` names the gateway answers (DNS rebinding protection): ``HostCheck.of(Settings)``.

The default comes from ``GATEWAY_PUBLIC_URL`` and the listen address (plus the loopback names when
listening on loopback); ``GATEWAY_ALLOWED_HOSTS`` replaces it; ``*`` turns the check off; the probes
answer any ``Host`` because Kubernetes sends the pod's IP.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from gateway.api.hosts import HostCheck
from gateway.settings import Settings

PUBLIC = "https://gw.acme.example"
API = "/v1/datasets/local/objects/a.bin"


@pytest.fixture(autouse=True)
def _no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: none of the runner's GATEWAY_* variables may leak in."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def scope(path: str = API, http_version: str = "1.1") -> dict[str, Any]:
    return {"type": "http", "path": path, "http_version": http_version}


def check(**settings: Any) -> HostCheck:
    hosts = HostCheck.of(Settings(**settings))
    assert hosts is not None, "the check is on unless GATEWAY_ALLOWED_HOSTS holds *"
    return hosts


def allowed(hosts: HostCheck, host: str, path: str = API) -> bool:
    return hosts.allows(host.encode(), scope(path))


# -- (a) the default from GATEWAY_PUBLIC_URL --------------------------------------------------------

@pytest.mark.parametrize("host", ["gw.acme.example", "gw.acme.example:443"])
def test_the_public_url_name_is_allowed_with_or_without_its_default_port(host: str) -> None:
    assert allowed(check(public_url=PUBLIC, host="0.0.0.0"), host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:443", "gw.acme.example.evil.example",
                                  "acme.example", "gw.acme.example@evil.example", ""])
def test_other_names_are_refused(host: str) -> None:
    assert not allowed(check(public_url=PUBLIC, host="0.0.0.0"), host)


def test_a_plain_http_public_url_defaults_to_port_80() -> None:
    hosts = check(public_url="http://gw.acme.example/", host="0.0.0.0")
    assert allowed(hosts, "gw.acme.example") and allowed(hosts, "gw.acme.example:80")
    assert not allowed(hosts, "evil.example:80")


def test_a_non_default_port_in_the_public_url_must_be_in_the_host() -> None:
    hosts = check(public_url="https://gw.acme.example:8443/base", host="0.0.0.0")
    assert allowed(hosts, "gw.acme.example:8443")
    assert not allowed(hosts, "gw.acme.example")  # a browser would send :8443
    assert not allowed(hosts, "gw.acme.example:443")
    assert not allowed(hosts, "gw.acme.example:8444")


def test_without_a_public_url_the_default_is_the_listen_address_and_port() -> None:
    hosts = check(host="0.0.0.0", port=9000)  # base URL http://0.0.0.0:9000
    assert allowed(hosts, "0.0.0.0:9000")
    # Listening on every address (a container, docker compose): this machine's own names answer too,
    # which a browser only sends from a page on this machine (no DNS rebinding reaches them).
    assert allowed(hosts, "localhost:9000")
    assert allowed(hosts, "127.0.0.1:9000")
    assert not allowed(hosts, "evil.example:9000")


def test_an_ipv6_public_url_is_matched_with_brackets() -> None:
    hosts = check(public_url="https://[2001:db8::10]:8443", host="0.0.0.0")
    assert allowed(hosts, "[2001:db8::10]:8443")
    assert not allowed(hosts, "[2001:db8::10]")
    assert not allowed(hosts, "[2001:db8::11]:8443")


def test_host_names_are_compared_without_regard_to_case() -> None:
    hosts = check(public_url="https://GW.Acme.Example", host="0.0.0.0")
    for host in ("gw.acme.example", "GW.ACME.EXAMPLE", "Gw.Acme.Example:443"):
        assert allowed(hosts, host), host
    assert not allowed(hosts, "EVIL.EXAMPLE")


# -- (b) the listen address, and loopback names only on loopback -------------------------------------

@pytest.mark.parametrize("listen", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "localhost:1", "127.0.0.1:65535",
                                  "127.0.0.1", "[::1]", "[::1]:8080", "LOCALHOST:3000"])
def test_loopback_names_on_any_port_when_listening_on_loopback(listen: str, host: str) -> None:
    assert allowed(check(public_url=PUBLIC, host=listen), host)


@pytest.mark.parametrize("listen", ["0.0.0.0", "10.42.0.17", "::", "gateway.internal"])
@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:8080",
                                  "[::1]", "[::1]:8080"])
def test_loopback_names_are_refused_when_not_listening_on_loopback(listen: str, host: str) -> None:
    assert not allowed(check(public_url=PUBLIC, host=listen), host)


@pytest.mark.parametrize(("listen", "host"), [
    ("10.42.0.17", "10.42.0.17"), ("10.42.0.17", "10.42.0.17:8080"),
    ("0.0.0.0", "0.0.0.0:8080"), ("2001:db8::17", "[2001:db8::17]:8080"),
    ("gateway.internal", "gateway.internal:8080"),
])
def test_the_listen_address_is_allowed(listen: str, host: str) -> None:
    hosts = check(public_url=PUBLIC, host=listen)
    assert allowed(hosts, host)
    assert not allowed(hosts, "10.42.0.18:8080")  # another pod's address is not this one's


def test_the_public_url_still_applies_when_listening_on_loopback() -> None:
    hosts = check(public_url=PUBLIC)  # default host 127.0.0.1
    assert allowed(hosts, "gw.acme.example") and allowed(hosts, "localhost:8080")
    assert not allowed(hosts, "rebind.attacker.example:8080")


# -- probes and a missing Host -----------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_any_host_even_a_pod_ip_the_list_does_not_hold(path: str) -> None:
    hosts = check(public_url=PUBLIC, host="0.0.0.0")
    assert not allowed(hosts, "10.42.0.17:8080")  # the same Host on the API is refused...
    assert allowed(hosts, "10.42.0.17:8080", path)  # ...but a kubelet probe is answered
    assert allowed(hosts, "evil.example", path)
    assert hosts.allows(None, scope(path))  # and a probe without any Host


@pytest.mark.parametrize("path", ["/healthz/", "/readyz/x", "/metrics", "/v1/healthz"])
def test_only_the_probe_paths_themselves_are_exempt(path: str) -> None:
    assert not allowed(check(public_url=PUBLIC, host="0.0.0.0"), "10.42.0.17:8080", path)


def test_a_missing_host_is_refused_in_http_1_1_and_allowed_in_http_1_0() -> None:
    hosts = check(public_url=PUBLIC, host="0.0.0.0")
    assert not hosts.allows(None, scope(API, "1.1"))
    assert hosts.allows(None, scope(API, "1.0"))  # HTTP/1.0 has no Host to require


# -- (c) GATEWAY_ALLOWED_HOSTS -----------------------------------------------------------------------

def test_the_environment_variable_replaces_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("GATEWAY_ALLOWED_HOSTS", " files.example.com , API.Example.com:8443,,")
    settings = Settings()  # the default host is 127.0.0.1: loopback
    assert settings.allowed_hosts == ["files.example.com", "API.Example.com:8443"]
    hosts = HostCheck.of(settings)
    assert hosts is not None
    assert hosts.names == ["api.example.com:8443", "files.example.com"]
    # `name` is any port; `name:port` that port only; case does not matter.
    for host in ("files.example.com", "files.example.com:443", "FILES.example.com:8080",
                 "api.example.com:8443", "Api.Example.Com:8443"):
        assert allowed(hosts, host), host
    for host in ("api.example.com", "api.example.com:443", "evil.example"):
        assert not allowed(hosts, host), host
    # Nothing of the default is left: neither the public URL's name nor the loopback names.
    for host in ("gw.acme.example", "gw.acme.example:443", "localhost:8080", "127.0.0.1:8080", "[::1]:8080"):
        assert not allowed(hosts, host), host
    # The probes stay exempt.
    assert allowed(hosts, "10.42.0.17:8080", "/healthz")


def test_the_environment_variable_takes_ipv6_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ALLOWED_HOSTS", "[2001:db8::1]:8443,2001:db8::2")
    hosts = HostCheck.of(Settings())
    assert hosts is not None
    assert allowed(hosts, "[2001:db8::1]:8443") and not allowed(hosts, "[2001:db8::1]:443")
    assert allowed(hosts, "[2001:db8::2]") and allowed(hosts, "[2001:db8::2]:9000")  # bare: any port


@pytest.mark.parametrize("value", ["*", "files.example.com,*", " * "])
def test_a_star_turns_the_check_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("GATEWAY_ALLOWED_HOSTS", value)
    assert HostCheck.of(Settings()) is None  # the edge then checks no Host at all


@pytest.mark.parametrize("value", ["", " , "])
def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("GATEWAY_HOST", "0.0.0.0")
    monkeypatch.setenv("GATEWAY_ALLOWED_HOSTS", value)
    hosts = HostCheck.of(Settings())
    assert hosts is not None
    assert allowed(hosts, "gw.acme.example") and not allowed(hosts, "evil.example")


def test_a_default_port_public_url_allows_its_name_bare_or_with_that_port_only() -> None:
    check = HostCheck.of(Settings(public_url="https://gw.acme.example", host="0.0.0.0", port=8080))
    assert check is not None
    scope = {"path": "/v1/datasets/x/objects/a", "http_version": "1.1"}
    assert check.allows(b"gw.acme.example", scope)
    assert check.allows(b"gw.acme.example:443", scope)
    assert check.allows(b"gw.acme.example.:443", scope)  # a trailing dot is the same name
    assert check.allows(b"gw.acme.example.", scope)
    assert not check.allows(b"gw.acme.example:9999", scope)
    assert not check.allows(b"gw.acme.example:8080", scope)
