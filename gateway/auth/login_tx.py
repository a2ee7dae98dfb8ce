"""One sign-in in flight: its secrets, in a sealed cookie of its own, and where it may lead back to.

Each login gets a cookie ``__Host-gateway_tx_<8 hex of SHA-256(state)>`` holding its ``state``,
``nonce``, PKCE verifier and ``return_to``, sealed under the session keys (bound to that name),
``SameSite=Lax`` (the issuer's redirect back is a top-level GET), for ten minutes, used once. So the
callback needs no server-side state, works on any replica, and completes only in the browser that
started it (login CSRF and injected codes fail there). At most three are kept at a time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.auth.browser_client import SignInReason, refuse
from gateway.auth.cookies import SealError, SessionKeys, clear_cookie, cookies_with_prefix, set_cookie
from gateway.config import origin_of

PREFIX = "__Host-gateway_tx_"
TTL = 600
MAX_IN_FLIGHT = 3  # more would let one browser's Cookie header grow until requests get 431
STATE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
MAX_RETURN_TO = 2048
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


@dataclass(frozen=True, slots=True)
class Transaction:
    issuer: str
    state: str
    nonce: str
    verifier: str
    return_to: str
    created: int

    @classmethod
    def start(cls, issuer: str, return_to: str, now: int) -> Transaction:
        # 256 bits each; the verifier is 64 characters (RFC 7636 allows 43 to 128).
        return cls(issuer, secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48),
                   return_to, now)

    @property
    def cookie(self) -> str:
        return cookie_name(self.state)

    def seal(self, keys: SessionKeys) -> str:
        return keys.seal(self.cookie, orjson.dumps({"i": self.issuer, "s": self.state, "n": self.nonce,
                                                    "v": self.verifier, "r": self.return_to, "t": self.created}))

    @classmethod
    def open(cls, keys: SessionKeys, name: str, value: str) -> Transaction:
        try:
            data: Any = orjson.loads(keys.open(name, value))
            return cls(str(data["i"]), str(data["s"]), str(data["n"]), str(data["v"]), str(data["r"]),
                       int(data["t"]))
        except (SealError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise refuse(SignInReason.BAD_TRANSACTION, "the sign-in cookie is not one this gateway made") from None


def cookie_name(state: str) -> str:
    return PREFIX + hashlib.sha256(state.encode()).hexdigest()[:8]


def tx_set_cookie(name: str, value: str) -> str:
    return set_cookie(name, value, max_age=TTL, same_site="Lax")


def tx_clear_cookie(name: str) -> str:
    return clear_cookie(name, same_site="Lax")


def stale_transactions(keys: SessionKeys, cookie_header: str) -> list[str]:
    """The names of the login cookies to clear so that a new one makes at most MAX_IN_FLIGHT:
    unreadable ones first, then the oldest."""
    found = cookies_with_prefix(cookie_header, PREFIX)
    if len(found) < MAX_IN_FLIGHT:
        return []
    ages: list[tuple[int, str]] = []
    for name, value in found.items():
        try:
            ages.append((Transaction.open(keys, name, value).created, name))
        except Exception:  # noqa: BLE001 - unreadable: the first to go
            ages.append((-1, name))
    ages.sort()
    return [name for _, name in ages[: len(found) - MAX_IN_FLIGHT + 1]]


def safe_return_to(value: str | None, allowed: Collection[str], default: str) -> str:
    """``value`` when it is an absolute http(s) URL whose origin is exactly one of ``allowed``,
    else ``default``. The answer is rebuilt from the parsed parts, and only plain URL characters
    pass (no whitespace, control characters, backslashes or non-ASCII, which browsers and Python
    parse differently), so what is checked is what the browser is sent to."""
    if not value or len(value) > MAX_RETURN_TO or not _URL_CHARS.match(value):
        return default
    origin = origin_of(value)
    if origin is None or origin not in allowed:
        return default
    parts = urlsplit(value)
    if parts.path and not parts.path.startswith("/"):
        return default
    rebuilt = origin + (parts.path or "/")
    if parts.query:
        rebuilt += "?" + parts.query
    if parts.fragment:
        rebuilt += "#" + parts.fragment
    return rebuilt


def one_of_each(params: Mapping[str, list[str]], names: Collection[str]) -> dict[str, str]:
    """The callback's parameters, each at most once and bounded; repeated ones are junk (400)."""
    found: dict[str, str] = {}
    for name in names:
        values = params.get(name, [])
        if len(values) > 1 or any(len(v) > 4096 for v in values):
            raise refuse(SignInReason.BAD_PARAMETERS, f"the callback's {name} parameter is repeated or too long")
        if values:
            found[name] = values[0]
    return found
