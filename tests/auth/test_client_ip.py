"""Client IP from the socket peer and forwarding headers: spoofing matrix, IPv6, garbage."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.client_ip import UNKNOWN_CLIENT, client_ip, parse_ip
from gateway.config import Network
from gateway.errors import BadRequest

TRUSTED: list[Network] = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # An untrusted peer: headers change nothing, however they are spelled.
        ("203.0.113.7", {"x-forwarded-for": "10.1.1.1"}, "203.0.113.7"),
        ("203.0.113.7", {"x-forwarded-for": "1.2.3.4, 10.1.1.1"}, "203.0.113.7"),
        ("203.0.113.7", {"forwarded": "for=10.1.1.1"}, "203.0.113.7"),
        ("203.0.113.7", {"X-Forwarded-For": "10.1.1.1", "Forwarded": "for=10.1.1.1"}, "203.0.113.7"),
        ("2001:db8::1", {"x-forwarded-for": "10.1.1.1"}, "2001:db8::1"),
        # A trusted proxy: the first untrusted hop from the right is the client.
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 198.51.100.4"}, "198.51.100.4"),  # spoofed left part
        ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 198.51.100.4, 10.9.9.9"}, "198.51.100.4"),  # two proxies
        ("10.0.0.2", {"x-forwarded-for": "10.5.5.5, 10.9.9.9"}, "10.5.5.5"),  # all trusted: the leftmost
        ("10.0.0.2", {}, "10.0.0.2"),  # no header: the proxy itself (e.g. its health checks)
        ("10.0.0.2", {"x-forwarded-for": ""}, "10.0.0.2"),
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.4:5678"}, "198.51.100.4"),
        ("10.0.0.2", {"x-forwarded-for": "[2001:db8::5]:443"}, "2001:db8::5"),
        ("10.0.0.2", {"x-forwarded-for": "2001:db8::5"}, "2001:db8::5"),
        ("10.0.0.2", {"x-forwarded-for": "::ffff:198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"X-Forwarded-For": "198.51.100.4"}, "198.51.100.4"),
        ("::ffff:10.0.0.2", {"x-forwarded-for": "198.51.100.4"}, "198.51.100.4"),  # dual-stack socket
        ("fd00::2", {"x-forwarded-for": "198.51.100.4, fd12::1"}, "198.51.100.4"),
        # Garbage where the client should be: unknown, never the (internal) proxy.
        ("10.0.0.2", {"x-forwarded-for": "unknown"}, "::"),
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.4, garbage"}, "::"),
        ("10.0.0.2", {"x-forwarded-for": "garbage, 198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"x-forwarded-for": "1.2.3.4.5"}, "::"),
        ("10.0.0.2", {"x-forwarded-for": "fe80::1%eth0"}, "::"),
        ("10.0.0.2", {"x-forwarded-for": "\u0661.2.3.4"}, "::"),
        # Only X-Forwarded-For is read by default: a Forwarded header (the client's own, passed
        # through) changes nothing.
        ("10.0.0.2", {"forwarded": "for=198.51.100.4"}, "10.0.0.2"),
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.4", "forwarded": "for=6.6.6.6"}, "198.51.100.4"),
    ],
)
def test_matrix(peer: str, headers: dict[str, str], expected: str) -> None:
    assert client_ip(peer, headers, TRUSTED) == ip(expected)


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # Forwarded (RFC 7239), with GATEWAY_FORWARDED_HEADER=forwarded.
        ("10.0.0.2", {"forwarded": "for=198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"forwarded": 'for="[2001:db8:cafe::17]:4711";proto=https'}, "2001:db8:cafe::17"),
        ("10.0.0.2", {"forwarded": 'For="198.51.100.4:80", for=10.3.3.3;by=10.0.0.2'}, "198.51.100.4"),
        ("10.0.0.2", {"forwarded": "for=6.6.6.6, for=198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"forwarded": "for=_hidden, for=198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"forwarded": "for=198.51.100.4, for=_hidden"}, "::"),  # obfuscated: unknown
        ("10.0.0.2", {"forwarded": "for=unknown"}, "::"),
        ("10.0.0.2", {"forwarded": "proto=https;by=10.0.0.2"}, "::"),  # no for=
        ("10.0.0.2", {"forwarded": 'for="198.51.100.4, for=6.6.6.6"'}, "::"),  # a comma inside quotes
        ("10.0.0.2", {"forwarded": 'for="unterminated'}, "::"),
        ("10.0.0.2", {"forwarded": 'for="\\[2001:db8::9\\]"'}, "2001:db8::9"),  # quoted-pair escapes
        # Only Forwarded is read: behind a proxy that writes only Forwarded, the client's own
        # X-Forwarded-For passes through untouched and must not choose the client's address.
        ("10.0.0.2", {"x-forwarded-for": "6.6.6.6", "forwarded": "for=198.51.100.4"}, "198.51.100.4"),
        ("10.0.0.2", {"x-forwarded-for": "198.51.100.4"}, "10.0.0.2"),
    ],
)
def test_forwarded_matrix(peer: str, headers: dict[str, str], expected: str) -> None:
    assert client_ip(peer, headers, TRUSTED, header="forwarded") == ip(expected)


@pytest.mark.parametrize("value", ["for=1.2.3.4;for=5.6.7.8", "for=198.51.100.4, for=6.6.6.6;proto=https;For=7.7.7.7"])
def test_a_forwarded_element_with_two_for_is_refused_from_a_trusted_proxy(value: str) -> None:
    with pytest.raises(BadRequest, match="for= twice"):
        client_ip("10.0.0.2", {"forwarded": value}, TRUSTED, header="forwarded")
    # From an untrusted peer nothing is read, so nothing is refused.
    assert client_ip("203.0.113.7", {"forwarded": value}, TRUSTED, header="forwarded") == ip("203.0.113.7")


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip("10.0.0.2", {"x-forwarded-for": "198.51.100.4"}, []) == ip("10.0.0.2")


@pytest.mark.parametrize("peer", [None, "", "unix:/run/gw.sock", "not an ip", "999.1.1.1"])
def test_unknown_peer_is_the_unknown_address_and_headers_are_ignored(peer: str | None) -> None:
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    assert client_ip(peer, {"x-forwarded-for": "10.1.1.1"}, everything) == UNKNOWN_CLIENT
    assert UNKNOWN_CLIENT not in ipaddress.ip_network("10.0.0.0/8")
    assert UNKNOWN_CLIENT == ip("::")


def test_peer_with_zone_id() -> None:
    assert client_ip("fe80::1%eth0", {}, TRUSTED) == ip("fe80::1")


@pytest.mark.parametrize("text", ["1.2.3.4", "1.2.3.4:80", "[::1]", "[::1]:8080", "::1", "::ffff:1.2.3.4"])
def test_parse_ip_accepts(text: str) -> None:
    assert parse_ip(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        " ",
        "[::1",
        "[::1]x",
        "[::1]:x",
        "1.2.3.4:",
        "1.2.3.4:x",
        "localhost",
        "_hidden",
        "x" * 100,
        "[1.2.3.4]:80:80",
    ],
)
def test_parse_ip_refuses(text: str | None) -> None:
    assert parse_ip(text) is None


@given(peer=st.one_of(st.none(), st.text(max_size=50)), xff=st.text(max_size=200), fwd=st.text(max_size=200))
def test_garbage_never_crashes(peer: str | None, xff: str, fwd: str) -> None:
    result = client_ip(peer, {"x-forwarded-for": xff, "forwarded": fwd}, TRUSTED)
    assert isinstance(result, ipaddress.IPv4Address | ipaddress.IPv6Address)
    from_trusted = client_ip("10.0.0.2", {"x-forwarded-for": xff, "forwarded": fwd}, TRUSTED)
    assert isinstance(from_trusted, ipaddress.IPv4Address | ipaddress.IPv6Address)
    try:  # Forwarded: an address, or a clear refusal of an element that names for= twice
        client_ip("10.0.0.2", {"forwarded": fwd}, TRUSTED, header="forwarded")
    except BadRequest as exc:
        assert "for= twice" in exc.detail


@given(xff=st.text(max_size=200))
def test_spoofing_from_an_untrusted_peer_changes_nothing(xff: str) -> None:
    assert client_ip("203.0.113.7", {"x-forwarded-for": xff, "forwarded": xff}, TRUSTED) == ip("203.0.113.7")
