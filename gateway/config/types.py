"""The value types the policy file is written in: durations, networks, names."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"


def parse_duration(value: object) -> float:
    """``300s``, ``5m``, ``1h``, ``250ms`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 300s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 300s, 5m or 1h, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite, non-negative number of seconds")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])$")


def origin_of(url: str) -> str | None:
    """The serialized origin (``scheme://host[:port]``, lower case, default port dropped) of an
    absolute http(s) URL, or None for anything else: user info, a host that is not plain ASCII
    (look-alikes must be written as punycode to match), control characters and backslashes, which
    browsers and Python parse differently, are all None. Origins are compared as these strings."""
    if not url.isascii() or any(c in url for c in "\\ \t\r\n") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not url[len(parts.scheme):].startswith("://"):
        return None
    if "@" in parts.netloc or not host or not _HOST.match(host if ":" not in host else f"[{host}]"):
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}:{port}"
    return f"{scheme}://{shown}"


def parse_origin(value: object) -> str:
    """A configured origin such as ``https://app.vendor.example``, normalized like ``origin_of``."""
    origin = origin_of(value) if isinstance(value, str) else None
    if origin is None or urlsplit(str(value)).path not in ("", "/") or "?" in str(value) or "#" in str(value):
        raise ValueError(f"{value!r} is not an origin like https://app.vendor.example (scheme and host, no path)")
    return origin


Origin = Annotated[str, BeforeValidator(parse_origin)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Strict(BaseModel):
    """Every section of the file: unknown keys are errors, and a parsed section never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
