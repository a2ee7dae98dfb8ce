"""``GATEWAY_REDIS_URL``, parsed once into a typed target; never echoes the password.

redis-py has no URL form for Sentinel or Cluster, so the gateway owns this parser:

- ``redis://[user:password@]host[:6379][/db]`` and ``rediss://`` (TLS): one server, or a managed
  primary endpoint;
- ``unix:///path/to/redis.sock`` (database 0);
- ``redis+sentinel://[user:password@]host[:26379][,host2[:26379]...]/master-name[/db]`` and
  ``rediss+sentinel://`` (TLS to the sentinels and the data nodes);
- ``redis+cluster://[user:password@]host[:6379][,host2[:6379]...][/]`` and ``rediss+cluster://``:
  startup nodes of a Redis Cluster, or one DNS configuration endpoint (ElastiCache, Memorystore).

The password in a Sentinel URL is the data nodes' password (the sentinels' is
``GATEWAY_REDIS_SENTINEL_PASSWORD``). Query strings are refused: every option has a
``GATEWAY_REDIS_*`` setting, so one URL cannot silently override another setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

Mode = Literal["standalone", "sentinel", "cluster"]

SCHEMES: dict[str, tuple[Mode, bool, int]] = {
    "redis": ("standalone", False, 6379),
    "rediss": ("standalone", True, 6379),
    "unix": ("standalone", False, 0),
    "redis+sentinel": ("sentinel", False, 26379),
    "rediss+sentinel": ("sentinel", True, 26379),
    "redis+cluster": ("cluster", False, 6379),
    "rediss+cluster": ("cluster", True, 6379),
}
SCHEME_LIST = ", ".join(f"{s}://" for s in list(SCHEMES)[:-1]) + f" or {list(SCHEMES)[-1]}://"


@dataclass(frozen=True)
class RedisTarget:
    """Where the gateway's Redis is. ``nodes`` are the server, the sentinels or the startup nodes."""

    mode: Mode
    tls: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    master: str | None = None
    unix_path: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a credential: never in repr or logs

    def describe(self) -> str:
        """The URL without its credentials, for logs, errors and /readyz."""
        scheme = next(s for s, (mode, tls, _) in SCHEMES.items()
                      if mode == self.mode and tls == self.tls and (s == "unix") == (self.unix_path is not None))
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.nodes)
        path = f"/{self.master}/{self.db}" if self.mode == "sentinel" else f"/{self.db}" if self.db else "/"
        return f"{scheme}://{hosts}{path}"


class RedisUrlError(ValueError):
    """A URL that cannot be used; the message never contains the password."""


def parse_redis_url(url: str) -> RedisTarget:
    """Parse ``url`` or raise RedisUrlError saying what to change."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise RedisUrlError(f"GATEWAY_REDIS_URL must start with {SCHEME_LIST}")
    mode, tls, default_port = SCHEMES[scheme.lower()]
    parts = urlsplit("x://" + rest)  # netloc parsing without urllib's per-scheme rules
    if parts.query or parts.fragment:
        raise RedisUrlError("GATEWAY_REDIS_URL takes no query string or fragment; use the GATEWAY_REDIS_* settings")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username, password = _userinfo(userinfo) if at else (None, None)
    if scheme.lower() == "unix":
        if hostlist or not parts.path:
            raise RedisUrlError("a unix socket URL is unix:///path/to/redis.sock")
        return RedisTarget("standalone", False, (), unix_path=unquote(parts.path),
                           username=username, password=password)
    nodes = tuple(_host_port(item, default_port) for item in hostlist.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if mode == "standalone":
        if len(nodes) != 1:
            raise RedisUrlError(f"{scheme}:// names one server; use redis+cluster:// or redis+sentinel:// for several")
        return RedisTarget(mode, tls, nodes, db=_db(path[:1], len(path) > 1), username=username, password=password)
    if mode == "sentinel":
        if not path:
            raise RedisUrlError("a Sentinel URL names the master: redis+sentinel://host:26379/mymaster/0")
        return RedisTarget(mode, tls, nodes, db=_db(path[1:2], len(path) > 2), master=path[0],
                           username=username, password=password)
    if _db(path[:1], len(path) > 1):
        raise RedisUrlError("Redis Cluster has database 0 only: redis+cluster://host:6379/")
    return RedisTarget(mode, tls, nodes, username=username, password=password)


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, tail = item[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    if not host:
        raise RedisUrlError("GATEWAY_REDIS_URL has an empty host name")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise RedisUrlError(f"GATEWAY_REDIS_URL has a port that is not a number: {port_text!r}") from None
    if not 0 < port < 65536:
        raise RedisUrlError(f"GATEWAY_REDIS_URL has a port out of range: {port}")
    return host, port


def _db(part: list[str], extra: bool) -> int:
    if extra:
        raise RedisUrlError("GATEWAY_REDIS_URL has more path segments than it can use")
    if not part:
        return 0
    try:
        db = int(part[0])
    except ValueError:
        raise RedisUrlError(f"the database in GATEWAY_REDIS_URL must be a number, not {part[0]!r}") from None
    if db < 0:
        raise RedisUrlError("the database in GATEWAY_REDIS_URL cannot be negative")
    return db
