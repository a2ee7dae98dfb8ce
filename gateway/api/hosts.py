"""Which ``Host`` names this gateway answers (DNS rebinding protection).

A web page whose own name resolves to 127.0.0.1 (or to the gateway's private address) is, to the
browser, the same origin as the gateway, and could read it around "no CORS by default". Browsers
always send that page's name as ``Host``: the gateway serves only its own names.

``GATEWAY_ALLOWED_HOSTS`` lists them, each ``name`` (any port) or ``name:port``; ``*`` turns the
check off (only behind a proxy that checks ``Host`` itself). The default is the host and port of
``GATEWAY_PUBLIC_URL``, and the listen address, plus ``localhost``, ``127.0.0.1`` and ``[::1]``
when listening on loopback, or on every interface (``0.0.0.0``, ``::``, which include loopback)
without ``GATEWAY_PUBLIC_URL``: a container's published port, the compose trial. These go on any
port: an attacker's page cannot make a browser send them, since the browser sends the name of the
page's own site, and a page whose own name is one of them is on this machine already. Probes
(``/healthz``, ``/readyz``) are answered whatever the ``Host``: Kubernetes sends the pod's IP.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import Scope

from gateway.errors import BadRequest, GatewayError, MisdirectedRequest
from gateway.routes import PROBES
from gateway.settings import Settings, is_any_address, is_loopback_host

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower().rstrip(".")
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return f"[{host}]", int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return (f"[{entry}]" if ":" in entry else entry), None


class HostCheck:
    def __init__(self, names: Iterable[str], *, bare: Iterable[str] = ()) -> None:
        self.any_port: set[bytes] = set()
        self.exact: set[bytes] = set()
        # Names allowed only without a port: the public URL's, when its port is the scheme's default.
        self.bare = {_split(name)[0].encode() for name in bare}
        for name in names:
            host, port = _split(name)
            if port is None:
                self.any_port.add(host.encode())
            else:
                self.exact.add(f"{host}:{port}".encode())
        self.names = sorted(n.decode() for n in self.any_port | self.exact | self.bare)

    @classmethod
    def of(cls, settings: Settings) -> HostCheck | None:
        """The settings' allow-list (None when it is ``*``), or the default (module docstring)."""
        if settings.allowed_hosts:
            return None if "*" in settings.allowed_hosts else cls(settings.allowed_hosts)
        names, bare = [], []
        url = urlsplit(settings.base_url())
        if url.hostname:
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
            host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
            names.append(f"{host}:{port}")
            if port == _DEFAULT_PORTS.get(url.scheme):
                bare.append(host)  # browsers leave a default port out of Host
        names.append(f"[{settings.host}]" if ":" in settings.host else settings.host)
        # Every interface includes loopback: with no name of its own configured (the image, the
        # compose trial), the loopback names are the ones its clients can use.
        if is_loopback_host(settings.host) or (is_any_address(settings.host) and not settings.public_url):
            names += ["localhost", "127.0.0.1", "[::1]"]
        return cls(names, bare=bare)

    def allows(self, host: bytes | None, scope: Scope) -> bool:
        if host is None:
            return scope.get("http_version") == "1.0" or scope["path"] in PROBES
        host = host.lower()
        if host in self.exact or scope["path"] in PROBES:
            return True
        name, _, port = host.rpartition(b":")
        if not port.isdigit() or name.endswith(b":"):
            name = host.rstrip(b".")  # no port (IPv6 literals keep their brackets)
            return name in self.any_port or name in self.bare
        name = name.rstrip(b".")
        return name in self.any_port or name + b":" + port in self.exact

    def refusal(self, host: bytes | None, count: int) -> GatewayError:
        if count > 1:
            return BadRequest("the request has two different Host headers")
        if host is None:
            return BadRequest("an HTTP/1.1 request must name its Host")
        return MisdirectedRequest("this gateway does not answer for that Host; see GATEWAY_ALLOWED_HOSTS")
