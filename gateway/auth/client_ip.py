"""The client's IP address, believing forwarding headers only from trusted proxies.

Rules:

* The socket peer is the client, unless the peer is in ``trusted``. Headers from anyone else are
  ignored, so a spoofed ``X-Forwarded-For`` from an untrusted peer changes nothing.
* From a trusted peer, the forwarding header is read right to left (nearest hop first), skipping
  trusted hops; the first untrusted address is the client. If every hop is trusted, the leftmost
  one is. If the trusted peer sent no usable header, the peer itself is the client.
* A hop that is not an IP address (``unknown``, an RFC 7239 obfuscated identifier such as
  ``_hidden``, a ``Forwarded`` element without ``for=``, or garbage) ends the walk: the client is
  then unknown, and ``UNKNOWN_CLIENT`` is returned. The trusted proxy next to it is *not* taken
  as the client, because proxies sit in internal networks that policy rules may allow.
* Exactly one forwarding header is read: ``X-Forwarded-For`` by default, because nearly every proxy
  (nginx, Envoy, AWS ALB, Google load balancers, Traefik) appends to it, or ``Forwarded``
  (``GATEWAY_FORWARDED_HEADER=forwarded``) behind a proxy that writes only that one. The other is
  ignored whatever it says: a proxy that writes one passes the client's copy of the other through
  untouched, and reading it would let the client choose its own IP.
* A ``Forwarded`` element that names ``for=`` twice is refused (``BadRequest``), not half-read: a
  trusted proxy sent something the gateway cannot be sure it reads as the proxy meant.
* IPv4-mapped IPv6 addresses (``::ffff:10.1.2.3``, from dual-stack sockets) are read as IPv4.

Repeated header lines must reach this function joined with ``", "`` in the order received.
Every other header value, however garbled, gives an address (or ``UNKNOWN_CLIENT``), never an error.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Literal

from gateway.config import Network
from gateway.errors import BadRequest
from gateway.models import IPAddress

ForwardedHeader = Literal["x-forwarded-for", "forwarded"]
# The unspecified address stands for "unknown". It is never a real peer, so only a rule that
# deliberately allows ::/0 matches it; it is never treated as a trusted proxy either.
UNKNOWN_CLIENT: IPAddress = ipaddress.IPv6Address("::")
_MAX_NODE = 64  # longer than any IP address with port and brackets
_MAX_HOPS = 64  # a longer chain is abuse; its far end is never reached


Address = tuple[IPAddress, str]  # the address and its canonical text (for audit records)
UNKNOWN: Address = (UNKNOWN_CLIENT, str(UNKNOWN_CLIENT))


def parse_ip(text: str | None) -> IPAddress | None:
    """An IP address, optionally with a port or IPv6 brackets; None for anything else."""
    parsed = parse_address(text)
    return None if parsed is None else parsed[0]


@functools.lru_cache(maxsize=8192)
def parse_address(text: str | None) -> Address | None:
    """Like :func:`parse_ip`, with the address's canonical text. Cached (bounded): peers and proxy
    hops repeat, and ipaddress parsing and formatting cost microseconds each."""
    address = _parse(text)
    return None if address is None else (address, str(address))


def _parse(text: str | None) -> IPAddress | None:
    if not text:
        return None
    node = text.strip()
    if not node or len(node) > _MAX_NODE:
        return None
    if node.startswith("["):
        host, sep, rest = node[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    elif node.count(":") == 1:  # IPv4 with a port (Azure and some proxies add one)
        host, _, port = node.partition(":")
        if not port.isdigit():
            return None
    else:
        host = node
    if "%" in host:  # zone ids mean nothing beyond the local link
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        matches = [v for k, v in headers.items() if k.lower() == name]
        value = ", ".join(matches) if matches else None
    return value


def _split(value: str, separators: str) -> list[str]:
    """Split on any of ``separators`` outside double quotes (RFC 7230 quoted-string)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch in separators:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out: list[str] = []
        escaped = False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def _forwarded_hops(value: str) -> list[Address | None]:
    """The ``for=`` node of each RFC 7239 element; None where it is missing, obfuscated or garbage."""
    hops: list[Address | None] = []
    for element in _split(value, ","):
        if not element.strip():
            continue
        node: Address | None = None
        seen = False
        for pair in _split(element, ";"):
            name, sep, raw = pair.partition("=")
            if sep and name.strip().lower() == "for":
                if seen:
                    raise BadRequest("a Forwarded element from a trusted proxy names for= twice")
                seen = True
                node = parse_address(_unquote(raw))
        hops.append(node)
    return hops


def _xff_hops(value: str) -> list[Address | None]:
    return [parse_address(part) for part in value.split(",") if part.strip()]


def client_ip(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: Sequence[Network],
    *,
    header: ForwardedHeader = "x-forwarded-for",
) -> IPAddress:
    """The client's address (see the module docstring).

    ``peer`` is the socket peer's address; None or anything unparseable (a Unix socket path, say)
    gives ``UNKNOWN_CLIENT`` without looking at any header, since its trust cannot be known.
    """
    return client_address(peer, headers, trusted, header=header)[0]


def client_address(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: Sequence[Network],
    *,
    header: ForwardedHeader = "x-forwarded-for",
) -> Address:
    """:func:`client_ip`, with the address's canonical text."""
    address = parse_address(peer.split("%", 1)[0] if peer else peer)
    if address is None:
        return UNKNOWN
    # Only a trusted proxy may speak for someone else.
    if not trusted or not _trusted(address[0], trusted):
        return address
    value = _header(headers, header) or ""
    hops = _forwarded_hops(value) if header == "forwarded" else _xff_hops(value)
    for hop in reversed(hops[-_MAX_HOPS:]):
        if hop is None:
            return UNKNOWN
        address = hop
        if not _trusted(hop[0], trusted):
            return hop
    return address
